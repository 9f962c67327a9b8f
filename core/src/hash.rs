//! The salted, optionally peppered hash of a key secret.

use ring::hmac;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Shortest pepper accepted: the stored `pepper_check` (an HMAC under the pepper) lets anyone
/// with a copy of the file test pepper guesses offline, so a pepper must be too random to
/// guess — 32 random bytes, as `keystead pepper generate` prints.
const MIN_PEPPER_LEN: usize = 32;
/// Longest pepper accepted.
const MAX_PEPPER_LEN: usize = 1024;
const PEPPER_CHECK_MESSAGE: &[u8] = b"keystead pepper check v1";

/// Holds the HMAC key: the pepper, or 32 zero bytes for a store without one.
pub(crate) struct Hasher {
    key: hmac::Key,
}

impl Hasher {
    pub(crate) fn new(pepper: Option<&[u8]>) -> Result<Self> {
        let zero = [0u8; 32];
        let key_bytes = match pepper {
            None => &zero[..],
            Some(p) if p.len() < MIN_PEPPER_LEN || p.len() > MAX_PEPPER_LEN => {
                return Err(Error::invalid(format!(
                    "a pepper is {MIN_PEPPER_LEN} to {MAX_PEPPER_LEN} bytes of random data from a \
                     secret manager (e.g. the output of `keystead pepper generate`)"
                )))
            }
            // HMAC pads short keys with zeros, so an all-zero pepper would equal no pepper.
            Some(p) if p.iter().all(|&b| b == 0) => {
                return Err(Error::invalid("a pepper must not be all zero bytes"))
            }
            Some(p) => p,
        };
        Ok(Hasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, key_bytes),
        })
    }

    /// HMAC-SHA256(key, salt ‖ id as 8 big-endian bytes ‖ secret).
    pub(crate) fn hash(&self, salt: &[u8; 16], id: u64, secret: &[u8; 32]) -> [u8; 32] {
        let mut message = Zeroizing::new([0u8; 56]);
        message[..16].copy_from_slice(salt);
        message[16..24].copy_from_slice(&id.to_be_bytes());
        message[24..].copy_from_slice(secret);
        let tag = hmac::sign(&self.key, &message[..]);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// A value stored at creation so that opening with another pepper is detected.
    pub(crate) fn pepper_check(&self) -> [u8; 32] {
        let tag = hmac::sign(&self.key, PEPPER_CHECK_MESSAGE);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pepper_changes_the_hash() {
        let plain = Hasher::new(None).unwrap();
        let peppered = Hasher::new(Some(&[7u8; 32])).unwrap();
        assert_ne!(
            plain.hash(&[0; 16], 1, &[1; 32]),
            peppered.hash(&[0; 16], 1, &[1; 32])
        );
        assert_ne!(plain.pepper_check(), peppered.pepper_check());
        assert!(Hasher::new(Some(b"")).is_err());
        assert!(Hasher::new(Some(&[0, 0])).is_err());
        assert!(Hasher::new(Some(&[0; 32])).is_err());
    }

    #[test]
    fn peppers_shorter_than_32_bytes_are_refused() {
        for len in [1, 8, 17, 31] {
            match Hasher::new(Some(&vec![7u8; len])) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains("32 to 1024"), "{m}"),
                other => panic!("{len} bytes: {:?}", other.map(|_| ())),
            }
        }
        assert!(Hasher::new(Some(&[7u8; 32])).is_ok());
        assert!(Hasher::new(Some(&[7u8; 1024])).is_ok());
        assert!(Hasher::new(Some(&[7u8; 1025])).is_err());
    }

    #[test]
    fn matches_an_independent_hmac() {
        // HMAC-SHA256 with the all-zero key over salt ‖ id ‖ secret, computed with ring's
        // verify API so the layout of the message is what is tested.
        let hasher = Hasher::new(None).unwrap();
        let tag = hasher.hash(&[9; 16], 0x0102, &[7; 32]);
        let mut message = vec![9u8; 16];
        message.extend_from_slice(&0x0102u64.to_be_bytes());
        message.extend_from_slice(&[7; 32]);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[0; 32]);
        assert!(hmac::verify(&key, &message, &tag).is_ok());
    }
}
