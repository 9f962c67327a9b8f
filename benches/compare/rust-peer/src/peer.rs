//! The hand-rolled peer: what a careful developer writes without a key library.
//!
//! - key: `pk_` + 16 hex chars of a random 64-bit id + 64 hex chars of a random 256-bit secret;
//! - SQLite (rusqlite, bundled) in WAL mode, `synchronous=NORMAL`, one table with
//!   `id TEXT PRIMARY KEY`, a random 16-byte salt and HMAC-SHA256(pepper, salt ‖ secret);
//! - verify: shape check, one indexed lookup through a prepared statement that is kept and
//!   reused, HMAC, `subtle` constant-time compare, state / expiry / scope checks.
//!
//! It deliberately does less than keystead (no checksum, no audit log, no usage counting,
//! no dummy hash for unknown ids), so every difference in its favour is a fair upper bound.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rusqlite::{params, Connection, Statement};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key (a pepper from a secret manager, in a real deployment).
const PEPPER: &[u8; 32] = b"peer-bench-pepper-0123456789abcd";
pub const PREFIX: &str = "pk_";
pub const KEY_LEN: usize = 3 + 16 + 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerOutcome {
    Valid,
    Malformed,
    NotFound,
    Revoked,
    Expired,
    InsufficientScope,
}

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS keys (
            id TEXT PRIMARY KEY,
            salt BLOB NOT NULL,
            hash BLOB NOT NULL,
            name TEXT NOT NULL,
            scopes TEXT NOT NULL,
            state INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            expires_at INTEGER
        );",
    )?;
    Ok(conn)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn mac(salt: &[u8], secret: &[u8; 32]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(PEPPER).expect("any key length");
    m.update(salt);
    m.update(secret);
    m.finalize().into_bytes().into()
}

/// Creates `names.len()` keys in one transaction; returns their plaintext keys.
pub fn create_many(
    conn: &mut Connection,
    names: &[String],
    scopes: &str,
) -> rusqlite::Result<Vec<String>> {
    let tx = conn.transaction()?;
    let mut keys = Vec::with_capacity(names.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO keys (id, salt, hash, name, scopes, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
        )?;
        let now = now_ms();
        for name in names {
            let mut id = [0u8; 8];
            let mut secret = [0u8; 32];
            let mut salt = [0u8; 16];
            getrandom::fill(&mut id).expect("OS randomness");
            getrandom::fill(&mut secret).expect("OS randomness");
            getrandom::fill(&mut salt).expect("OS randomness");
            let id_hex = hex::encode(id);
            let hash = mac(&salt, &secret);
            insert.execute(params![id_hex, &salt[..], &hash[..], name, scopes, now])?;
            keys.push(format!("{PREFIX}{id_hex}{}", hex::encode(secret)));
        }
    }
    tx.commit()?;
    Ok(keys)
}

/// Verifies keys with one prepared statement kept for its lifetime.
pub struct Verifier<'c> {
    lookup: Statement<'c>,
}

impl<'c> Verifier<'c> {
    pub fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Verifier {
            lookup: conn
                .prepare("SELECT salt, hash, state, expires_at, scopes FROM keys WHERE id = ?1")?,
        })
    }

    pub fn verify(
        &mut self,
        presented: &str,
        required_scope: Option<&str>,
    ) -> rusqlite::Result<PeerOutcome> {
        if presented.len() != KEY_LEN || !presented.starts_with(PREFIX) {
            return Ok(PeerOutcome::Malformed);
        }
        let id = &presented[3..19];
        let mut id_bytes = [0u8; 8];
        let mut secret = [0u8; 32];
        if hex::decode_to_slice(id, &mut id_bytes).is_err()
            || hex::decode_to_slice(&presented[19..], &mut secret).is_err()
        {
            return Ok(PeerOutcome::Malformed);
        }
        let mut rows = self.lookup.query([id])?;
        let Some(row) = rows.next()? else {
            return Ok(PeerOutcome::NotFound);
        };
        let salt = row.get_ref(0)?.as_blob()?;
        let stored = row.get_ref(1)?.as_blob()?;
        let computed = mac(salt, &secret);
        if !bool::from(computed[..].ct_eq(stored)) {
            return Ok(PeerOutcome::NotFound);
        }
        let state: i64 = row.get(2)?;
        let expires_at: Option<i64> = row.get(3)?;
        if state != 0 {
            return Ok(PeerOutcome::Revoked);
        }
        if expires_at.is_some_and(|at| at <= now_ms()) {
            return Ok(PeerOutcome::Expired);
        }
        if let Some(scope) = required_scope {
            let scopes = row.get_ref(4)?.as_str()?;
            if !scopes.split(' ').any(|s| s == scope) {
                return Ok(PeerOutcome::InsufficientScope);
            }
        }
        Ok(PeerOutcome::Valid)
    }
}
