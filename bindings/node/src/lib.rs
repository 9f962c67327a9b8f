//! Node.js binding of keystead: a thin napi-rs wrapper over the core crate.
//!
//! Every rule (validation, hashing, verification, storage) lives in `keystead`; this crate only
//! converts between JavaScript values and core types, and maps [`keystead::Error`] to JS errors
//! with a stable `code` in one place ([`error_code`] / [`to_js_error`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use keystead::{KeyId, KeyStatus, ListFilter, NewKey, Options};
use napi::bindgen_prelude::{AsyncTask, Buffer, Either};
use napi::{Env, JsError, Task};
use napi_derive::napi;

/// The error type of every method: a napi error whose status is the stable `code` string.
type Result<T> = std::result::Result<T, napi::Error<&'static str>>;

/// The stable `code` of the JS error thrown for a core error.
fn error_code(err: &keystead::Error) -> &'static str {
    use keystead::Error as E;
    match err {
        E::InvalidArgument(_) => "KEYSTEAD_INVALID_ARGUMENT",
        E::KeyNotFound(_) => "KEYSTEAD_KEY_NOT_FOUND",
        E::InvalidState { .. } => "KEYSTEAD_INVALID_STATE",
        E::WrongPepper => "KEYSTEAD_WRONG_PEPPER",
        E::PrefixMismatch { .. } => "KEYSTEAD_PREFIX_MISMATCH",
        E::UnsupportedVersion { .. } => "KEYSTEAD_UNSUPPORTED_VERSION",
        // Corrupt, Locked, Storage, Io and any variant added later: the file or engine failed
        // (the message says which).
        _ => "KEYSTEAD_STORE_ERROR",
    }
}

/// The one mapping from core errors to JS errors. Core messages never contain key material.
fn to_js_error(err: keystead::Error) -> napi::Error<&'static str> {
    napi::Error::new(error_code(&err), err.to_string())
}

const CLOSED: &str = "KEYSTEAD_CLOSED";
const INVALID: &str = "KEYSTEAD_INVALID_ARGUMENT";

fn invalid(message: impl Into<String>) -> napi::Error<&'static str> {
    napi::Error::new(INVALID, message.into())
}

fn core<T>(result: keystead::Result<T>) -> Result<T> {
    result.map_err(to_js_error)
}

fn key_id(text: &str) -> Result<KeyId> {
    core(text.parse::<KeyId>())
}

fn millis(name: &str, value: i64) -> Result<Duration> {
    u64::try_from(value)
        .map(Duration::from_millis)
        .map_err(|_| {
            invalid(format!(
                "{name} must be a non-negative number of milliseconds"
            ))
        })
}

fn to_date(time: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(time)
}

fn from_date(date: DateTime<Utc>) -> SystemTime {
    SystemTime::from(date)
}

// ---- JS-facing objects ----
//
// Optional input fields are `Option<Option<T>>`: napi-rs reads a missing or `undefined`
// property as the outer `None` and `null` as the inner one, so both mean "not given" (a plain
// `Option<T>` field rejects `null`, e.g. `expiresAt: null`).

/// Options of `KeyStore.open`.
#[napi(object, object_to_js = false)]
pub struct OpenOptions {
    /// The key prefix: used when creating the store, checked against an existing one.
    pub prefix: Option<Option<String>>,
    /// A secret mixed into every hash (1 to 1024 bytes); must match the one the store was
    /// created with.
    pub pepper: Option<Option<Either<String, Buffer>>>,
    /// The storage engine's page cache, in bytes (default 32 MiB).
    pub cache_size: Option<Option<i64>>,
    /// How late changes made by other processes may be seen by verify (default 1000 ms).
    pub refresh_interval_ms: Option<Option<i64>>,
    /// How often counted usage is written in the background (default 1000 ms; 0: only on
    /// flush/close).
    pub flush_interval_ms: Option<Option<i64>>,
    /// Recorded as the actor of every audit entry made through this handle.
    pub actor: Option<Option<String>>,
}

/// What to create.
#[napi(object, object_to_js = false)]
pub struct NewKeyOptions {
    pub name: String,
    pub scopes: Option<Option<Vec<String>>>,
    pub metadata: Option<Option<HashMap<String, String>>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Which keys `list` returns.
#[napi(object, object_to_js = false)]
pub struct ListOptions {
    #[napi(ts_type = "'active' | 'disabled' | 'revoked' | 'expired' | null")]
    pub status: Option<Option<String>>,
    pub scope: Option<Option<String>>,
    pub name_prefix: Option<Option<String>>,
    /// Only keys that have not expired yet but will within this many milliseconds.
    pub expiring_within_ms: Option<Option<i64>>,
    /// Paging: only keys with an id after this one.
    pub after: Option<Option<String>>,
    pub limit: Option<Option<u32>>,
}

#[napi(object, object_to_js = false)]
pub struct VerifyOptions {
    /// Scopes the key must grant.
    pub scopes: Option<Option<Vec<String>>>,
}

#[napi(object, object_to_js = false)]
pub struct RotateOptions {
    /// How long the old key keeps verifying (default 0: it stops at once).
    pub grace_ms: Option<Option<i64>>,
}

#[napi(object, object_to_js = false)]
pub struct AuditOptions {
    /// Only entries committed at or after this time.
    pub since: Option<Option<DateTime<Utc>>>,
    /// At most this many entries, newest first (default 100).
    pub limit: Option<Option<u32>>,
}

/// Everything about a key except its secret.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub metadata: HashMap<String, String>,
    /// Evaluated now.
    #[napi(ts_type = "'active' | 'disabled' | 'revoked' | 'expired'")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub use_count: i64,
    /// The id of the key this one replaced by rotation.
    pub replaces: Option<String>,
    /// The id of the key that replaced this one by rotation.
    pub replaced_by: Option<String>,
}

impl From<&keystead::KeyInfo> for KeyInfo {
    fn from(info: &keystead::KeyInfo) -> Self {
        KeyInfo {
            id: info.id().to_string(),
            name: info.name().to_owned(),
            scopes: info.scopes().to_vec(),
            metadata: info
                .metadata()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            status: info.status().as_str().to_owned(),
            created_at: to_date(info.created_at()),
            updated_at: to_date(info.updated_at()),
            expires_at: info.expires_at().map(to_date),
            last_used_at: info.last_used_at().map(to_date),
            use_count: i64::try_from(info.use_count()).unwrap_or(i64::MAX),
            replaces: info.replaces().map(|id| id.to_string()),
            replaced_by: info.replaced_by().map(|id| id.to_string()),
        }
    }
}

/// A new key: `key` is the only copy of the plaintext; show it once.
#[napi(object, object_from_js = false)]
pub struct CreatedKey {
    pub key: String,
    pub info: KeyInfo,
}

impl From<keystead::CreatedKey> for CreatedKey {
    fn from(created: keystead::CreatedKey) -> Self {
        CreatedKey {
            key: created.key().to_owned(),
            info: KeyInfo::from(created.info()),
        }
    }
}

/// The result of `verify` / `verifyHeader`.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct Verification {
    /// Whether the credential is accepted.
    pub ok: bool,
    /// The outcome, the same string in every keystead binding.
    #[napi(
        ts_type = "'valid' | 'missing' | 'malformed' | 'not_found' | 'disabled' | 'revoked' | 'expired' | 'insufficient_scope'"
    )]
    pub code: String,
    /// The key, when its secret matched.
    pub key: Option<KeyInfo>,
    /// 200, 400, 401 or 403.
    pub http_status: u32,
    /// The `WWW-Authenticate` value to answer with, or null for a valid key.
    pub www_authenticate: Option<String>,
}

impl From<keystead::Verification> for Verification {
    fn from(check: keystead::Verification) -> Self {
        Verification {
            ok: check.is_valid(),
            code: check.code().to_owned(),
            key: check.key().map(KeyInfo::from),
            http_status: u32::from(check.http_status()),
            www_authenticate: check.www_authenticate(),
        }
    }
}

/// Successful verifications of a key on one UTC day.
#[napi(object, object_from_js = false)]
pub struct DailyUsage {
    /// Midnight UTC at the start of the day.
    pub day: DateTime<Utc>,
    pub count: i64,
}

/// One entry of the audit log.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: Option<String>,
    #[napi(
        ts_type = "'create' | 'rename' | 'set_scopes' | 'set_metadata' | 'set_expiry' | 'disable' | 'enable' | 'revoke' | 'rotate' | 'delete'"
    )]
    pub action: String,
    pub key_id: String,
    pub detail: String,
}

impl From<keystead::AuditEntry> for AuditEntry {
    fn from(entry: keystead::AuditEntry) -> Self {
        AuditEntry {
            seq: i64::try_from(entry.seq).unwrap_or(i64::MAX),
            at: to_date(entry.at),
            actor: entry.actor,
            action: entry.action.as_str().to_owned(),
            key_id: entry.key_id.to_string(),
            detail: entry.detail,
        }
    }
}

fn open_options(options: Option<OpenOptions>) -> Result<Options> {
    let mut out = Options::new();
    let Some(o) = options else { return Ok(out) };
    if let Some(prefix) = o.prefix.flatten() {
        out = out.prefix(prefix);
    }
    match o.pepper.flatten() {
        Some(Either::A(text)) => out = out.pepper(text.into_bytes()),
        Some(Either::B(bytes)) => out = out.pepper(bytes.to_vec()),
        None => {}
    }
    if let Some(size) = o.cache_size.flatten() {
        let size = usize::try_from(size)
            .map_err(|_| invalid("cacheSize must be a non-negative number of bytes"))?;
        out = out.cache_size(size);
    }
    if let Some(ms) = o.refresh_interval_ms.flatten() {
        out = out.refresh_interval(millis("refreshIntervalMs", ms)?);
    }
    if let Some(ms) = o.flush_interval_ms.flatten() {
        out = out.flush_interval(millis("flushIntervalMs", ms)?);
    }
    if let Some(actor) = o.actor.flatten() {
        out = out.actor(actor);
    }
    Ok(out)
}

fn new_key(options: NewKeyOptions) -> NewKey {
    let mut new = NewKey::new(options.name);
    if let Some(scopes) = options.scopes.flatten() {
        new = new.scopes(scopes);
    }
    if let Some(metadata) = options.metadata.flatten() {
        new = new.metadata(metadata);
    }
    if let Some(at) = options.expires_at.flatten() {
        new = new.expires_at(from_date(at));
    }
    new
}

fn list_filter(options: Option<ListOptions>) -> Result<ListFilter> {
    let mut filter = ListFilter::new();
    let Some(o) = options else { return Ok(filter) };
    if let Some(status) = o.status.flatten() {
        // Not core's message: it echoes the whole input, which could be a pasted key.
        let status = KeyStatus::parse(&status).map_err(|_| {
            invalid("unknown status (expected active, disabled, revoked or expired)")
        })?;
        filter = filter.status(status);
    }
    if let Some(scope) = o.scope.flatten() {
        filter = filter.scope(scope);
    }
    if let Some(prefix) = o.name_prefix.flatten() {
        filter = filter.name_prefix(prefix);
    }
    if let Some(ms) = o.expiring_within_ms.flatten() {
        filter = filter.expiring_within(millis("expiringWithinMs", ms)?);
    }
    if let Some(after) = o.after.flatten() {
        filter = filter.after(key_id(&after)?);
    }
    if let Some(limit) = o.limit.flatten() {
        filter = filter.limit(limit as usize);
    }
    Ok(filter)
}

fn scopes_of(options: Option<VerifyOptions>) -> Vec<String> {
    options.and_then(|o| o.scopes.flatten()).unwrap_or_default()
}

fn as_strs(scopes: &[String]) -> Vec<&str> {
    scopes.iter().map(String::as_str).collect()
}

// ---- the store ----

type Core = keystead::KeyStore;

/// A store of API keys in one embedded file, shared safely by several processes.
#[napi]
pub struct KeyStore {
    /// `None` once closed. Async tasks hold their own `Arc` until they finish. Behind a lock
    /// (uncontended: only the JS thread takes it) because `close` must work while a Promise
    /// method is pending, and napi-rs keeps `&self` borrowed until such a Promise settles.
    inner: RwLock<Option<Arc<Core>>>,
}

#[napi]
impl KeyStore {
    /// Opens the store at `path`, creating it (mode 0600) if it does not exist.
    #[napi(factory)]
    pub fn open(path: String, options: Option<OpenOptions>) -> Result<Self> {
        let store = core(Core::open(path, open_options(options)?))?;
        Ok(KeyStore {
            inner: RwLock::new(Some(Arc::new(store))),
        })
    }

    fn store(&self) -> Result<Arc<Core>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .as_ref()
            .map(Arc::clone)
            .ok_or_else(|| napi::Error::new(CLOSED, "the key store is closed".to_owned()))
    }

    /// The prefix of every key this store issues, e.g. `ks`.
    #[napi(getter)]
    pub fn prefix(&self) -> Result<String> {
        Ok(self.store()?.prefix().to_owned())
    }

    /// Whether `close()` has been called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.store().is_err()
    }

    /// Creates a key; the plaintext is in the result only.
    #[napi]
    pub fn create(&self, options: NewKeyOptions) -> Result<CreatedKey> {
        core(self.store()?.create(new_key(options))).map(CreatedKey::from)
    }

    /// `create` off the event loop.
    #[napi(ts_return_type = "Promise<CreatedKey>")]
    pub fn create_async(&self, options: NewKeyOptions) -> Result<AsyncTask<KeyJob>> {
        Ok(AsyncTask::new(KeyJob {
            store: self.store()?,
            op: Some(KeyOp::Create(new_key(options))),
        }))
    }

    /// The key with this id, or null.
    #[napi]
    pub fn get(&self, id: String) -> Result<Option<KeyInfo>> {
        let found = core(self.store()?.get(key_id(&id)?))?;
        Ok(found.as_ref().map(KeyInfo::from))
    }

    /// Keys matching the filter, in id order.
    #[napi]
    pub fn list(&self, filter: Option<ListOptions>) -> Result<Vec<KeyInfo>> {
        let keys = core(self.store()?.list(&list_filter(filter)?))?;
        Ok(keys.iter().map(KeyInfo::from).collect())
    }

    #[napi]
    pub fn rename(&self, id: String, name: String) -> Result<KeyInfo> {
        let info = core(self.store()?.rename(key_id(&id)?, &name))?;
        Ok(KeyInfo::from(&info))
    }

    /// Replaces the key's metadata.
    #[napi]
    pub fn set_metadata(&self, id: String, metadata: HashMap<String, String>) -> Result<KeyInfo> {
        let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
        let info = core(self.store()?.set_metadata(key_id(&id)?, metadata))?;
        Ok(KeyInfo::from(&info))
    }

    /// Replaces the key's scopes.
    #[napi]
    pub fn set_scopes(&self, id: String, scopes: Vec<String>) -> Result<KeyInfo> {
        let info = core(self.store()?.set_scopes(key_id(&id)?, &scopes))?;
        Ok(KeyInfo::from(&info))
    }

    /// Sets (a future Date) or clears (null) the key's expiry.
    #[napi]
    pub fn set_expiry(&self, id: String, expires_at: Option<DateTime<Utc>>) -> Result<KeyInfo> {
        let at = expires_at.map(from_date);
        let info = core(self.store()?.set_expiry(key_id(&id)?, at))?;
        Ok(KeyInfo::from(&info))
    }

    #[napi]
    pub fn disable(&self, id: String) -> Result<KeyInfo> {
        let info = core(self.store()?.disable(key_id(&id)?))?;
        Ok(KeyInfo::from(&info))
    }

    #[napi]
    pub fn enable(&self, id: String) -> Result<KeyInfo> {
        let info = core(self.store()?.enable(key_id(&id)?))?;
        Ok(KeyInfo::from(&info))
    }

    /// Permanently stops the key from verifying.
    #[napi]
    pub fn revoke(&self, id: String) -> Result<KeyInfo> {
        let info = core(self.store()?.revoke(key_id(&id)?))?;
        Ok(KeyInfo::from(&info))
    }

    /// `revoke` off the event loop.
    #[napi(ts_return_type = "Promise<KeyInfo>")]
    pub fn revoke_async(&self, id: String) -> Result<AsyncTask<InfoJob>> {
        Ok(AsyncTask::new(InfoJob {
            store: self.store()?,
            op: InfoOp::Revoke(key_id(&id)?),
        }))
    }

    /// Issues a replacement key; the old one keeps verifying for `graceMs` (default 0).
    #[napi]
    pub fn rotate(&self, id: String, options: Option<RotateOptions>) -> Result<CreatedKey> {
        let grace = grace_of(options)?;
        core(self.store()?.rotate(key_id(&id)?, grace)).map(CreatedKey::from)
    }

    /// `rotate` off the event loop.
    #[napi(ts_return_type = "Promise<CreatedKey>")]
    pub fn rotate_async(
        &self,
        id: String,
        options: Option<RotateOptions>,
    ) -> Result<AsyncTask<KeyJob>> {
        Ok(AsyncTask::new(KeyJob {
            store: self.store()?,
            op: Some(KeyOp::Rotate(key_id(&id)?, grace_of(options)?)),
        }))
    }

    /// Removes the key and its usage counters (its audit entries stay).
    #[napi]
    pub fn delete(&self, id: String) -> Result<()> {
        core(self.store()?.delete(key_id(&id)?))
    }

    /// Verifies a bare key (e.g. from an `x-api-key` header; null/undefined is `missing`).
    /// Synchronous and read-only: a valid use is counted in memory and flushed later.
    #[napi]
    pub fn verify(
        &self,
        key: Option<String>,
        options: Option<VerifyOptions>,
    ) -> Result<Verification> {
        let key = key.unwrap_or_default();
        let scopes = scopes_of(options);
        let check = core(self.store()?.verify(&key, &as_strs(&scopes)))?;
        Ok(Verification::from(check))
    }

    /// Verifies an `Authorization` header value (`Bearer <key>`); null/undefined is missing.
    #[napi]
    pub fn verify_header(
        &self,
        value: Option<String>,
        options: Option<VerifyOptions>,
    ) -> Result<Verification> {
        let value = value.unwrap_or_default();
        let scopes = scopes_of(options);
        let check = core(self.store()?.verify_header(&value, &as_strs(&scopes)))?;
        Ok(Verification::from(check))
    }

    /// Daily successful verifications for the UTC days from `from` to `to` inclusive.
    #[napi]
    pub fn usage(
        &self,
        id: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DailyUsage>> {
        let days = core(
            self.store()?
                .usage(key_id(&id)?, from_date(from), from_date(to)),
        )?;
        Ok(days
            .into_iter()
            .map(|d| DailyUsage {
                day: to_date(d.day),
                count: i64::try_from(d.count).unwrap_or(i64::MAX),
            })
            .collect())
    }

    /// The audit log, newest first.
    #[napi]
    pub fn audit(&self, options: Option<AuditOptions>) -> Result<Vec<AuditEntry>> {
        let (since, limit) = match options {
            Some(o) => (
                o.since.flatten().map(from_date),
                o.limit.flatten().unwrap_or(100),
            ),
            None => (None, 100),
        };
        let entries = core(self.store()?.audit(since, limit as usize))?;
        Ok(entries.into_iter().map(AuditEntry::from).collect())
    }

    /// Writes the usage counted so far to the store.
    #[napi]
    pub fn flush(&self) -> Result<()> {
        core(self.store()?.flush())
    }

    /// `flush` off the event loop.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush_async(&self) -> Result<AsyncTask<UnitJob>> {
        Ok(AsyncTask::new(UnitJob {
            store: self.store()?,
        }))
    }

    /// Flushes usage and closes the store; every later call throws `KEYSTEAD_CLOSED`.
    /// Closing a closed store does nothing.
    #[napi]
    pub fn close(&self) -> Result<()> {
        let taken = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        let Some(store) = taken else {
            return Ok(());
        };
        match Arc::try_unwrap(store) {
            Ok(store) => core(store.close()),
            // An async task still holds the store: flush now; the task's drop closes it.
            Err(shared) => core(shared.flush()),
        }
    }
}

fn grace_of(options: Option<RotateOptions>) -> Result<Duration> {
    millis(
        "graceMs",
        options.and_then(|o| o.grace_ms.flatten()).unwrap_or(0),
    )
}

// ---- work off the event loop ----

/// Turns a core result into the task's JS value, or a rejection with the same error (and
/// `code`) as the synchronous method would throw.
fn settle<T, U>(
    env: Env,
    result: keystead::Result<T>,
    convert: impl FnOnce(T) -> U,
) -> napi::Result<U> {
    result
        .map(convert)
        .map_err(|err| napi::Error::from(JsError::from(to_js_error(err)).into_unknown(env)))
}

enum KeyOp {
    Create(NewKey),
    Rotate(KeyId, Duration),
}

/// `createAsync` / `rotateAsync`.
pub struct KeyJob {
    store: Arc<Core>,
    op: Option<KeyOp>,
}

#[napi]
impl Task for KeyJob {
    type Output = keystead::Result<keystead::CreatedKey>;
    type JsValue = CreatedKey;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match self.op.take() {
            Some(KeyOp::Create(new)) => self.store.create(new),
            Some(KeyOp::Rotate(id, grace)) => self.store.rotate(id, grace),
            None => Err(keystead::Error::InvalidArgument(
                "the task already ran".into(),
            )),
        })
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        settle(env, output, CreatedKey::from)
    }
}

enum InfoOp {
    Revoke(KeyId),
}

/// `revokeAsync`.
pub struct InfoJob {
    store: Arc<Core>,
    op: InfoOp,
}

#[napi]
impl Task for InfoJob {
    type Output = keystead::Result<keystead::KeyInfo>;
    type JsValue = KeyInfo;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match self.op {
            InfoOp::Revoke(id) => self.store.revoke(id),
        })
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        settle(env, output, |info| KeyInfo::from(&info))
    }
}

/// `flushAsync`.
pub struct UnitJob {
    store: Arc<Core>,
}

#[napi]
impl Task for UnitJob {
    type Output = keystead::Result<()>;
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(self.store.flush())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        settle(env, output, |()| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_has_a_stable_code() {
        let id: KeyId = "000000000001".parse().unwrap();
        let cases = [
            (
                keystead::Error::InvalidArgument("x".into()),
                "KEYSTEAD_INVALID_ARGUMENT",
            ),
            (keystead::Error::KeyNotFound(id), "KEYSTEAD_KEY_NOT_FOUND"),
            (keystead::Error::WrongPepper, "KEYSTEAD_WRONG_PEPPER"),
            (keystead::Error::Corrupt("x".into()), "KEYSTEAD_STORE_ERROR"),
            (keystead::Error::Locked("x".into()), "KEYSTEAD_STORE_ERROR"),
            (keystead::Error::Storage("x".into()), "KEYSTEAD_STORE_ERROR"),
            (
                keystead::Error::Io(std::io::Error::other("x")),
                "KEYSTEAD_STORE_ERROR",
            ),
        ];
        for (err, code) in cases {
            assert_eq!(error_code(&err), code);
            assert_eq!(to_js_error(err).status, code);
        }
    }

    #[test]
    fn negative_durations_are_invalid_arguments() {
        assert_eq!(millis("graceMs", -1).unwrap_err().status, INVALID);
        assert_eq!(
            millis("graceMs", 1500).unwrap(),
            Duration::from_millis(1500)
        );
    }
}
