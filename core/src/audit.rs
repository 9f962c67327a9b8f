//! Encoding of audit log entries (docs/storage.md).

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::key::KeyId;
use crate::model::{AuditAction, AuditEntry};
use crate::time;

const AUDIT_VERSION: u8 = 1;

pub(crate) fn encode(
    at_ms: i64,
    actor: Option<&str>,
    action: AuditAction,
    key: KeyId,
    detail: &str,
) -> Vec<u8> {
    let mut w = Writer::new(32 + detail.len());
    w.u8(AUDIT_VERSION);
    w.i64(at_ms);
    w.u8(action.code());
    w.u64(key.as_u64());
    match actor {
        Some(actor) => {
            w.u8(1);
            w.str(actor);
        }
        None => w.u8(0),
    }
    w.str(detail);
    w.finish()
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<AuditEntry> {
    let mut r = Reader::new(bytes, "audit entry")?;
    let version = r.u8()?;
    if version != AUDIT_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "audit entry",
            found: u32::from(version),
            supported: u32::from(AUDIT_VERSION),
        });
    }
    let at_ms = r.i64()?;
    let action = AuditAction::from_code(r.u8()?).ok_or_else(|| r.fail("unknown action"))?;
    let key_id = KeyId::from_u64(r.u64()?);
    let actor = match r.u8()? {
        0 => None,
        1 => Some(r.str()?),
        _ => return Err(r.fail("bad actor flag")),
    };
    let detail = r.str()?;
    r.end()?;
    Ok(AuditEntry {
        seq,
        at: time::from_ms(at_ms),
        actor,
        action,
        key_id,
        detail,
    })
}

/// The commit time of an entry, read without decoding the rest.
pub(crate) fn at_ms(bytes: &[u8]) -> Option<i64> {
    let mut at = [0u8; 8];
    at.copy_from_slice(bytes.get(1..9)?);
    Some(i64::from_le_bytes(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for action in AuditAction::ALL {
            let bytes = encode(5, Some("alice"), action, KeyId::from_u64(3), "detail");
            let entry = decode(9, &bytes).unwrap();
            assert_eq!(entry.action, action);
            assert_eq!(entry.actor.as_deref(), Some("alice"));
            assert_eq!(entry.seq, 9);
            assert_eq!(at_ms(&bytes), Some(5));
        }
        let bytes = encode(5, None, AuditAction::Create, KeyId::from_u64(3), "");
        assert_eq!(decode(1, &bytes).unwrap().actor, None);
    }
}
