//! keystead: API keys for servers that embed their own key store.
//!
//! Keys look like `ks_<12-char id><43-char secret><6-char checksum>`; only a salted
//! HMAC-SHA256 of the secret is stored, in one embedded file that several processes of a host
//! can share. [`KeyStore::verify_header`] turns an `Authorization: Bearer <key>` value into a
//! [`Verification`] with an [`Outcome`], an HTTP status and a `WWW-Authenticate` value.
//!
//! ```
//! use keystead::{KeyStore, NewKey, Options, Outcome};
//! # let dir = tempfile::tempdir()?;
//! let store = KeyStore::open(dir.path().join("keystead.redb"), Options::new())?;
//! let created = store.create(NewKey::new("dev-server-integration"))?;
//! // Show `created.key()` once; only its hash is stored.
//! let check = store.verify_header(format!("Bearer {}", created.key()), &[])?;
//! assert_eq!(check.outcome(), Outcome::Valid);
//! store.revoke(created.info().id())?;
//! assert_eq!(store.verify(created.key(), &[])?.outcome(), Outcome::Revoked);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
pub mod backend;
mod base62;
mod codec;
mod error;
mod hash;
mod header;
mod key;
mod model;
mod padded;
mod record;
mod stats;
mod store;
mod time;
mod usage;
mod verify;

// The public interface is:
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::header::{parse_authorization_header, HeaderError, MAX_HEADER_LEN};
pub use crate::key::{parse_key, redact_keys, KeyId, KeyParts, MalformedKey, DEFAULT_PREFIX};
pub use crate::model::{
    is_invisible_char, AuditAction, AuditEntry, CreatedKey, DailyUsage, KeyInfo, KeyStatus,
    ListFilter, NewKey, MAX_ACTOR_CHARS, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN,
    MAX_METADATA_TOTAL, MAX_METADATA_VALUE_LEN, MAX_NAME_CHARS, MAX_SCOPES, MAX_SCOPE_LEN,
};
pub use crate::model::{BusiestKeys, KeyUsage};
pub use crate::record::decode_record_roundtrip;
pub use crate::stats::Stats;
pub use crate::store::{display_location, KeyStore, Options, DEFAULT_AUDIT_LIMIT};
pub use crate::verify::{Outcome, Verification};
pub use zeroize::Zeroizing;
