//! The salted, optionally peppered hash of a key secret.

use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Shortest pepper accepted: the stored `pepper_check` (an HMAC under the pepper) lets anyone
/// with a copy of the file test pepper guesses offline, so a pepper must be too random to
/// guess — 32 random bytes, as `keystead pepper generate` prints.
const MIN_PEPPER_LEN: usize = 32;
/// Longest pepper accepted.
const MAX_PEPPER_LEN: usize = 1024;
const PEPPER_CHECK_MESSAGE: &[u8] = b"keystead pepper check v1";
/// The pepper check of a peppered store whose key records are all authenticated (version 2).
const PEPPER_CHECK_MESSAGE_V2: &[u8] = b"keystead pepper check v2";
/// HKDF-SHA256 salt and info of the record MAC key: a key of its own, not the hashing key.
const RECORD_MAC_SALT: &[u8] = b"keystead";
const RECORD_MAC_INFO: &[u8] = b"keystead record mac v1";

/// Holds the HMAC key: the pepper, or 32 zero bytes for a store without one; and, with a
/// pepper, the key that authenticates key records (docs/storage.md).
pub(crate) struct Hasher {
    key: hmac::Key,
    record_key: Option<hmac::Key>,
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
        let record_key = match pepper {
            None => None,
            Some(p) => Some(record_mac_key(p)?),
        };
        Ok(Hasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, key_bytes),
            record_key,
        })
    }

    /// The key that authenticates key records: HKDF-SHA256 of the pepper; `None` without one.
    pub(crate) fn record_key(&self) -> Option<&hmac::Key> {
        self.record_key.as_ref()
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

    /// A value stored at creation so that opening with another pepper is detected. With a
    /// pepper it also says "every key record is authenticated" (version 2 of the message):
    /// nobody without the pepper can turn it back into the version-1 value.
    pub(crate) fn pepper_check(&self) -> [u8; 32] {
        let message = if self.record_key.is_some() {
            PEPPER_CHECK_MESSAGE_V2
        } else {
            PEPPER_CHECK_MESSAGE
        };
        self.sign(message)
    }

    /// The pepper check a peppered store written before records were authenticated holds.
    pub(crate) fn legacy_pepper_check(&self) -> Option<[u8; 32]> {
        self.record_key
            .is_some()
            .then(|| self.sign(PEPPER_CHECK_MESSAGE))
    }

    fn sign(&self, message: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.key, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

fn record_mac_key(pepper: &[u8]) -> Result<hmac::Key> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, RECORD_MAC_SALT).extract(pepper);
    let okm = prk
        .expand(&[RECORD_MAC_INFO], hmac::HMAC_SHA256)
        .map_err(|_| Error::Storage("deriving the record key failed".into()))?;
    Ok(hmac::Key::from(okm))
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
