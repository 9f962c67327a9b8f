//! The one error type of the crate, and its stable classification ([`ErrorKind`]). Messages
//! never contain key material or hashes.

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
    /// The handle was closed. Core's [`KeyStore::close`](crate::KeyStore::close) consumes the
    /// store, so core itself never returns this: bindings whose handle outlives `close` (every
    /// language binding) return it for each later call, so that a closed store is one error,
    /// with one kind, everywhere.
    #[error("the key store is closed")]
    Closed,
    /// The store's database cannot be reached or refused the connection (down, unreachable,
    /// authentication or TLS failure), or this process exceeded its bound on database
    /// lookups. Never a statement about a key: a verify that cannot be judged fails with this
    /// error instead of answering `not_found` (docs/fleet.md, "Outages").
    #[error("the key store is unavailable: {0}")]
    StoreUnavailable(String),
}

/// The stable classification of an [`Error`]: what a caller can act on, and what every binding
/// maps to its own error types (Python exception classes, Node `code` strings, Swift cases,
/// CLI exit codes) in one table each.
///
/// Several variants of [`Error`] share a kind: everything that says "the file or the storage
/// engine failed" is [`ErrorKind::Store`], and its message says which failure it was. New
/// kinds may be added; [`ErrorKind::ALL`] lists them, so that a binding can test that it maps
/// every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument is out of bounds ([`Error::InvalidArgument`]).
    InvalidArgument,
    /// No key with this id exists ([`Error::KeyNotFound`]).
    KeyNotFound,
    /// The key's state forbids the operation ([`Error::InvalidState`]).
    InvalidState,
    /// The pepper does not match the store's ([`Error::WrongPepper`]).
    WrongPepper,
    /// A prefix was requested that differs from the store's own ([`Error::PrefixMismatch`]).
    PrefixMismatch,
    /// The store was written by a newer keystead ([`Error::UnsupportedVersion`]).
    UnsupportedVersion,
    /// The file or the storage engine failed: [`Error::Corrupt`], [`Error::Locked`],
    /// [`Error::Storage`], [`Error::Io`], [`Error::InsecurePermissions`],
    /// [`Error::StoreReplaced`], [`Error::StoreNotFound`].
    Store,
    /// The handle was closed ([`Error::Closed`]).
    Closed,
    /// The store's database cannot be reached now; retrying later may succeed
    /// ([`Error::StoreUnavailable`]).
    Unavailable,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidArgument,
        ErrorKind::KeyNotFound,
        ErrorKind::InvalidState,
        ErrorKind::WrongPepper,
        ErrorKind::PrefixMismatch,
        ErrorKind::UnsupportedVersion,
        ErrorKind::Store,
        ErrorKind::Closed,
        ErrorKind::Unavailable,
    ];

    /// The stable code of the kind, e.g. `KEYSTEAD_INVALID_ARGUMENT`: the `code` of the Node
    /// binding's errors, and the name to use wherever a kind must be written down.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "KEYSTEAD_INVALID_ARGUMENT",
            ErrorKind::KeyNotFound => "KEYSTEAD_KEY_NOT_FOUND",
            ErrorKind::InvalidState => "KEYSTEAD_INVALID_STATE",
            ErrorKind::WrongPepper => "KEYSTEAD_WRONG_PEPPER",
            ErrorKind::PrefixMismatch => "KEYSTEAD_PREFIX_MISMATCH",
            ErrorKind::UnsupportedVersion => "KEYSTEAD_UNSUPPORTED_VERSION",
            ErrorKind::Store => "KEYSTEAD_STORE_ERROR",
            ErrorKind::Closed => "KEYSTEAD_CLOSED",
            ErrorKind::Unavailable => "KEYSTEAD_UNAVAILABLE",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error's stable classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::KeyNotFound(_) => ErrorKind::KeyNotFound,
            Error::InvalidState { .. } => ErrorKind::InvalidState,
            Error::WrongPepper => ErrorKind::WrongPepper,
            Error::PrefixMismatch { .. } => ErrorKind::PrefixMismatch,
            Error::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            Error::Corrupt(_)
            | Error::Locked(_)
            | Error::Storage(_)
            | Error::Io(_)
            | Error::InsecurePermissions { .. }
            | Error::StoreReplaced
            | Error::StoreNotFound => ErrorKind::Store,
            Error::Closed => ErrorKind::Closed,
            Error::StoreUnavailable(_) => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant (a new variant fails to compile in `kind` until it is
    /// classified, and must be added here).
    fn one_of_each() -> Vec<Error> {
        let id: KeyId = "000000000001".parse().unwrap();
        vec![
            Error::InvalidArgument("x".into()),
            Error::KeyNotFound(id),
            Error::InvalidState {
                id,
                state: "revoked",
                operation: "enabled",
            },
            Error::WrongPepper,
            Error::PrefixMismatch {
                stored: "ks".into(),
                requested: "hub".into(),
            },
            Error::UnsupportedVersion {
                what: "schema",
                found: 9,
                supported: 1,
            },
            Error::Corrupt("x".into()),
            Error::Locked("x".into()),
            Error::Storage("x".into()),
            Error::Io(std::io::Error::other("x")),
            Error::InsecurePermissions { mode: 0o666 },
            Error::StoreReplaced,
            Error::StoreNotFound,
            Error::Closed,
            Error::StoreUnavailable("x".into()),
        ]
    }

    #[test]
    fn every_kind_is_listed_once_and_some_error_has_it() {
        let errors = one_of_each();
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert!(!ErrorKind::ALL[..i].contains(kind), "{kind:?} listed twice");
            assert!(
                errors.iter().any(|e| e.kind() == *kind),
                "no error has kind {kind:?}"
            );
        }
        for error in &errors {
            assert!(ErrorKind::ALL.contains(&error.kind()), "{error}");
        }
    }

    #[test]
    fn codes_are_distinct_stable_names() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            let code = kind.code();
            assert!(code.starts_with("KEYSTEAD_"), "{code}");
            assert!(
                code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{code}"
            );
            assert!(
                ErrorKind::ALL[..i].iter().all(|k| k.code() != code),
                "{code} twice"
            );
            assert_eq!(kind.to_string(), code);
        }
        // The codes bindings and their users already rely on.
        assert_eq!(
            Error::Io(std::io::Error::other("x")).kind().code(),
            "KEYSTEAD_STORE_ERROR"
        );
        assert_eq!(Error::Closed.kind().code(), "KEYSTEAD_CLOSED");
        assert_eq!(
            Error::InvalidArgument("x".into()).kind().code(),
            "KEYSTEAD_INVALID_ARGUMENT"
        );
    }
}
