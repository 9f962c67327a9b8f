//! Independent reference code for the fuzz targets: written from the documented formats
//! (core/src/key.rs, record.rs, codec.rs, header.rs docs), not from keystead's internals, so
//! the targets check the format as well as the absence of panics.

/// The base62 alphabet: digits, upper case, lower case (also ASCII order, so fixed-width
/// base62 strings compare like the numbers they encode).
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of a key after `<prefix>_`: 12 (id) + 43 (secret) + 6 (checksum).
pub const BODY_LEN: usize = 61;
/// Longest key prefix.
pub const MAX_PREFIX_LEN: usize = 16;
/// Longest `Authorization` value the parser looks at.
pub const MAX_HEADER_LEN: usize = 4096;

/// Fixed-width base62 of a big-endian number, most significant digit first, by schoolbook
/// long division on the bytes. `None` if the number needs more than `width` digits.
pub fn base62_fixed(big_endian: &[u8], width: usize) -> Option<String> {
    let mut num = big_endian.to_vec();
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        let mut rem: u32 = 0;
        for byte in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 62) as u8;
            rem = cur % 62;
        }
        *slot = ALPHABET[rem as usize];
    }
    if num.iter().any(|&b| b != 0) {
        return None;
    }
    Some(String::from_utf8(out).expect("alphabet is ASCII"))
}

pub fn is_base62(b: u8) -> bool {
    ALPHABET.contains(&b)
}

fn digit(b: u8) -> u64 {
    ALPHABET.iter().position(|&a| a == b).expect("base62 digit") as u64
}

/// Whether `prefix` is `[a-z][a-z0-9_]{0,15}` without a trailing `_`.
pub fn is_valid_prefix(prefix: &[u8]) -> bool {
    !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix[0].is_ascii_lowercase()
        && prefix
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && prefix.last() != Some(&b'_')
}

/// The 6-character checksum of everything before it: CRC-32/IEEE as base62.
pub fn checksum_text(covered: &[u8]) -> String {
    base62_fixed(&crc32fast::hash(covered).to_be_bytes(), 6).expect("2^32 < 62^6")
}

/// `<prefix>_<id:12>` + secret text (43 chars), then the checksum.
pub fn format_key_with_id_text(prefix: &str, id_text: &str, secret: &[u8; 32]) -> String {
    let mut key = format!(
        "{prefix}_{id_text}{}",
        base62_fixed(secret, 43).expect("62^43 > 2^256")
    );
    let checksum = checksum_text(key.as_bytes());
    key.push_str(&checksum);
    key
}

/// Formats a key from its parts following the documented layout.
pub fn format_key(prefix: &str, id: u64, secret: &[u8; 32]) -> String {
    let id_text = base62_fixed(&id.to_be_bytes(), 12).expect("62^12 > 2^64");
    format_key_with_id_text(prefix, &id_text, secret)
}

/// Expected result of `parse_key`: `(prefix, id text)` or the reason code of the first
/// failing check, in the documented order (length, charset, separator, prefix, checksum,
/// out_of_range).
pub fn reference_parse_key(text: &str) -> Result<(&str, &str), &'static str> {
    let bytes = text.as_bytes();
    if bytes.len() < 1 + 1 + BODY_LEN || bytes.len() > MAX_PREFIX_LEN + 1 + BODY_LEN {
        return Err("length");
    }
    let body_start = bytes.len() - BODY_LEN;
    let body = &bytes[body_start..];
    if !body.iter().all(|&b| is_base62(b)) {
        return Err("charset");
    }
    if bytes[body_start - 1] != b'_' {
        return Err("separator");
    }
    let prefix = &bytes[..body_start - 1];
    if !is_valid_prefix(prefix) {
        return Err("prefix");
    }
    let checksum = body[BODY_LEN - 6..]
        .iter()
        .fold(0u64, |v, &b| v * 62 + digit(b));
    if checksum != u64::from(crc32fast::hash(&bytes[..bytes.len() - 6])) {
        return Err("checksum");
    }
    let max_id = base62_fixed(&u64::MAX.to_be_bytes(), 12).expect("fits");
    let max_secret = base62_fixed(&[0xff; 32], 43).expect("fits");
    if &body[..12] > max_id.as_bytes() || &body[12..55] > max_secret.as_bytes() {
        return Err("out_of_range");
    }
    // All ASCII from here on.
    Ok((&text[..body_start - 1], &text[body_start..body_start + 12]))
}

/// RFC 6750 `b64token`: 1+ of `[A-Za-z0-9-._~+/]` then only `=`.
pub fn is_b64token(token: &[u8]) -> bool {
    let body = token
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        .count();
    body > 0 && token[body..].iter().all(|&b| b == b'=')
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trims spaces and tabs on both sides.
pub fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| !is_ows(b))
        .map_or(start, |e| e + 1);
    &value[start..end]
}

/// The token a value of the form `OWS "Bearer" 1*SP b64token OWS` (scheme in any case, at
/// most 4 KiB in all) carries, or `None` for any other value.
pub fn reference_bearer(value: &[u8]) -> Option<&[u8]> {
    if value.len() > MAX_HEADER_LEN {
        return None;
    }
    let trimmed = trim_ows(value);
    if trimmed.len() < 7 || !trimmed[..6].eq_ignore_ascii_case(b"bearer") || trimmed[6] != b' ' {
        return None;
    }
    let token = &trimmed[6..];
    let token = &token[token.iter().position(|&b| b != b' ')?..];
    is_b64token(token).then_some(token)
}

/// RFC 9110 `tchar`, the characters of an auth-scheme.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a value (at most 4 KiB) carries another scheme's credentials in plain text:
/// `OWS scheme 1*SP credentials OWS`, scheme a token other than `Bearer`, credentials of
/// printable ASCII and tabs. These (and blank values) are "no bearer credentials".
pub fn reference_other_scheme(value: &[u8]) -> bool {
    if value.len() > MAX_HEADER_LEN {
        return false;
    }
    let trimmed = trim_ows(value);
    let Some(space) = trimmed.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = trimmed.split_at(space);
    !scheme.is_empty()
        && scheme.iter().all(|&b| is_tchar(b))
        && !scheme.eq_ignore_ascii_case(b"bearer")
        && rest
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A record field set, encoded by [`encode_record`] following docs of core/src/record.rs and
/// codec.rs: version 1, little-endian integers, u16-length strings, CRC-32 trailer.
#[derive(Debug, Clone, arbitrary::Arbitrary)]
pub struct RecordFields {
    pub id: u64,
    pub salt: [u8; 16],
    pub hash: [u8; 32],
    /// Taken modulo 3 (active, disabled, revoked).
    pub state: u8,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub replaces: Option<u64>,
    pub replaced_by: Option<u64>,
    pub name: String,
    /// Stored sorted and deduplicated (the canonical order).
    pub scopes: std::collections::BTreeSet<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u16::try_from(s.len()).expect("short string").to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The canonical stored bytes of a record (strings must be under 64 KiB).
pub fn encode_record(r: &RecordFields) -> Vec<u8> {
    let mut out = vec![1u8, 1u8];
    out.extend_from_slice(&r.id.to_le_bytes());
    out.extend_from_slice(&r.salt);
    out.extend_from_slice(&r.hash);
    out.push(r.state % 3);
    out.extend_from_slice(&r.created_at.to_le_bytes());
    out.extend_from_slice(&r.updated_at.to_le_bytes());
    let flags = u8::from(r.expires_at.is_some())
        | u8::from(r.replaces.is_some()) << 1
        | u8::from(r.replaced_by.is_some()) << 2;
    out.push(flags);
    if let Some(at) = r.expires_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    if let Some(id) = r.replaces {
        out.extend_from_slice(&id.to_le_bytes());
    }
    if let Some(id) = r.replaced_by {
        out.extend_from_slice(&id.to_le_bytes());
    }
    put_str(&mut out, &r.name);
    out.extend_from_slice(&(r.scopes.len() as u16).to_le_bytes());
    for scope in &r.scopes {
        put_str(&mut out, scope);
    }
    out.extend_from_slice(&(r.metadata.len() as u16).to_le_bytes());
    for (k, v) in &r.metadata {
        put_str(&mut out, k);
        put_str(&mut out, v);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Hex of a byte string, for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
