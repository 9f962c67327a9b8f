//! Byte-level helpers for the on-disk encodings (docs/storage.md): little-endian integers,
//! `u16`-length-prefixed UTF-8 strings, and a CRC-32 trailer over everything before it.

use crate::error::{Error, Result};

pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// A string of at most `u16::MAX` bytes; callers validate lengths far below that. A longer
    /// one is cut at the last character boundary that fits, never inside a character (which
    /// would make the entry unreadable).
    pub(crate) fn str(&mut self, v: &str) {
        let mut len = v.len().min(usize::from(u16::MAX));
        while !v.is_char_boundary(len) {
            len -= 1;
        }
        self.u16(u16::try_from(len).unwrap_or(u16::MAX));
        self.buf.extend_from_slice(&v.as_bytes()[..len]);
    }
    /// Appends HMAC-SHA256 under `key` of everything written (instead of a CRC-32).
    pub(crate) fn finish_mac(mut self, key: &ring::hmac::Key) -> Vec<u8> {
        let tag = ring::hmac::sign(key, &self.buf);
        self.buf.extend_from_slice(tag.as_ref());
        self.buf
    }
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks the CRC-32 trailer and returns a reader over the covered bytes.
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Result<Self> {
        if bytes.len() < 5 {
            return Err(corrupt(what, "truncated"));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 4);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(trailer);
        if crc32fast::hash(body) != u32::from_le_bytes(crc) {
            return Err(corrupt(what, "checksum mismatch"));
        }
        Ok(Reader { buf: body, what })
    }
    /// Checks the HMAC-SHA256 trailer (32 bytes, under `key`) and returns a reader over the
    /// covered bytes.
    pub(crate) fn authenticated(
        bytes: &'a [u8],
        key: &ring::hmac::Key,
        what: &'static str,
    ) -> Result<Self> {
        if bytes.len() < 33 {
            return Err(corrupt(what, "truncated"));
        }
        let (body, tag) = bytes.split_at(bytes.len() - 32);
        ring::hmac::verify(key, body, tag)
            .map_err(|_| corrupt(what, "authentication failed (edited or forged)"))?;
        Ok(Reader { buf: body, what })
    }
    /// A reader over `bytes` that checks no trailer: for a record's fixed-size head, read
    /// before (and trusted only after) the whole record is checked.
    pub(crate) fn unchecked(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { buf: bytes, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(corrupt(self.what, "truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(crate) fn str(&mut self) -> Result<String> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(self.what, "invalid UTF-8"))
    }
    pub(crate) fn end(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(corrupt(self.what, "trailing bytes"))
        }
    }
    pub(crate) fn fail(&self, why: &str) -> Error {
        corrupt(self.what, why)
    }
}

pub(crate) fn corrupt(what: &str, why: &str) -> Error {
    Error::Corrupt(format!("{what}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_long_string_is_cut_at_a_character_boundary() {
        // 65,534 bytes of `a` and a two-byte `é` straddling the u16 limit.
        let text = format!("{}é", "a".repeat(usize::from(u16::MAX) - 1));
        let mut w = Writer::new(0);
        w.str(&text);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes, "test").unwrap();
        let read = r.str().unwrap();
        assert_eq!(read, "a".repeat(usize::from(u16::MAX) - 1));
        r.end().unwrap();
    }
}
