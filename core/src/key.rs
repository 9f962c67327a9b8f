//! The key format: `<prefix>_<id:12><secret:43><checksum:6>`, see docs/key-format.md.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::base62;
use crate::error::Error;

/// Length of the part after `<prefix>_`.
pub(crate) const BODY_LEN: usize = ID_LEN + base62::U256_WIDTH + CHECKSUM_LEN;
const ID_LEN: usize = 12;
const CHECKSUM_LEN: usize = 6;
/// Longest allowed prefix.
pub(crate) const MAX_PREFIX_LEN: usize = 16;
/// The prefix a new store gets when none is given.
pub const DEFAULT_PREFIX: &str = "ks";

/// The public identifier of a key: 64 random bits, shown as 12 base62 characters.
///
/// It is the part of a key that may appear in listings, logs and audit entries.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(u64);

impl KeyId {
    /// The id with this number (the table key a [`Backend`](crate::backend::Backend) uses).
    pub fn from_u64(value: u64) -> Self {
        KeyId(value)
    }

    /// The id's number, as a [`Backend`](crate::backend::Backend) stores it.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    fn write_to(self, out: &mut [u8; ID_LEN]) {
        base62::encode_u64(self.0, out);
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; ID_LEN];
        self.write_to(&mut out);
        // The alphabet is ASCII, so this never fails.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = Error;

    /// Parses the 12-character form shown in listings.
    fn from_str(text: &str) -> Result<Self, Error> {
        if text.len() != ID_LEN {
            return Err(Error::InvalidArgument(format!(
                "a key id is {ID_LEN} characters of [0-9A-Za-z], got {} characters",
                text.chars().count()
            )));
        }
        base62::decode_u64(text.as_bytes())
            .map(KeyId)
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "a key id is 12 characters of [0-9A-Za-z] encoding a 64-bit number".into(),
                )
            })
    }
}

/// Why a string is not a well-formed key. Checked in this order, without touching storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedKey {
    /// Too short or too long to be `<prefix>_` plus 61 characters.
    #[error("a key is a prefix of 1 to 16 characters, `_` and 61 characters of [0-9A-Za-z]")]
    Length,
    /// The last 61 characters are not all `[0-9A-Za-z]`.
    #[error("the body of a key is 61 characters of [0-9A-Za-z]")]
    Charset,
    /// The character before the 61-character body is not `_`.
    #[error("the body of a key follows the prefix and `_`")]
    Separator,
    /// The prefix is not `[a-z][a-z0-9_]{0,15}` without a trailing `_`, or is not this store's.
    #[error("the prefix is not a valid key prefix for this store")]
    Prefix,
    /// The checksum does not match: a typo, a truncated copy or not a key at all.
    #[error("the checksum does not match")]
    Checksum,
    /// The id or secret part encodes a number too large for its width.
    #[error("the id or secret part is out of range")]
    OutOfRange,
}

impl MalformedKey {
    /// A short stable name for the reason (`length`, `charset`, `separator`, `prefix`,
    /// `checksum`, `out_of_range`), as used in the shared test vectors.
    pub fn as_str(&self) -> &'static str {
        match self {
            MalformedKey::Length => "length",
            MalformedKey::Charset => "charset",
            MalformedKey::Separator => "separator",
            MalformedKey::Prefix => "prefix",
            MalformedKey::Checksum => "checksum",
            MalformedKey::OutOfRange => "out_of_range",
        }
    }
}

/// The public parts of a well-formed key, as returned by [`parse_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts {
    /// The store prefix the key was issued under, e.g. `ks`.
    pub prefix: String,
    /// The key's public id.
    pub id: KeyId,
}

/// A key taken apart, secret included; the secret is wiped when dropped.
pub(crate) struct PresentedKey<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) id: KeyId,
    pub(crate) secret: Zeroizing<[u8; 32]>,
}

/// Whether `prefix` is a valid store prefix: `[a-z][a-z0-9_]{0,15}`, not ending in `_`.
pub(crate) fn is_valid_prefix(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    match bytes {
        [] => false,
        [first, rest @ ..] => {
            bytes.len() <= MAX_PREFIX_LEN
                && first.is_ascii_lowercase()
                && rest
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
                && bytes.last() != Some(&b'_')
        }
    }
}

/// Takes a key apart, checking everything that can be checked offline.
pub(crate) fn parse(text: &str) -> Result<PresentedKey<'_>, MalformedKey> {
    let bytes = text.as_bytes();
    if bytes.len() < 2 + BODY_LEN || bytes.len() > MAX_PREFIX_LEN + 1 + BODY_LEN {
        return Err(MalformedKey::Length);
    }
    let body_start = bytes.len() - BODY_LEN;
    let body = &bytes[body_start..];
    if !base62::is_base62(body) {
        return Err(MalformedKey::Charset);
    }
    if bytes[body_start - 1] != b'_' {
        return Err(MalformedKey::Separator);
    }
    // The body is ASCII and preceded by an ASCII `_`, so this slice is on a char boundary.
    let prefix = &text[..body_start - 1];
    if !is_valid_prefix(prefix) {
        return Err(MalformedKey::Prefix);
    }
    let (covered, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let expected = base62::decode_u64(checksum).ok_or(MalformedKey::Checksum)?;
    if expected != u64::from(crc32fast::hash(covered)) {
        return Err(MalformedKey::Checksum);
    }
    let id = base62::decode_u64(&body[..ID_LEN]).ok_or(MalformedKey::OutOfRange)?;
    let secret = base62::decode_u256(&body[ID_LEN..ID_LEN + base62::U256_WIDTH])
        .ok_or(MalformedKey::OutOfRange)?;
    Ok(PresentedKey {
        prefix,
        id: KeyId(id),
        secret: Zeroizing::new(secret),
    })
}

/// Checks a key's format and checksum offline and returns its public parts.
///
/// This is what a secret scanner or a client-side sanity check needs; it does not say whether
/// the key exists in any store.
///
/// # Errors
/// [`MalformedKey`] names the first check that failed.
///
/// # Example
/// ```
/// let err = keystead::parse_key("ks_not-a-key").unwrap_err();
/// assert_eq!(err.as_str(), "length");
/// ```
pub fn parse_key(text: &str) -> Result<KeyParts, MalformedKey> {
    let parsed = parse(text)?;
    Ok(KeyParts {
        prefix: parsed.prefix.to_owned(),
        id: parsed.id,
    })
}

/// Formats a key from its parts into a string that is wiped when dropped.
pub(crate) fn format(prefix: &str, id: KeyId, secret: &[u8; 32]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(Vec::with_capacity(prefix.len() + 1 + BODY_LEN));
    out.extend_from_slice(prefix.as_bytes());
    out.push(b'_');
    let mut id_text = [0u8; ID_LEN];
    id.write_to(&mut id_text);
    out.extend_from_slice(&id_text);
    let mut secret_text = Zeroizing::new([0u8; base62::U256_WIDTH]);
    base62::encode_u256(secret, &mut secret_text);
    out.extend_from_slice(&secret_text[..]);
    let mut checksum = [0u8; CHECKSUM_LEN];
    base62::encode_u64(u64::from(crc32fast::hash(&out)), &mut checksum);
    out.extend_from_slice(&checksum);
    // Every byte pushed is ASCII; move the buffer into the String without copying it.
    let bytes = std::mem::take(&mut *out);
    Zeroizing::new(String::from_utf8(bytes).unwrap_or_default())
}

/// The byte ranges of `text` that match the secret scanner's pattern of a key,
/// `\b<prefix>_[0-9A-Za-z]{61}\b` with `<prefix>` any valid prefix (docs/key-format.md);
/// each range starts at the `_`.
pub(crate) fn key_like_spans(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'_')
        .filter_map(move |(at, _)| {
            let body_end = at + 1 + BODY_LEN;
            let body = bytes.get(at + 1..body_end)?;
            if !body.iter().all(u8::is_ascii_alphanumeric)
                || bytes.get(body_end).is_some_and(|&b| is_word(b))
            {
                return None;
            }
            // The run of word characters before `_` is the whole prefix (`\b` before it).
            let start = bytes[..at]
                .iter()
                .rposition(|&b| !is_word(b))
                .map_or(0, |p| p + 1);
            is_valid_prefix(&text[start..at]).then_some(at..body_end)
        })
}

/// The shortest run of `[0-9A-Za-z]` after a `_` that [`redact_keys`] hides: the length of a
/// key's secret part, so a key with a few characters lost or added is still hidden.
const REDACT_MIN_RUN: usize = 43;

/// `text` with anything that may be a key hidden: every `_` followed by 43 or more characters
/// of `[0-9A-Za-z]` (a key's body is 61, its secret part 43) keeps the `_` and has the run
/// replaced by `[redacted]`. Broader than the scanner pattern on purpose, for messages and
/// logs that may echo what a user typed, e.g. a command-line parser's errors.
///
/// ```
/// let key = format!("ks_{}", "a".repeat(61));
/// let message = format!("unexpected argument '{key}' found");
/// assert_eq!(keystead::redact_keys(&message), "unexpected argument 'ks_[redacted]' found");
/// assert_eq!(keystead::redact_keys("nothing to hide"), "nothing to hide");
/// ```
pub fn redact_keys(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'_' {
            let run = bytes[at + 1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            if run >= REDACT_MIN_RUN {
                out.push_str(&text[copied..=at]);
                out.push_str("[redacted]");
                at += 1 + run;
                copied = at;
                continue;
            }
        }
        at += 1;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(prefix: &str) -> Zeroizing<String> {
        let mut secret = [0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = i as u8 * 7;
        }
        format(prefix, KeyId(0x0123_4567_89ab_cdef), &secret)
    }

    #[test]
    fn format_then_parse_gives_the_same_parts() {
        for prefix in ["ks", "a", "sk_live", "abcdefghijklmnop"] {
            let key = sample(prefix);
            assert_eq!(key.len(), prefix.len() + 1 + BODY_LEN);
            let parsed = parse(&key).unwrap();
            assert_eq!(parsed.prefix, prefix);
            assert_eq!(parsed.id, KeyId(0x0123_4567_89ab_cdef));
            assert_eq!(parsed.secret[1], 7);
        }
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let key = sample("ks");
        for i in 0..key.len() {
            let mut bytes = key.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(parse(&changed).is_err(), "change at {i} not caught");
        }
    }

    #[test]
    fn prefixes() {
        for good in ["a", "ks", "a_b", "a1", "abcdefghijklmnop"] {
            assert!(is_valid_prefix(good), "{good}");
        }
        for bad in ["", "A", "1a", "_a", "a_", "a-b", "abcdefghijklmnopq", "é"] {
            assert!(!is_valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn key_id_text_round_trips() {
        let id = KeyId(42);
        assert_eq!(id.to_string(), "00000000000g");
        assert_eq!("00000000000g".parse::<KeyId>().unwrap(), id);
        assert!("short".parse::<KeyId>().is_err());
        assert!("zzzzzzzzzzzz".parse::<KeyId>().is_err());
    }
}
