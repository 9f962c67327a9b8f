//! Admin writes: validating new keys, read-modify-write of one record, inserting a new key
//! and appending to the audit log, each inside the write transaction of `Inner::write`.

use zeroize::Zeroizing;

use super::shared::{blank_record, fill, info_of, load, Inner};
use crate::audit;
use crate::backend::Txn;
use crate::error::{Error, Result};
use crate::key::{self, KeyId};
use crate::model::{self, AuditAction, CreatedKey, KeyInfo, NewKey};
use crate::record::{Record, State};
use crate::time;

/// Validates a new key's fields and returns its record, still without id, salt and hash.
pub(super) fn new_record(new: NewKey, now: i64) -> Result<Record> {
    new.validate()?;
    let scopes = model::normalize_scopes(&new.scopes)?;
    let expires_at = new.expires_at.map(time::to_ms);
    Ok(blank_record(
        now,
        new.name,
        scopes,
        new.metadata,
        expires_at,
    ))
}

pub(super) fn refuse_if_revoked(record: &Record, operation: &'static str) -> Result<()> {
    if record.state == State::Revoked {
        return Err(Error::InvalidState {
            id: KeyId::from_u64(record.id),
            state: "revoked",
            operation,
        });
    }
    Ok(())
}

impl Inner {
    /// Read-modify-write of one record; `change` returns the audit detail, or `None` if it
    /// changed nothing (then nothing is written or audited).
    pub(super) fn update(
        &self,
        id: KeyId,
        action: AuditAction,
        mut change: impl FnMut(&mut Record) -> Result<Option<String>>,
    ) -> Result<KeyInfo> {
        self.write(|txn| {
            let mut record = load(txn, &self.hasher, id)?;
            if let Some(detail) = change(&mut record)? {
                record.updated_at = time::now_ms();
                self.put(txn, &record)?;
                self.append_audit(txn, action, id, &detail)?;
            }
            info_of(txn, &record)
        })
    }

    pub(super) fn set_state(
        &self,
        id: KeyId,
        target: State,
        action: AuditAction,
        verb: &'static str,
    ) -> Result<KeyInfo> {
        self.update(id, action, |record| {
            if record.state == target {
                return Ok(None);
            }
            if record.state == State::Revoked {
                return Err(Error::InvalidState {
                    id,
                    state: "revoked",
                    operation: verb,
                });
            }
            record.state = target;
            Ok(Some(String::new()))
        })
    }

    /// Fills in a fresh id, salt and hash for `record`, stores it, and returns the key.
    pub(super) fn insert_new(
        &self,
        txn: &mut dyn Txn,
        mut record: Record,
        now: i64,
    ) -> Result<CreatedKey> {
        let mut id_bytes = [0u8; 8];
        let id = loop {
            fill(&self.rng, &mut id_bytes)?;
            let candidate = u64::from_be_bytes(id_bytes);
            // 0 is the dummy record's id; a collision of 64 random bits is astronomically
            // rare but checked, since the id is the lookup key.
            if candidate != 0 && txn.key(candidate)?.is_none() {
                break candidate;
            }
        };
        let mut secret = Zeroizing::new([0u8; 32]);
        fill(&self.rng, &mut secret[..])?;
        fill(&self.rng, &mut record.salt)?;
        record.id = id;
        record.hash = self.hasher.hash(&record.salt, id, &secret);
        record.created_at = now;
        record.updated_at = now;
        self.put(txn, &record)?;
        let key = key::format(&self.prefix, KeyId::from_u64(id), &secret);
        Ok(CreatedKey {
            key,
            info: KeyInfo::from_record(&record, None, 0),
        })
    }

    pub(super) fn append_audit(
        &self,
        txn: &mut dyn Txn,
        action: AuditAction,
        id: KeyId,
        detail: &str,
    ) -> Result<()> {
        // Entries are kept in commit order with non-decreasing timestamps, even if clocks of
        // processes sharing the file differ slightly, so `audit(since)` can stop early.
        let mut last = i64::MIN;
        txn.scan_audit_newest_first(&mut |_, bytes| {
            last = audit::at_ms(bytes).unwrap_or(i64::MIN);
            Ok(false)
        })?;
        let at = time::now_ms().max(last);
        txn.append_audit(&audit::encode(
            at,
            self.actor.as_deref(),
            action,
            id,
            detail,
        ))?;
        Ok(())
    }
}
