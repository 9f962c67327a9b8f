//! The outcome of checking a presented credential.

use std::fmt;
use std::sync::Arc;

use crate::key::KeyId;
use crate::model::KeyInfo;

/// What verifying a credential concluded. Every credential gets one; none is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The key exists, its secret matched, it is active and has every required scope.
    Valid,
    /// No credentials: an absent, empty or whitespace-only header, or another auth scheme.
    Missing,
    /// Not a well-formed credential: header syntax, length, charset, prefix or checksum.
    Malformed,
    /// Unknown id or wrong secret; the two are deliberately indistinguishable.
    NotFound,
    /// The secret matched but the key is disabled.
    Disabled,
    /// The secret matched but the key is revoked.
    Revoked,
    /// The secret matched but the key has expired.
    Expired,
    /// The key is valid but lacks a required scope.
    InsufficientScope,
}

impl Outcome {
    /// Every outcome, each once, in a fixed order (`valid` first): the order of
    /// [`Stats::outcomes`](crate::Stats::outcomes), for tables indexed by outcome.
    /// A later version may add outcomes at the end.
    pub const ALL: [Outcome; 8] = [
        Outcome::Valid,
        Outcome::Missing,
        Outcome::Malformed,
        Outcome::NotFound,
        Outcome::Disabled,
        Outcome::Revoked,
        Outcome::Expired,
        Outcome::InsufficientScope,
    ];

    /// The stable snake_case code shared by every binding: `valid`, `missing`, `malformed`,
    /// `not_found`, `disabled`, `revoked`, `expired`, `insufficient_scope`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Missing => "missing",
            Outcome::Malformed => "malformed",
            Outcome::NotFound => "not_found",
            Outcome::Disabled => "disabled",
            Outcome::Revoked => "revoked",
            Outcome::Expired => "expired",
            Outcome::InsufficientScope => "insufficient_scope",
        }
    }

    /// The HTTP status to answer with: 200, 400 (malformed request), 401 (missing or invalid
    /// credentials) or 403 (insufficient scope).
    pub fn http_status(&self) -> u16 {
        match self {
            Outcome::Valid => 200,
            Outcome::Malformed => 400,
            Outcome::Missing
            | Outcome::NotFound
            | Outcome::Disabled
            | Outcome::Revoked
            | Outcome::Expired => 401,
            Outcome::InsufficientScope => 403,
        }
    }

    /// The RFC 6750 §3 error code, if the outcome has one.
    pub fn rfc6750_error(&self) -> Option<&'static str> {
        match self {
            Outcome::Valid | Outcome::Missing => None,
            Outcome::Malformed => Some("invalid_request"),
            Outcome::NotFound | Outcome::Disabled | Outcome::Revoked | Outcome::Expired => {
                Some("invalid_token")
            }
            Outcome::InsufficientScope => Some("insufficient_scope"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of [`KeyStore::verify`](crate::KeyStore::verify) or
/// [`KeyStore::verify_header`](crate::KeyStore::verify_header).
#[derive(Clone)]
pub struct Verification {
    pub(crate) outcome: Outcome,
    /// Only for [`Outcome::Valid`].
    pub(crate) key: Option<Arc<KeyInfo>>,
    /// Set whenever the secret matched (valid or refused after the match).
    pub(crate) key_id: Option<KeyId>,
    pub(crate) required_scopes: Vec<String>,
}

impl Verification {
    pub(crate) fn without_key(outcome: Outcome) -> Self {
        Verification {
            outcome,
            key: None,
            key_id: None,
            required_scopes: Vec::new(),
        }
    }

    /// The outcome.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
    /// Whether the credential is accepted.
    pub fn is_valid(&self) -> bool {
        self.outcome == Outcome::Valid
    }
    /// The stable code, e.g. `valid` or `not_found`.
    pub fn code(&self) -> &'static str {
        self.outcome.as_str()
    }
    /// The key, only for a [`valid`](Outcome::Valid) outcome: code that checks "has a key"
    /// therefore never admits a refused one. Usage figures in it are as of the store view the
    /// check used.
    pub fn key(&self) -> Option<&KeyInfo> {
        self.key.as_deref()
    }
    /// The id of the key whose secret matched, for logs: set for `valid` and for the outcomes
    /// refused after the secret matched (`disabled`, `revoked`, `expired`,
    /// `insufficient_scope`); `None` for `missing`, `malformed` and `not_found`.
    pub fn key_id(&self) -> Option<KeyId> {
        self.key_id
    }
    /// See [`Outcome::http_status`].
    pub fn http_status(&self) -> u16 {
        self.outcome.http_status()
    }
    /// The `WWW-Authenticate` value for the response (RFC 6750 §3), or `None` for a valid key.
    ///
    /// `Bearer` with no error for missing credentials; `Bearer error="invalid_request"`,
    /// `Bearer error="invalid_token"`, or `Bearer error="insufficient_scope", scope="..."`.
    pub fn www_authenticate(&self) -> Option<String> {
        match self.outcome {
            Outcome::Valid => None,
            Outcome::Missing => Some("Bearer".to_owned()),
            Outcome::InsufficientScope => Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                self.required_scopes.join(" ")
            )),
            other => Some(format!(
                "Bearer error=\"{}\"",
                other.rfc6750_error().unwrap_or("invalid_token")
            )),
        }
    }
}

impl fmt::Debug for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verification")
            .field("outcome", &self.outcome)
            .field("key_id", &self.key_id)
            .finish()
    }
}
