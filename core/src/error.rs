//! The one error type of the crate. Messages never contain key material or hashes.

use crate::key::KeyId;

/// An operational failure, or a request the store refuses.
///
/// A presented key that does not verify is never an `Error`: it is a
/// [`Verification`](crate::Verification) outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is out of bounds (name, scope, metadata, prefix, actor, expiry or another time
    /// after 9999-12-31T23:59:59Z, key id, limit).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No key with this id exists in the store.
    #[error("no key with id {0}")]
    KeyNotFound(KeyId),
    /// The key's state forbids the operation, e.g. enabling a revoked key.
    #[error("key {id} is {state}, so it cannot be {operation}")]
    InvalidState {
        /// The key concerned.
        id: KeyId,
        /// Its current state, e.g. `revoked`.
        state: &'static str,
        /// What was refused, e.g. `enabled`.
        operation: &'static str,
    },
    /// The pepper given at open is not the one the store was created with (or one was
    /// given for a store created without, or the other way round).
    #[error("wrong pepper: it does not match the one this store was created with")]
    WrongPepper,
    /// A prefix was requested at open that differs from the store's own.
    #[error("this store issues keys with prefix `{stored}`, not `{requested}`")]
    PrefixMismatch {
        /// The prefix recorded in the store.
        stored: String,
        /// The prefix that was asked for.
        requested: String,
    },
    /// The file was written by a newer keystead whose format this version cannot read.
    #[error("the store has {what} version {found}; this keystead reads up to {supported}")]
    UnsupportedVersion {
        /// Which version: `schema`, `record` or `audit entry`.
        what: &'static str,
        /// The version found.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The file is not a keystead store, or part of it is damaged.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// Another process holds the file in a mode that excludes this one.
    #[error("the store is locked by another process: {0}")]
    Locked(String),
    /// The storage engine failed for a reason other than I/O or corruption.
    #[error("storage error: {0}")]
    Storage(String),
    /// Reading or writing the file failed (permissions, full disk, ...).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The existing store file is writable by its group or by others, so someone other than
    /// its owner could change keys (or, without a pepper, mint them). Nothing was read or
    /// written; `chmod 600` on the file fixes it.
    #[error(
        "the store file is writable by group or others (mode {mode:04o}); \
         refusing to use it: run `chmod 600` on the file"
    )]
    InsecurePermissions {
        /// The file's permission bits, e.g. `0o666`.
        mode: u32,
    },
    /// The store's path no longer names the file this handle opened: it was replaced (e.g. a
    /// backup renamed over it) or removed. The handle fails closed — every later read, verify
    /// and write returns this error, and nothing is written to either file — until the store
    /// is opened again, which checks the new file (prefix, pepper, version, mode).
    #[error(
        "the store file was replaced or removed after this handle opened it; \
         open the store again to use the file now at its path"
    )]
    StoreReplaced,
    /// There is no store at the location, and the open was told not to create one
    /// ([`Options::create_if_missing`](crate::Options::create_if_missing)`(false)`): the file is
    /// missing or empty, or the location is `memory:` (each open of which makes a new store).
    /// Nothing was created or written.
    #[error("there is no store at this location, and this open does not create one")]
    StoreNotFound,
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
