//! The public data types: what a caller passes in and gets back.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key::KeyId;
use crate::record::{Record, State};
use crate::time;

/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Most scopes on one key.
pub const MAX_SCOPES: usize = 32;
/// Longest scope, in bytes.
pub const MAX_SCOPE_LEN: usize = 64;
/// Most metadata entries on one key.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_LEN: usize = 1024;
/// Largest total size of one key's metadata (keys plus values), in bytes.
pub const MAX_METADATA_TOTAL: usize = 4096;

/// The effective status of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyStatus {
    /// Verifies (given the right secret and scopes).
    Active,
    /// Temporarily refused; `enable` makes it active again.
    Disabled,
    /// Permanently refused.
    Revoked,
    /// Past its expiry (and not revoked); `set_expiry` can extend it.
    Expired,
}

impl KeyStatus {
    /// The lowercase name used by the CLI, the bindings and JSON: `active`, `disabled`,
    /// `revoked`, `expired`.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }

    /// Parses the lowercase name.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other string.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "active" => Ok(KeyStatus::Active),
            "disabled" => Ok(KeyStatus::Disabled),
            "revoked" => Ok(KeyStatus::Revoked),
            "expired" => Ok(KeyStatus::Expired),
            other => Err(Error::invalid(format!(
                "unknown status `{}` (expected active, disabled, revoked or expired)",
                truncate_for_message(other)
            ))),
        }
    }

    /// Revoked wins over expired, which wins over disabled.
    pub(crate) fn of(state: State, expires_at: Option<i64>, now_ms: i64) -> Self {
        match state {
            State::Revoked => KeyStatus::Revoked,
            _ if expires_at.is_some_and(|at| at <= now_ms) => KeyStatus::Expired,
            State::Disabled => KeyStatus::Disabled,
            State::Active => KeyStatus::Active,
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything about a key except its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub(crate) id: KeyId,
    pub(crate) name: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) state: State,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) use_count: u64,
    pub(crate) replaces: Option<KeyId>,
    pub(crate) replaced_by: Option<KeyId>,
}

impl KeyInfo {
    pub(crate) fn from_record(record: &Record, last_used_at: Option<i64>, use_count: u64) -> Self {
        KeyInfo {
            id: KeyId::from_u64(record.id),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            metadata: record.metadata.clone(),
            state: record.state,
            created_at: record.created_at,
            updated_at: record.updated_at,
            expires_at: record.expires_at,
            last_used_at,
            use_count,
            replaces: record.replaces.map(KeyId::from_u64),
            replaced_by: record.replaced_by.map(KeyId::from_u64),
        }
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }
    /// The descriptive name given at creation, e.g. `dev-server-integration`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The scopes the key grants, sorted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// Free-form string metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// The status now (expiry is evaluated at the time of the call).
    pub fn status(&self) -> KeyStatus {
        self.status_at(SystemTime::now())
    }
    /// The status at a given time.
    pub fn status_at(&self, at: SystemTime) -> KeyStatus {
        KeyStatus::of(self.state, self.expires_at, time::to_ms(at))
    }
    /// When the key was created.
    pub fn created_at(&self) -> SystemTime {
        time::from_ms(self.created_at)
    }
    /// When the key's record last changed (name, scopes, status, ...).
    pub fn updated_at(&self) -> SystemTime {
        time::from_ms(self.updated_at)
    }
    /// When the key stops verifying, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at.map(time::from_ms)
    }
    /// The last successful verification recorded in the store (usage is flushed in batches).
    pub fn last_used_at(&self) -> Option<SystemTime> {
        self.last_used_at.map(time::from_ms)
    }
    /// Successful verifications recorded in the store (usage is flushed in batches).
    pub fn use_count(&self) -> u64 {
        self.use_count
    }
    /// The key this one replaced by rotation.
    pub fn replaces(&self) -> Option<KeyId> {
        self.replaces
    }
    /// The key that replaced this one by rotation.
    pub fn replaced_by(&self) -> Option<KeyId> {
        self.replaced_by
    }
}

/// What to create: a name plus optional scopes, metadata and expiry.
///
/// # Example
/// ```
/// use keystead::NewKey;
/// let new = NewKey::new("dev-server-integration")
///     .scopes(["chat:completions", "embeddings"])
///     .metadata([("owner", "platform-team")]);
/// # let _ = new;
/// ```
#[derive(Debug, Clone)]
pub struct NewKey {
    pub(crate) name: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) expires_at: Option<SystemTime>,
}

impl NewKey {
    /// A key with this name, no scopes, no metadata and no expiry.
    ///
    /// A name is 1 to [`MAX_NAME_CHARS`] characters, not blank, without control characters,
    /// without invisible or direction-changing ones ([`is_invisible_char`]) and without
    /// anything shaped like a key (`<prefix>_` and 61 characters of `[0-9A-Za-z]`).
    pub fn new(name: impl Into<String>) -> Self {
        NewKey {
            name: name.into(),
            scopes: Vec::new(),
            metadata: BTreeMap::new(),
            expires_at: None,
        }
    }
    /// The scopes the key grants, e.g. `chat:completions`.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
    /// Free-form string metadata: keys are 1 to [`MAX_METADATA_KEY_LEN`] characters of
    /// `[A-Za-z0-9_.-]`; values at most [`MAX_METADATA_VALUE_LEN`] bytes without C0/C1
    /// control characters (newlines and tabs included) or bidirectional controls; neither may
    /// hold a key.
    pub fn metadata<K: Into<String>, V: Into<String>>(
        mut self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.metadata = entries
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }
    /// When the key stops verifying; must be in the future and not after
    /// 9999-12-31T23:59:59Z.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Checks the fields as [`KeyStore::create`](crate::KeyStore::create) will, without a
    /// store: name, scopes, metadata limits and an expiry in the future, at the latest
    /// 9999-12-31T23:59:59Z.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        normalize_scopes(&self.scopes)?;
        validate_metadata(&self.metadata)?;
        if let Some(at) = self.expires_at {
            if time::checked_to_ms(at, "the expiry")? <= time::now_ms() {
                return Err(Error::invalid("the expiry must be in the future"));
            }
        }
        Ok(())
    }
}

/// A newly created key: the only time the plaintext exists.
///
/// The key string is wiped from memory when this value is dropped, and `Debug` never shows it.
pub struct CreatedKey {
    pub(crate) key: Zeroizing<String>,
    pub(crate) info: KeyInfo,
}

impl CreatedKey {
    /// The full key to hand to the client. Show it once; it cannot be recovered.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The stored information about the key.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }
    /// Splits into the key (still wiped on drop) and its information.
    pub fn into_parts(self) -> (Zeroizing<String>, KeyInfo) {
        (self.key, self.info)
    }
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// Which keys [`KeyStore::list`](crate::KeyStore::list) returns, and how many.
///
/// # Example
/// ```
/// use keystead::{KeyStatus, ListFilter};
/// let filter = ListFilter::new().status(KeyStatus::Active).scope("chat:completions").limit(50);
/// # let _ = filter;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub(crate) status: Option<KeyStatus>,
    pub(crate) name_prefix: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) expiring_within: Option<Duration>,
    pub(crate) after: Option<KeyId>,
    pub(crate) limit: Option<usize>,
}

impl ListFilter {
    /// Every key, in id order.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only keys with this status now.
    pub fn status(mut self, status: KeyStatus) -> Self {
        self.status = Some(status);
        self
    }
    /// Only keys whose name starts with this.
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = Some(prefix.into());
        self
    }
    /// Only keys that grant this scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
    /// Only keys that have not expired yet but will within this time.
    pub fn expiring_within(mut self, within: Duration) -> Self {
        self.expiring_within = Some(within);
        self
    }
    /// Paging: only keys with an id after this one (the last id of the previous page).
    pub fn after(mut self, id: KeyId) -> Self {
        self.after = Some(id);
        self
    }
    /// Paging: at most this many keys.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Successful verifications of one key on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyUsage {
    /// Midnight UTC at the start of the day.
    pub day: SystemTime,
    /// Successful verifications that day.
    pub count: u64,
}

/// One key's successful verifications over a range of days (see
/// [`KeyStore::busiest_keys`](crate::KeyStore::busiest_keys)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUsage {
    /// The key, as [`KeyStore::get`](crate::KeyStore::get) returns it (its all-time
    /// `use_count` and `last_used_at` included).
    pub key: KeyInfo,
    /// Its successful verifications in the range.
    pub count: u64,
}

/// The busiest keys over a range of days, and the range's totals (see
/// [`KeyStore::busiest_keys`](crate::KeyStore::busiest_keys)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BusiestKeys {
    /// At most the limit asked for: by count, highest first; equal counts by id, lowest first.
    pub keys: Vec<KeyUsage>,
    /// Successful verifications of all keys in the range (the base of a share).
    pub total: u64,
    /// How many keys had at least one in the range.
    pub keys_used: usize,
}

/// An administrative change, as recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditAction {
    /// A key was created.
    Create,
    /// A key was renamed.
    Rename,
    /// A key's scopes were replaced.
    SetScopes,
    /// A key's metadata was replaced.
    SetMetadata,
    /// A key's expiry was set or cleared.
    SetExpiry,
    /// A key was disabled.
    Disable,
    /// A key was enabled.
    Enable,
    /// A key was revoked.
    Revoke,
    /// A key was rotated; the entry's key is the old one.
    Rotate,
    /// A key was deleted.
    Delete,
}

impl AuditAction {
    pub(crate) const ALL: [AuditAction; 10] = [
        AuditAction::Create,
        AuditAction::Rename,
        AuditAction::SetScopes,
        AuditAction::SetMetadata,
        AuditAction::SetExpiry,
        AuditAction::Disable,
        AuditAction::Enable,
        AuditAction::Revoke,
        AuditAction::Rotate,
        AuditAction::Delete,
    ];

    /// The snake_case name: `create`, `rename`, `set_scopes`, `set_metadata`, `set_expiry`,
    /// `disable`, `enable`, `revoke`, `rotate`, `delete`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Rename => "rename",
            AuditAction::SetScopes => "set_scopes",
            AuditAction::SetMetadata => "set_metadata",
            AuditAction::SetExpiry => "set_expiry",
            AuditAction::Disable => "disable",
            AuditAction::Enable => "enable",
            AuditAction::Revoke => "revoke",
            AuditAction::Rotate => "rotate",
            AuditAction::Delete => "delete",
        }
    }

    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, increasing.
    pub seq: u64,
    /// When the change was committed.
    pub at: SystemTime,
    /// Who made it, as given in [`Options::actor`](crate::Options::actor).
    pub actor: Option<String>,
    /// What was done.
    pub action: AuditAction,
    /// The key concerned.
    pub key_id: KeyId,
    /// A short description, e.g. the new name or the replacing key's id. Never key material.
    pub detail: String,
}

// ---- validation shared by create and the setters ----

/// Whether `c` is invisible or changes the direction of the text around it: a Unicode
/// default-ignorable code point (zero-width characters, the soft hyphen, word joiners,
/// variation selectors, tags, fillers, ...) or a bidirectional control (LRM, RLM, ALM, the
/// embeddings, overrides and isolates). Such characters make one string display as another,
/// so names refuse them, and the CLI escapes them when it prints text from a store.
///
/// The ranges are Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties.txt)
/// plus the `Bidi_Control` ones, which it already contains.
pub fn is_invisible_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The bidirectional controls: LRM, RLM, ALM, the embeddings and overrides
/// (U+202A–U+202E) and the isolates (U+2066–U+2069).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `c` may not appear in a name or an actor: a C0/C1 control, or an invisible or
/// direction-changing character ([`is_invisible_char`]).
fn is_refused_in_label(c: char) -> bool {
    c.is_control() || is_invisible_char(c)
}

/// Whether `text` contains something shaped like a full key: `_` followed by at least the 61
/// characters of `[0-9A-Za-z]` of a key's body (the pattern a secret scanner looks for,
/// docs/key-format.md). A name or a metadata entry holding a key would show its secret in
/// every listing.
pub(crate) fn contains_key_like(text: &str) -> bool {
    crate::key::key_like_spans(text).next().is_some()
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return Err(Error::invalid("a key name must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(Error::invalid(format!(
            "a key name is at most {MAX_NAME_CHARS} characters, got {chars}"
        )));
    }
    if name.chars().any(is_refused_in_label) {
        return Err(Error::invalid(
            "a key name must not contain control characters, or invisible or \
             direction-changing characters (zero-width, bidirectional controls, ...)",
        ));
    }
    if contains_key_like(name) {
        return Err(Error::invalid(
            "a key name must not contain an API key (it holds `_` and 61 characters of \
             [0-9A-Za-z], the shape of a key's body)",
        ));
    }
    Ok(())
}

/// Longest actor, in characters.
pub const MAX_ACTOR_CHARS: usize = 128;

/// An actor ([`Options::actor`](crate::Options::actor)) follows the rules of names: not
/// empty, at most [`MAX_ACTOR_CHARS`] characters, no control, invisible or
/// direction-changing characters, no key.
pub(crate) fn validate_actor(actor: &str) -> Result<()> {
    let chars = actor.chars().count();
    if actor.trim().is_empty() {
        return Err(Error::invalid("an actor must not be empty"));
    }
    if chars > MAX_ACTOR_CHARS {
        return Err(Error::invalid(format!(
            "an actor is at most {MAX_ACTOR_CHARS} characters, got {chars}"
        )));
    }
    if actor.chars().any(is_refused_in_label) {
        return Err(Error::invalid(
            "an actor must not contain control characters, or invisible or \
             direction-changing characters (zero-width, bidirectional controls, ...)",
        ));
    }
    if contains_key_like(actor) {
        return Err(Error::invalid("an actor must not contain an API key"));
    }
    Ok(())
}

/// Whether a scope is 1 to 64 characters of `[A-Za-z0-9:._/-]`.
pub(crate) fn is_valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_LEN
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":._/-".contains(&b))
}

/// Checks scopes and returns them sorted without duplicates.
pub(crate) fn normalize_scopes(scopes: &[String]) -> Result<Vec<String>> {
    for scope in scopes {
        if !is_valid_scope(scope) || contains_key_like(scope) {
            return Err(Error::invalid(format!(
                "scope `{}` is not 1 to {MAX_SCOPE_LEN} characters of [A-Za-z0-9:._/-]",
                truncate_for_message(scope)
            )));
        }
    }
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() > MAX_SCOPES {
        return Err(Error::invalid(format!(
            "a key has at most {MAX_SCOPES} scopes, got {}",
            sorted.len()
        )));
    }
    Ok(sorted)
}

pub(crate) fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(Error::invalid(format!(
            "a key has at most {MAX_METADATA_ENTRIES} metadata entries, got {}",
            metadata.len()
        )));
    }
    let mut total = 0;
    for (k, v) in metadata {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_METADATA_KEY_LEN
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !key_ok {
            return Err(Error::invalid(format!(
                "metadata key `{}` is not 1 to {MAX_METADATA_KEY_LEN} characters of [A-Za-z0-9_.-]",
                truncate_for_message(k)
            )));
        }
        // Checked first: the messages below name the key.
        if contains_key_like(k) || contains_key_like(v) {
            return Err(Error::invalid(format!(
                "metadata `{}` must not contain an API key (`_` and 61 characters of \
                 [0-9A-Za-z], the shape of a key's body)",
                truncate_for_message(k)
            )));
        }
        if v.len() > MAX_METADATA_VALUE_LEN {
            return Err(Error::invalid(format!(
                "metadata value of `{k}` must be at most {MAX_METADATA_VALUE_LEN} bytes, got {} bytes",
                v.len()
            )));
        }
        if v.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return Err(Error::invalid(format!(
                "metadata value of `{k}` must not contain control characters (C0, C1) or \
                 bidirectional controls"
            )));
        }
        total += k.len() + v.len();
    }
    if total > MAX_METADATA_TOTAL {
        return Err(Error::invalid(format!(
            "metadata is at most {MAX_METADATA_TOTAL} bytes in all, got {total}"
        )));
    }
    Ok(())
}

/// How much of a rejected value an error message may echo: enough to recognise it, but less
/// than `<prefix>_<id>` of a key, so a key pasted into the wrong field never leaks its secret.
const ECHO_CHARS: usize = 12;

/// Keeps error messages short and printable whatever the caller passed.
pub(crate) fn truncate_for_message(text: &str) -> String {
    let short: String = text.chars().take(ECHO_CHARS).collect();
    let mut shown = short.escape_debug().to_string();
    if text.chars().count() > ECHO_CHARS {
        shown.push('…');
    }
    shown
}
