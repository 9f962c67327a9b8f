//! The stored form of a key (docs/storage.md): versioned, canonical, CRC-protected.

use std::collections::BTreeMap;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

use ring::hmac;

/// Record layout with a CRC-32 trailer: stores without a pepper.
pub(crate) const RECORD_V1: u8 = 1;
/// The same layout with an HMAC-SHA256 trailer under the record key derived from the pepper:
/// every record of a peppered store (docs/storage.md).
pub(crate) const RECORD_V2: u8 = 2;
/// Newest record layout this build writes and reads.
pub(crate) const RECORD_VERSION: u8 = RECORD_V2;
/// HMAC-SHA256(pepper or zero key, salt ‖ id as 8 big-endian bytes ‖ secret as 32 bytes).
pub(crate) const ALG_HMAC_SHA256_V1: u8 = 1;

/// The administrative state stored with a key; expiry is derived from `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Active = 0,
    Disabled = 1,
    Revoked = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) id: u64,
    pub(crate) alg: u8,
    pub(crate) salt: [u8; 16],
    pub(crate) hash: [u8; 32],
    pub(crate) state: State,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) replaces: Option<u64>,
    pub(crate) replaced_by: Option<u64>,
    pub(crate) name: String,
    /// Sorted, without duplicates.
    pub(crate) scopes: Vec<String>,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// Bytes of a record that hold what verify needs before the secret matched: version,
/// algorithm, id, salt, hash, state, created and updated, flags, expiry. Every valid record is
/// longer (name, scopes, metadata and trailer follow), so a head is always exactly this long.
pub(crate) const HEAD_LEN: usize = 1 + 1 + 8 + 16 + 32 + 1 + 8 + 8 + 1 + 8;

/// The fixed-size head of a record: what verify judges a presented secret against. It is
/// decoded on a cache miss at the same cost for every record (whatever its name, scopes and
/// metadata weigh) and for the dummy of an unknown id; it is *not* checked against the trailer,
/// so nothing in it but "the secret does not match" is acted on before the whole record has
/// been decoded and checked (`Record::decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) id: u64,
    pub(crate) salt: [u8; 16],
    pub(crate) hash: [u8; 32],
    pub(crate) state: State,
    pub(crate) expires_at: Option<i64>,
}

impl Head {
    /// Decodes the first [`HEAD_LEN`] bytes of a record (the flags decide whether the last 8
    /// are the expiry). Same checks as the full decoder on those fields.
    pub(crate) fn decode(bytes: &[u8; HEAD_LEN]) -> Result<Head> {
        let mut r = Reader::unchecked(bytes, "key record");
        check_version(&mut r)?;
        let id = r.u64()?;
        let salt = r.array()?;
        let hash = r.array()?;
        let byte = r.u8()?;
        let state = State::decode(&r, byte)?;
        let _created_at = r.i64()?;
        let _updated_at = r.i64()?;
        let flags = r.u8()?;
        if flags & !(FLAG_EXPIRES | FLAG_REPLACES | FLAG_REPLACED_BY) != 0 {
            return Err(r.fail("unknown flags"));
        }
        // Read unconditionally, so a record with and one without an expiry cost the same.
        let expiry = r.i64()?;
        let expires_at = (flags & FLAG_EXPIRES != 0).then_some(expiry);
        Ok(Head {
            id,
            salt,
            hash,
            state,
            expires_at,
        })
    }

    /// The head of a full record.
    pub(crate) fn of(record: &Record) -> Head {
        Head {
            id: record.id,
            salt: record.salt,
            hash: record.hash,
            state: record.state,
            expires_at: record.expires_at,
        }
    }
}

impl State {
    fn decode(r: &Reader<'_>, byte: u8) -> Result<State> {
        match byte {
            0 => Ok(State::Active),
            1 => Ok(State::Disabled),
            2 => Ok(State::Revoked),
            _ => Err(r.fail("unknown state")),
        }
    }
}

/// Reads and checks the record version (either layout) and hash algorithm.
fn check_version(r: &mut Reader<'_>) -> Result<()> {
    let version = r.u8()?;
    if version != RECORD_V1 && version != RECORD_V2 {
        return Err(if version > RECORD_VERSION {
            Error::UnsupportedVersion {
                what: "record",
                found: u32::from(version),
                supported: u32::from(RECORD_VERSION),
            }
        } else {
            r.fail("unknown record version")
        });
    }
    let alg = r.u8()?;
    if alg != ALG_HMAC_SHA256_V1 {
        return Err(Error::UnsupportedVersion {
            what: "hash algorithm",
            found: u32::from(alg),
            supported: u32::from(ALG_HMAC_SHA256_V1),
        });
    }
    Ok(())
}

const FLAG_EXPIRES: u8 = 1;
const FLAG_REPLACES: u8 = 2;
const FLAG_REPLACED_BY: u8 = 4;

impl Record {
    /// Encodes the record: version 2 authenticated under `key` (a peppered store), or
    /// version 1 with a CRC-32 without one.
    pub(crate) fn encode(&self, key: Option<&hmac::Key>) -> Vec<u8> {
        let mut w = Writer::new(160 + self.name.len());
        w.u8(if key.is_some() { RECORD_V2 } else { RECORD_V1 });
        w.u8(self.alg);
        w.u64(self.id);
        w.bytes(&self.salt);
        w.bytes(&self.hash);
        w.u8(self.state as u8);
        w.i64(self.created_at);
        w.i64(self.updated_at);
        let mut flags = 0;
        if self.expires_at.is_some() {
            flags |= FLAG_EXPIRES;
        }
        if self.replaces.is_some() {
            flags |= FLAG_REPLACES;
        }
        if self.replaced_by.is_some() {
            flags |= FLAG_REPLACED_BY;
        }
        w.u8(flags);
        if let Some(at) = self.expires_at {
            w.i64(at);
        }
        if let Some(id) = self.replaces {
            w.u64(id);
        }
        if let Some(id) = self.replaced_by {
            w.u64(id);
        }
        w.str(&self.name);
        w.u16(self.scopes.len() as u16);
        for scope in &self.scopes {
            w.str(scope);
        }
        w.u16(self.metadata.len() as u16);
        for (k, v) in &self.metadata {
            w.str(k);
            w.str(v);
        }
        match key {
            Some(key) => w.finish_mac(key),
            None => w.finish(),
        }
    }

    /// Decodes a stored record. With `key` (a peppered store) only an authenticated record
    /// (version 2, its MAC verified) is accepted; without, only a version-1 record with a
    /// good CRC. Anything but a record this build wrote is an error: a wrong checksum or MAC,
    /// a record of the other kind, an unknown version or algorithm, a truncated or over-long
    /// record, invalid UTF-8, or a non-canonical encoding.
    pub(crate) fn decode(bytes: &[u8], key: Option<&hmac::Key>) -> Result<Record> {
        const WHAT: &str = "key record";
        let mut r = match (bytes.first().copied(), key) {
            (Some(RECORD_V2), Some(key)) => Reader::authenticated(bytes, key, WHAT)?,
            (Some(RECORD_V1), None) => Reader::new(bytes, WHAT)?,
            (Some(RECORD_V1), Some(_)) => {
                return Err(Error::Corrupt(
                    "key record: not authenticated (version 1) in a store with a pepper".into(),
                ))
            }
            (Some(RECORD_V2), None) => {
                return Err(Error::Corrupt(
                    "key record: authenticated (version 2) in a store without a pepper".into(),
                ))
            }
            // Versions this build does not know are reported by `check_version`.
            _ => Reader::unchecked(bytes, WHAT),
        };
        check_version(&mut r)?;
        let alg = ALG_HMAC_SHA256_V1;
        let id = r.u64()?;
        let salt = r.array()?;
        let hash = r.array()?;
        let byte = r.u8()?;
        let state = State::decode(&r, byte)?;
        let created_at = r.i64()?;
        let updated_at = r.i64()?;
        let flags = r.u8()?;
        if flags & !(FLAG_EXPIRES | FLAG_REPLACES | FLAG_REPLACED_BY) != 0 {
            return Err(r.fail("unknown flags"));
        }
        let expires_at = if flags & FLAG_EXPIRES != 0 {
            Some(r.i64()?)
        } else {
            None
        };
        let replaces = if flags & FLAG_REPLACES != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        let replaced_by = if flags & FLAG_REPLACED_BY != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        let name = r.str()?;
        let scope_count = r.u16()?;
        let mut scopes = Vec::with_capacity(usize::from(scope_count.min(64)));
        for _ in 0..scope_count {
            let scope = r.str()?;
            if scopes.last().is_some_and(|last: &String| *last >= scope) {
                return Err(r.fail("scopes not in canonical order"));
            }
            scopes.push(scope);
        }
        let meta_count = r.u16()?;
        let mut metadata = BTreeMap::new();
        let mut previous: Option<String> = None;
        for _ in 0..meta_count {
            let k = r.str()?;
            let v = r.str()?;
            if previous.as_ref().is_some_and(|p| *p >= k) {
                return Err(r.fail("metadata not in canonical order"));
            }
            previous = Some(k.clone());
            metadata.insert(k, v);
        }
        r.end()?;
        Ok(Record {
            id,
            alg,
            salt,
            hash,
            state,
            created_at,
            updated_at,
            expires_at,
            replaces,
            replaced_by,
            name,
            scopes,
            metadata,
        })
    }
}

/// Decodes arbitrary bytes as a stored key record and re-encodes it; for fuzzing the decoder.
///
/// Returns `Ok(bytes)` with the canonical encoding of what was decoded (equal to the input for
/// every input the decoder accepts), or the error a corrupt record yields.
///
/// # Errors
/// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] for anything that is not a valid record.
#[doc(hidden)]
pub fn decode_record_roundtrip(bytes: &[u8]) -> Result<Vec<u8>> {
    Record::decode(bytes, None).map(|r| r.encode(None))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Record {
        Record {
            id: 7,
            alg: ALG_HMAC_SHA256_V1,
            salt: [1; 16],
            hash: [2; 32],
            state: State::Disabled,
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_001,
            expires_at: Some(1_800_000_000_000),
            replaces: None,
            replaced_by: Some(9),
            name: "dev-server-integration".into(),
            scopes: vec!["chat:completions".into(), "embeddings".into()],
            metadata: [("owner".to_string(), "team-a".to_string())].into(),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let record = sample();
        let bytes = record.encode(None);
        assert_eq!(Record::decode(&bytes, None).unwrap(), record);
        let key = mac_key();
        let bytes = record.encode(Some(&key));
        assert_eq!(bytes[0], RECORD_V2);
        assert_eq!(Record::decode(&bytes, Some(&key)).unwrap(), record);
    }

    fn mac_key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"a record key for the tests, 32 b")
    }

    #[test]
    fn every_bit_flip_is_an_error() {
        let key = mac_key();
        for k in [None, Some(&key)] {
            let bytes = sample().encode(k);
            for i in 0..bytes.len() * 8 {
                let mut copy = bytes.clone();
                copy[i / 8] ^= 1 << (i % 8);
                assert!(Record::decode(&copy, k).is_err(), "bit {i}");
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let key = mac_key();
        for k in [None, Some(&key)] {
            let bytes = sample().encode(k);
            for len in 0..bytes.len() {
                assert!(Record::decode(&bytes[..len], k).is_err(), "len {len}");
            }
        }
    }

    /// A peppered store accepts only authenticated records, and a store without a pepper
    /// only CRC-protected ones; a record under another key fails its MAC.
    #[test]
    fn the_kind_of_record_must_match_the_store() {
        let key = mac_key();
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"another key");
        let plain = sample().encode(None);
        let sealed = sample().encode(Some(&key));
        assert!(matches!(
            Record::decode(&plain, Some(&key)),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            Record::decode(&sealed, None),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            Record::decode(&sealed, Some(&other)),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn the_head_is_the_same_in_both_kinds() {
        let key = mac_key();
        for bytes in [sample().encode(None), sample().encode(Some(&key))] {
            let head = Head::decode(bytes[..HEAD_LEN].try_into().unwrap()).unwrap();
            assert_eq!(head, Head::of(&sample()));
        }
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let mut w = Writer::new(8);
        w.u8(RECORD_VERSION + 1);
        w.bytes(b"future layout");
        let bytes = w.finish();
        for key in [None, Some(&mac_key())] {
            let err = Record::decode(&bytes, key).unwrap_err();
            assert!(matches!(
                err,
                Error::UnsupportedVersion {
                    what: "record",
                    found: 3,
                    supported: 2,
                }
            ));
        }
    }
}
