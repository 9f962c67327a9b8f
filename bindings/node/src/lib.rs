//! Node.js binding of keystead: a thin napi-rs wrapper over the core crate.
//!
//! Every rule (validation, hashing, verification, storage) lives in `keystead`; this crate only
//! converts between JavaScript values and core types, and maps [`keystead::Error`] to JS errors
//! with a stable `code` in one place ([`error_code`] / [`to_js_error`]).
//!
//! `verify` / `verifyHeader` are the hot path: at load, [`install_fast_verify`] replaces the
//! napi-rs methods with the JavaScript ones of `src/fast_verify.js`, which call plain Node-API
//! functions ([`verify_key_raw`], [`verify_header_raw`]) and decode the key lazily.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use keystead::{
    ErrorKind, KeyId, KeyStatus, ListFilter, NewKey, Options, Outcome, Zeroizing,
    DEFAULT_AUDIT_LIMIT,
};
use napi::bindgen_prelude::{
    AsyncTask, Buffer, Either, FromNapiValue, Object, ToNapiValue, TypeName, TypeTag, ValueType,
};
use napi::{sys, Env, JsError, JsValue, Task};
use napi_derive::napi;

/// The error type of every method: a napi error whose status is the stable `code` string.
type Result<T> = std::result::Result<T, napi::Error<&'static str>>;

/// The stable `code` of the JS error thrown for a core error: the code of its kind
/// ([`ErrorKind::code`]), so this binding's table is core's (README's "Errors" lists each one).
fn error_code(err: &keystead::Error) -> &'static str {
    err.kind().code()
}

/// The one mapping from core errors to JS errors. Core messages never contain key material.
fn to_js_error(err: keystead::Error) -> napi::Error<&'static str> {
    napi::Error::new(error_code(&err), err.to_string())
}

const INVALID: &str = ErrorKind::InvalidArgument.code();
const STORE: &str = ErrorKind::Store.code();

fn closed() -> napi::Error<&'static str> {
    to_js_error(keystead::Error::Closed)
}

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

/// A `SystemTime` from the store as a `Date`, or an error for one outside the range chrono
/// (hence a JS `Date`) can hold. `DateTime::from(SystemTime)` panics there: a store written
/// before the core refused times after 9999 may hold an expiry in the year 549608.
fn to_date(time: SystemTime) -> Result<DateTime<Utc>> {
    let ms = millis_f64(time);
    // Whole milliseconds well inside i64 whenever chrono can represent them.
    (ms.abs() < 9.0e15)
        .then(|| DateTime::from_timestamp_millis(ms as i64))
        .flatten()
        .ok_or_else(|| {
            napi::Error::new(
                STORE,
                "a time in the store is outside the range of a JavaScript Date (written by an \
                 older keystead; give the key a nearer expiry)"
                    .to_owned(),
            )
        })
}

fn opt_date(time: Option<SystemTime>) -> Result<Option<DateTime<Utc>>> {
    time.map(to_date).transpose()
}

/// A JavaScript `Date` as given (milliseconds since the epoch, NaN for an invalid Date).
/// napi-rs's own `DateTime` conversion turns an invalid Date into 1970-01-01 without a word;
/// this keeps the value so that [`JsDate::time`] can refuse it. (napi-rs names the
/// TypeScript type of a type called `JsDate` `Date`.)
pub struct JsDate(f64);

impl napi::bindgen_prelude::TypeName for JsDate {
    fn type_name() -> &'static str {
        "Date"
    }
    fn value_type() -> napi::ValueType {
        napi::ValueType::Object
    }
}

impl napi::bindgen_prelude::ValidateNapiValue for JsDate {}

impl FromNapiValue for JsDate {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut is_date = false;
        // SAFETY: napi-rs passes a live handle of the current call and its env.
        check(
            unsafe { sys::napi_is_date(env, value, &mut is_date) },
            "napi_is_date",
        )?;
        if !is_date {
            return Err(napi::Error::new(
                napi::Status::DateExpected,
                "expected a Date".to_owned(),
            ));
        }
        let mut ms = 0.0;
        // SAFETY: as above; `value` is a Date.
        check(
            unsafe { sys::napi_get_date_value(env, value, &mut ms) },
            "napi_get_date_value",
        )?;
        Ok(JsDate(ms))
    }
}

impl JsDate {
    /// The time, or `KEYSTEAD_INVALID_ARGUMENT` for an invalid Date (`new Date(NaN)`).
    /// `name` names the argument in the message. The core refuses times after 9999.
    fn time(&self, name: &str) -> Result<SystemTime> {
        let ms = self.0;
        if !ms.is_finite() {
            return Err(invalid(format!("{name} is an invalid Date")));
        }
        // A valid Date is a whole number of milliseconds within ±8.64e15.
        let offset = Duration::from_millis(ms.abs() as u64);
        let time = if ms >= 0.0 {
            SystemTime::UNIX_EPOCH.checked_add(offset)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(offset)
        };
        time.ok_or_else(|| invalid(format!("{name} is out of range")))
    }
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
    /// A secret mixed into every hash: 32 to 1024 random bytes (a string is used as its UTF-8
    /// bytes, not decoded); must match the one the store was created with.
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
    pub expires_at: Option<Option<JsDate>>,
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
    pub since: Option<Option<JsDate>>,
    /// At most this many entries, newest first (default 100, core's `DEFAULT_AUDIT_LIMIT`).
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

impl TryFrom<&keystead::KeyInfo> for KeyInfo {
    type Error = napi::Error<&'static str>;

    fn try_from(info: &keystead::KeyInfo) -> Result<Self> {
        Ok(KeyInfo {
            id: info.id().to_string(),
            name: info.name().to_owned(),
            scopes: info.scopes().to_vec(),
            metadata: info
                .metadata()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            status: info.status().as_str().to_owned(),
            created_at: to_date(info.created_at())?,
            updated_at: to_date(info.updated_at())?,
            expires_at: opt_date(info.expires_at())?,
            last_used_at: opt_date(info.last_used_at())?,
            use_count: i64::try_from(info.use_count()).unwrap_or(i64::MAX),
            replaces: info.replaces().map(|id| id.to_string()),
            replaced_by: info.replaced_by().map(|id| id.to_string()),
        })
    }
}

fn info(info: &keystead::KeyInfo) -> Result<KeyInfo> {
    KeyInfo::try_from(info)
}

/// A new key: `key` is the only copy of the plaintext; show it once. `key` is not
/// enumerable, and `util.inspect` / `console.log` / `JSON.stringify` show `[redacted]`.
#[napi(object, object_from_js = false)]
pub struct CreatedKey {
    #[napi(ts_type = "string")]
    pub key: SecretText,
    pub info: KeyInfo,
}

impl TryFrom<keystead::CreatedKey> for CreatedKey {
    type Error = napi::Error<&'static str>;

    fn try_from(created: keystead::CreatedKey) -> Result<Self> {
        let (key, key_info) = created.into_parts();
        Ok(CreatedKey {
            key: SecretText(key),
            info: info(&key_info)?,
        })
    }
}

/// The plaintext of a new key on its way to JavaScript: the core's `Zeroizing` copy itself,
/// turned into a JavaScript string without another Rust copy, and wiped when it drops. (The
/// JavaScript string is the runtime's own copy, which no binding can wipe.)
pub struct SecretText(Zeroizing<String>);

impl TypeName for SecretText {
    fn type_name() -> &'static str {
        "String"
    }
    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ToNapiValue for SecretText {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        // SAFETY: forwarded as is: `env` is the env napi-rs converts in.
        unsafe { <&str as ToNapiValue>::to_napi_value(env, val.0.as_str()) }
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
    /// The key, only for a valid key (a refused key is named by `keyId` only): its fields are
    /// read-only and decoded on first access; `toJSON()` returns them as a plain object.
    #[napi(ts_type = "(Readonly<KeyInfo> & { toJSON(): KeyInfo })")]
    pub key: Option<KeyInfo>,
    /// The id of the key whose secret matched, for logs: set for `valid` and for the outcomes
    /// refused after the secret matched (`disabled`, `revoked`, `expired`,
    /// `insufficient_scope`); null for `missing`, `malformed`, `not_found`.
    pub key_id: Option<String>,
    /// 200, 400, 401 or 403.
    pub http_status: u32,
    /// The `WWW-Authenticate` value to answer with, or null for a valid key.
    pub www_authenticate: Option<String>,
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

impl TryFrom<keystead::AuditEntry> for AuditEntry {
    type Error = napi::Error<&'static str>;

    fn try_from(entry: keystead::AuditEntry) -> Result<Self> {
        Ok(AuditEntry {
            seq: i64::try_from(entry.seq).unwrap_or(i64::MAX),
            at: to_date(entry.at)?,
            actor: entry.actor,
            action: entry.action.as_str().to_owned(),
            key_id: entry.key_id.to_string(),
            detail: entry.detail,
        })
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

fn new_key(options: NewKeyOptions) -> Result<NewKey> {
    let mut new = NewKey::new(options.name);
    if let Some(scopes) = options.scopes.flatten() {
        new = new.scopes(scopes);
    }
    if let Some(metadata) = options.metadata.flatten() {
        new = new.metadata(metadata);
    }
    if let Some(at) = options.expires_at.flatten() {
        new = new.expires_at(at.time("expiresAt")?);
    }
    Ok(new)
}

fn list_filter(options: Option<ListOptions>) -> Result<ListFilter> {
    let mut filter = ListFilter::new();
    let Some(o) = options else { return Ok(filter) };
    if let Some(status) = o.status.flatten() {
        filter = filter.status(core(KeyStatus::parse(&status))?);
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
    #[napi(factory, catch_unwind)]
    pub fn open(path: String, options: Option<OpenOptions>) -> Result<Self> {
        let store = core(Core::open(path, open_options(options)?))?;
        Ok(KeyStore {
            inner: RwLock::new(Some(Arc::new(store))),
        })
    }

    fn store(&self) -> Result<Arc<Core>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.as_ref().map(Arc::clone).ok_or_else(closed)
    }

    /// The prefix of every key this store issues, e.g. `ks`.
    #[napi(getter, catch_unwind)]
    pub fn prefix(&self) -> Result<String> {
        Ok(self.store()?.prefix().to_owned())
    }

    /// Whether `close()` has been called.
    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.store().is_err()
    }

    /// Creates a key; the plaintext is in the result only.
    #[napi(catch_unwind)]
    pub fn create(&self, options: NewKeyOptions) -> Result<CreatedKey> {
        core(self.store()?.create(new_key(options)?)).and_then(CreatedKey::try_from)
    }

    /// `create` off the event loop.
    #[napi(ts_return_type = "Promise<CreatedKey>", catch_unwind)]
    pub fn create_async(&self, options: NewKeyOptions) -> Result<AsyncTask<KeyJob>> {
        Ok(AsyncTask::new(KeyJob {
            store: self.store()?,
            op: Some(KeyOp::Create(new_key(options)?)),
        }))
    }

    /// Creates many keys in one transaction: all of them, or none if any is invalid. Returns
    /// them in the same order; for imports, much faster than one `create` per key.
    #[napi(catch_unwind)]
    pub fn create_many(&self, keys: Vec<NewKeyOptions>) -> Result<Vec<CreatedKey>> {
        let batch = keys.into_iter().map(new_key).collect::<Result<Vec<_>>>()?;
        let created = core(self.store()?.create_many(batch))?;
        created.into_iter().map(CreatedKey::try_from).collect()
    }

    /// The key with this id, or null.
    #[napi(catch_unwind)]
    pub fn get(&self, id: String) -> Result<Option<KeyInfo>> {
        let found = core(self.store()?.get(key_id(&id)?))?;
        found.as_ref().map(info).transpose()
    }

    /// Keys matching the filter, in id order.
    #[napi(catch_unwind)]
    pub fn list(&self, filter: Option<ListOptions>) -> Result<Vec<KeyInfo>> {
        let keys = core(self.store()?.list(&list_filter(filter)?))?;
        keys.iter().map(info).collect()
    }

    #[napi(catch_unwind)]
    pub fn rename(&self, id: String, name: String) -> Result<KeyInfo> {
        let changed = core(self.store()?.rename(key_id(&id)?, &name))?;
        info(&changed)
    }

    /// Replaces the key's metadata.
    #[napi(catch_unwind)]
    pub fn set_metadata(&self, id: String, metadata: HashMap<String, String>) -> Result<KeyInfo> {
        let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
        let changed = core(self.store()?.set_metadata(key_id(&id)?, metadata))?;
        info(&changed)
    }

    /// Replaces the key's scopes.
    #[napi(catch_unwind)]
    pub fn set_scopes(&self, id: String, scopes: Vec<String>) -> Result<KeyInfo> {
        let changed = core(self.store()?.set_scopes(key_id(&id)?, &scopes))?;
        info(&changed)
    }

    /// Sets (a future Date) or clears (null) the key's expiry.
    #[napi(catch_unwind)]
    pub fn set_expiry(&self, id: String, expires_at: Option<JsDate>) -> Result<KeyInfo> {
        let at = expires_at.map(|at| at.time("expiresAt")).transpose()?;
        let changed = core(self.store()?.set_expiry(key_id(&id)?, at))?;
        info(&changed)
    }

    #[napi(catch_unwind)]
    pub fn disable(&self, id: String) -> Result<KeyInfo> {
        let changed = core(self.store()?.disable(key_id(&id)?))?;
        info(&changed)
    }

    #[napi(catch_unwind)]
    pub fn enable(&self, id: String) -> Result<KeyInfo> {
        let changed = core(self.store()?.enable(key_id(&id)?))?;
        info(&changed)
    }

    /// Permanently stops the key from verifying.
    #[napi(catch_unwind)]
    pub fn revoke(&self, id: String) -> Result<KeyInfo> {
        let changed = core(self.store()?.revoke(key_id(&id)?))?;
        info(&changed)
    }

    /// `revoke` off the event loop.
    #[napi(ts_return_type = "Promise<KeyInfo>", catch_unwind)]
    pub fn revoke_async(&self, id: String) -> Result<AsyncTask<InfoJob>> {
        Ok(AsyncTask::new(InfoJob {
            store: self.store()?,
            op: InfoOp::Revoke(key_id(&id)?),
        }))
    }

    /// Issues a replacement key; the old one keeps verifying for `graceMs` (default 0).
    #[napi(catch_unwind)]
    pub fn rotate(&self, id: String, options: Option<RotateOptions>) -> Result<CreatedKey> {
        let grace = grace_of(options)?;
        core(self.store()?.rotate(key_id(&id)?, grace)).and_then(CreatedKey::try_from)
    }

    /// `rotate` off the event loop.
    #[napi(ts_return_type = "Promise<CreatedKey>", catch_unwind)]
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
    #[napi(catch_unwind)]
    pub fn delete(&self, id: String) -> Result<()> {
        core(self.store()?.delete(key_id(&id)?))
    }

    // `verify` and `verifyHeader` are declared here only so that napi-rs writes them (and
    // `Verification`) into index.d.ts. Their bodies never run: `install_fast_verify` is the
    // addon's `module_exports` hook, so it replaces both on the prototype with those of
    // src/fast_verify.js before any JavaScript sees the class, in every environment, and if it
    // fails the `require` fails. (test/verification.test.js checks that the prototype's
    // methods are the script's.)

    /// Verifies a bare key (e.g. from an `x-api-key` header; null/undefined is `missing`).
    /// Synchronous and read-only: a valid use is counted in memory and flushed later.
    #[napi(catch_unwind)]
    pub fn verify(
        &self,
        key: Option<String>,
        options: Option<VerifyOptions>,
    ) -> Result<Verification> {
        drop((Zeroizing::new(key), options));
        Err(replaced_method())
    }

    /// Verifies an `Authorization` header value (`Bearer <key>`); null/undefined is missing.
    #[napi(catch_unwind)]
    pub fn verify_header(
        &self,
        value: Option<String>,
        options: Option<VerifyOptions>,
    ) -> Result<Verification> {
        drop((Zeroizing::new(value), options));
        Err(replaced_method())
    }

    /// Daily successful verifications for the UTC days from `from` to `to` inclusive.
    #[napi(catch_unwind)]
    pub fn usage(&self, id: String, from: JsDate, to: JsDate) -> Result<Vec<DailyUsage>> {
        let (from, to) = (from.time("from")?, to.time("to")?);
        let days = core(self.store()?.usage(key_id(&id)?, from, to))?;
        days.into_iter()
            .map(|d| {
                Ok(DailyUsage {
                    day: to_date(d.day)?,
                    count: i64::try_from(d.count).unwrap_or(i64::MAX),
                })
            })
            .collect()
    }

    /// The audit log, newest first.
    #[napi(catch_unwind)]
    pub fn audit(&self, options: Option<AuditOptions>) -> Result<Vec<AuditEntry>> {
        let (since, limit) = match options {
            Some(o) => (
                o.since
                    .flatten()
                    .map(|since| since.time("since"))
                    .transpose()?,
                o.limit
                    .flatten()
                    .map_or(DEFAULT_AUDIT_LIMIT, |limit| limit as usize),
            ),
            None => (None, DEFAULT_AUDIT_LIMIT),
        };
        let entries = core(self.store()?.audit(since, limit))?;
        entries.into_iter().map(AuditEntry::try_from).collect()
    }

    /// Writes the usage counted so far to the store.
    #[napi(catch_unwind)]
    pub fn flush(&self) -> Result<()> {
        core(self.store()?.flush())
    }

    /// `flush` off the event loop.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn flush_async(&self) -> Result<AsyncTask<UnitJob>> {
        Ok(AsyncTask::new(UnitJob {
            store: self.store()?,
        }))
    }

    /// Flushes usage and closes the store; every later call throws `KEYSTEAD_CLOSED`.
    /// Closing a closed store does nothing.
    #[napi(catch_unwind)]
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

/// The error of a napi-rs `verify` / `verifyHeader` body, which `install_fast_verify` always
/// replaces (see there): reaching it is a bug in this binding.
fn replaced_method() -> napi::Error<&'static str> {
    napi::Error::new(
        STORE,
        "keystead: internal error: the Node binding's verify was not installed".to_owned(),
    )
}

fn grace_of(options: Option<RotateOptions>) -> Result<Duration> {
    millis(
        "graceMs",
        options.and_then(|o| o.grace_ms.flatten()).unwrap_or(0),
    )
}

// ---- the verify path ----
//
// Measured on the 2-CPU benchmark VM (Node 20): a napi-rs method taking verify's arguments
// costs about 0.75 µs more per call than a plain Node-API function reading the same ones
// (argument conversion, per-call borrow tracking); building the key's object through Node-API
// costs 2.5-3 µs, a napi-rs class instance for it 1.8 µs (a verify in core: about 0.5 µs).
// So `verify` / `verifyHeader` are JavaScript functions (src/fast_verify.js, installed over
// the napi-rs methods by `install_fast_verify`) around plain Node-API functions:
// `verify_key_raw` / `verify_header_raw` read the arguments directly (anything unusual goes
// through napi-rs's own conversions; a value of the wrong type is KEYSTEAD_INVALID_ARGUMENT,
// like one of the right type out of bounds), verify, write the numbers
// of the result into a Float64Array shared with the script and return its strings as one
// string. The script builds the result object, and a `KeyInfo` that decodes its fields on
// first access.

/// Slots of the Float64Array shared with src/fast_verify.js (the same names there).
mod slot {
    /// Index into [`super::OUTCOMES`].
    pub const CODE: usize = 0;
    pub const HTTP_STATUS: usize = 1;
    /// Index into [`super::WWW`], or -1: the payload starts with the value.
    pub const WWW_KIND: usize = 2;
    /// The value's length in UTF-16 code units, when `WWW_KIND` is -1.
    pub const WWW_LEN: usize = 3;
    /// 1: the payload holds a (valid) key after the `WWW-Authenticate` value, if any; 2: it
    /// holds only the id of a refused key (`ID_LEN` long); 0: neither.
    pub const HAS_KEY: usize = 4;
    /// Index into [`super::STATUSES`].
    pub const STATUS: usize = 5;
    /// Milliseconds since the epoch; NaN for none.
    pub const CREATED: usize = 6;
    pub const UPDATED: usize = 7;
    pub const EXPIRES: usize = 8;
    pub const LAST_USED: usize = 9;
    pub const USE_COUNT: usize = 10;
    /// Lengths of the id and the name in the payload, in UTF-16 code units.
    pub const ID_LEN: usize = 11;
    pub const NAME_LEN: usize = 12;
    pub const COUNT: usize = 13;
    /// Every slot by the name src/fast_verify.js gives it (see `super::tables_json`).
    pub const NAMES: [(&str, usize); COUNT] = [
        ("CODE", CODE),
        ("HTTP_STATUS", HTTP_STATUS),
        ("WWW_KIND", WWW_KIND),
        ("WWW_LEN", WWW_LEN),
        ("HAS_KEY", HAS_KEY),
        ("STATUS", STATUS),
        ("CREATED", CREATED),
        ("UPDATED", UPDATED),
        ("EXPIRES", EXPIRES),
        ("LAST_USED", LAST_USED),
        ("USE_COUNT", USE_COUNT),
        ("ID_LEN", ID_LEN),
        ("NAME_LEN", NAME_LEN),
    ];
}

/// The outcomes, indexed by `slot::CODE`; src/fast_verify.js gets their codes
/// (`Outcome::as_str`) from [`tables_json`].
const OUTCOMES: [Outcome; 8] = [
    Outcome::Valid,
    Outcome::Missing,
    Outcome::Malformed,
    Outcome::NotFound,
    Outcome::Disabled,
    Outcome::Revoked,
    Outcome::Expired,
    Outcome::InsufficientScope,
];
/// Key statuses, indexed by `slot::STATUS` (names from `KeyStatus::as_str`, see [`tables_json`]).
const STATUSES: [KeyStatus; 4] = [
    KeyStatus::Active,
    KeyStatus::Disabled,
    KeyStatus::Revoked,
    KeyStatus::Expired,
];
/// The constant `WWW-Authenticate` values, indexed by `slot::WWW_KIND` (handed to
/// src/fast_verify.js by [`tables_json`]); any other value travels in the payload.
const WWW: [Option<&str>; 4] = [
    None,
    Some("Bearer"),
    Some("Bearer error=\"invalid_request\""),
    Some("Bearer error=\"invalid_token\""),
];

/// The `tables` argument of src/fast_verify.js, JSON: `codes`, `statuses` and `www` (the
/// tables above, as the strings core gives) and `slots` (name to index of [`slot`]). The
/// script has no copy of its own.
fn tables_json() -> String {
    let mut json = String::from("{\"codes\":[");
    for (i, outcome) in OUTCOMES.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_json_string(&mut json, outcome.as_str());
    }
    json.push_str("],\"statuses\":[");
    for (i, status) in STATUSES.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_json_string(&mut json, status.as_str());
    }
    json.push_str("],\"www\":[");
    for (i, www) in WWW.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        match www {
            Some(value) => push_json_string(&mut json, value),
            None => json.push_str("null"),
        }
    }
    json.push_str("],\"slots\":{");
    for (i, (name, index)) in slot::NAMES.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_json_string(&mut json, name);
        let _ = write!(json, ":{index}");
    }
    json.push_str("}}");
    json
}

const FAST_VERIFY_JS: &str = include_str!("fast_verify.js");

type NativeFn = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// A JavaScript exception is pending: return to JavaScript at once.
struct Thrown;

type Js<T> = std::result::Result<T, Thrown>;

fn throw<S: AsRef<str>>(env: sys::napi_env, err: napi::Error<S>) -> Thrown {
    // SAFETY: `env` is the env of the current callback, on its thread.
    unsafe { JsError::from(err).throw_into(env) };
    Thrown
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            napi::Status::from(status),
            format!("keystead: {what} failed"),
        ))
    }
}

/// Replaces `KeyStore.prototype.verify` / `verifyHeader` with those of src/fast_verify.js.
/// Runs once per JavaScript environment (main thread, each worker), after napi-rs registered
/// the classes; an error here fails the `require`.
#[napi(module_exports, catch_unwind)]
pub fn install_fast_verify(exports: Object<'_>, env: Env) -> napi::Result<()> {
    let env = env.raw();
    // SAFETY: Node-API calls on the env being initialised, with handles made here.
    unsafe {
        let mut class = ptr::null_mut();
        check(
            sys::napi_get_named_property(env, exports.raw(), c"KeyStore".as_ptr(), &mut class),
            "reading KeyStore",
        )?;
        let mut proto = ptr::null_mut();
        check(
            sys::napi_get_named_property(env, class, c"prototype".as_ptr(), &mut proto),
            "reading KeyStore.prototype",
        )?;
        // The verify functions write the result through `data`, the ArrayBuffer's memory
        // (allocated by V8, it never moves). They are only referenced from the script's
        // closure, which also holds the buffer, so the buffer lives as long as they can run.
        let mut data: *mut c_void = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        check(
            sys::napi_create_arraybuffer(env, slot::COUNT * 8, &mut data, &mut buffer),
            "creating the result buffer",
        )?;
        let mut out = ptr::null_mut();
        check(
            sys::napi_create_typedarray(
                env,
                sys::TypedarrayType::float64_array,
                slot::COUNT,
                buffer,
                0,
                &mut out,
            ),
            "creating the result array",
        )?;
        let function = |name: &std::ffi::CStr, callback: NativeFn| -> napi::Result<_> {
            let mut value = ptr::null_mut();
            check(
                sys::napi_create_function(
                    env,
                    name.as_ptr(),
                    name.count_bytes() as isize,
                    Some(callback),
                    data,
                    &mut value,
                ),
                "creating a function",
            )?;
            Ok(value)
        };
        let bind = function(c"bindStore", bind_store)?;
        let verify_key = function(c"verifyKey", verify_key_raw)?;
        let verify_header = function(c"verifyHeader", verify_header_raw)?;
        let mut source = ptr::null_mut();
        check(
            sys::napi_create_string_utf8(
                env,
                FAST_VERIFY_JS.as_ptr().cast(),
                FAST_VERIFY_JS.len() as isize,
                &mut source,
            ),
            "creating the script source",
        )?;
        let tables_text = tables_json();
        let mut tables = ptr::null_mut();
        check(
            sys::napi_create_string_utf8(
                env,
                tables_text.as_ptr().cast(),
                tables_text.len() as isize,
                &mut tables,
            ),
            "creating the tables",
        )?;
        let mut install = ptr::null_mut();
        check(
            sys::napi_run_script(env, source, &mut install),
            "compiling src/fast_verify.js",
        )?;
        let mut undefined = ptr::null_mut();
        check(
            sys::napi_get_undefined(env, &mut undefined),
            "napi_get_undefined",
        )?;
        let args = [proto, bind, verify_key, verify_header, out, tables];
        let mut ignored = ptr::null_mut();
        check(
            sys::napi_call_function(
                env,
                undefined,
                install,
                args.len(),
                args.as_ptr(),
                &mut ignored,
            ),
            "installing verify",
        )?;
    }
    Ok(())
}

/// Runs `body` with the callback's arguments and `data` pointer; a panic becomes a JS error.
fn callback<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl FnOnce(&[sys::napi_value; N], *mut c_void) -> Js<sys::napi_value>,
) -> sys::napi_value {
    let call = std::panic::AssertUnwindSafe(|| {
        let mut argc = N;
        let mut argv = [ptr::null_mut(); N];
        let mut data = ptr::null_mut();
        // SAFETY: the callback's own env and info; missing arguments read as undefined.
        let status = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                &mut data,
            )
        };
        check(status, "napi_get_cb_info").map_err(|e| throw(env, e))?;
        body(&argv, data)
    });
    match std::panic::catch_unwind(call) {
        Ok(Ok(value)) => value,
        Ok(Err(Thrown)) => ptr::null_mut(),
        Err(_) => {
            throw(
                env,
                napi::Error::new(
                    STORE,
                    "keystead: internal error (panic) in verify".to_owned(),
                ),
            );
            ptr::null_mut()
        }
    }
}

/// `bindStore(store)`: the store's handle for the verify functions, an External holding the
/// `KeyStore` napi-rs wrapped in `store`. Anything but a KeyStore gets the TypeError V8 throws
/// for a napi-rs method called on a wrong receiver.
///
/// The script keeps the handle in a private field of `store` (so it lives exactly as long as
/// the object that owns the `KeyStore`) and passes `store` along with it on every call, which
/// keeps the object, hence the `KeyStore`, alive while the call runs. That saves the two
/// private-property lookups of the type-tag check and `napi_unwrap` on each verify.
unsafe extern "C" fn bind_store(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    callback::<1>(env, info, |&[store], _| {
        // Only a KeyStore made by napi-rs carries its type tag (napi8), and napi-rs wraps it
        // as a `Box<KeyStore>`. (The tag check throws for null and undefined, hence the type
        // check first.)
        let mut tagged = false;
        if js_type(env, store).map_err(|e| throw(env, e))? == sys::ValueType::napi_object {
            let status = unsafe {
                sys::napi_check_object_type_tag(
                    env,
                    store,
                    &<KeyStore as TypeTag>::type_tag(),
                    &mut tagged,
                )
            };
            check(status, "napi_check_object_type_tag").map_err(|e| throw(env, e))?;
        }
        if !tagged {
            // SAFETY: the current callback's env, no exception pending.
            unsafe { sys::napi_throw_type_error(env, ptr::null(), c"Illegal invocation".as_ptr()) };
            return Err(Thrown);
        }
        let mut wrapped = ptr::null_mut();
        check(
            unsafe { sys::napi_unwrap(env, store, &mut wrapped) },
            "napi_unwrap",
        )
        .map_err(|e| throw(env, e))?;
        let mut handle = ptr::null_mut();
        check(
            unsafe { sys::napi_create_external(env, wrapped, None, ptr::null_mut(), &mut handle) },
            "napi_create_external",
        )
        .map_err(|e| throw(env, e))?;
        Ok(handle)
    })
}

/// `nativeVerifyKey(store, handle, key, scope, options)` of src/fast_verify.js.
unsafe extern "C" fn verify_key_raw(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    callback::<5>(env, info, |argv, data| unsafe {
        fast_verify(env, false, argv, data)
    })
}

/// `nativeVerifyHeader(store, handle, value, scope, options)` of src/fast_verify.js.
unsafe extern "C" fn verify_header_raw(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    callback::<5>(env, info, |argv, data| unsafe {
        fast_verify(env, true, argv, data)
    })
}

/// The most bytes of a key or header read without allocating.
const STACK_TEXT: usize = 256;
/// The most required scopes, and their total bytes, read without allocating.
const STACK_SCOPES: usize = 8;
const STACK_SCOPE_BYTES: usize = 256;

/// Copies `value` into `buf` and returns it, or `None` if it is not a string or may not have
/// fit.
///
/// # Safety
/// `value` is a live handle of the current callback.
unsafe fn read_into(
    env: sys::napi_env,
    value: sys::napi_value,
    buf: &mut [MaybeUninit<u8>],
) -> Option<&str> {
    let mut len = 0;
    // Fails with napi_string_expected, and nothing else happens, for other types.
    let status = unsafe {
        sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), buf.len(), &mut len)
    };
    // napi writes at most `buf.len() - 1` bytes and the NUL, and stops before a character
    // that does not fit (up to 4 bytes): a shorter output is the whole string.
    if status != sys::Status::napi_ok || len + 4 >= buf.len() {
        return None;
    }
    // SAFETY: napi initialised the first `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    std::str::from_utf8(bytes).ok()
}

/// The text to verify: a string, or "" for null / undefined; any other type is
/// `KEYSTEAD_INVALID_ARGUMENT` (`what` names the argument).
///
/// # Safety
/// `value` is a live handle of the current callback.
unsafe fn read_text<'a>(
    env: sys::napi_env,
    value: sys::napi_value,
    what: &str,
    buf: &'a mut [MaybeUninit<u8>; STACK_TEXT],
    heap: &'a mut String,
) -> Js<&'a str> {
    if let Some(text) = unsafe { read_into(env, value, buf) } {
        return Ok(text);
    }
    // Longer strings, null / undefined, and other types.
    match js_type(env, value).map_err(|e| throw(env, e))? {
        sys::ValueType::napi_string => {
            *heap = unsafe { String::from_napi_value(env, value) }.map_err(|e| throw(env, e))?;
        }
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => heap.clear(),
        _ => {
            return Err(throw(
                env,
                invalid(format!("{what} must be a string, null or undefined")),
            ))
        }
    }
    Ok(heap)
}

fn js_type(env: sys::napi_env, value: sys::napi_value) -> napi::Result<sys::napi_valuetype> {
    let mut kind = 0;
    // SAFETY: a live handle of the current callback.
    check(
        unsafe { sys::napi_typeof(env, value, &mut kind) },
        "napi_typeof",
    )?;
    Ok(kind)
}

/// `options.scopes`, read without allocating when `options` is null, undefined or an object
/// whose `scopes` is null, undefined or an array of a few short strings. Returns `None` for
/// anything else, which napi-rs's conversion of `VerifyOptions` then decides.
///
/// # Safety
/// `options` is a live handle of the current callback.
unsafe fn read_scopes<'a>(
    env: sys::napi_env,
    options: sys::napi_value,
    bytes: &'a mut [MaybeUninit<u8>; STACK_SCOPE_BYTES],
    scopes: &mut [&'a str; STACK_SCOPES],
) -> napi::Result<Option<usize>> {
    match js_type(env, options)? {
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => return Ok(Some(0)),
        sys::ValueType::napi_object => {}
        _ => return Ok(None),
    }
    let mut list = ptr::null_mut();
    check(
        unsafe { sys::napi_get_named_property(env, options, c"scopes".as_ptr(), &mut list) },
        "reading options.scopes",
    )?;
    match js_type(env, list)? {
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => return Ok(Some(0)),
        sys::ValueType::napi_object => {}
        _ => return Ok(None),
    }
    let mut is_array = false;
    check(
        unsafe { sys::napi_is_array(env, list, &mut is_array) },
        "napi_is_array",
    )?;
    let mut count = 0;
    if !is_array
        || check(
            unsafe { sys::napi_get_array_length(env, list, &mut count) },
            "napi_get_array_length",
        )
        .is_err()
        || count as usize > STACK_SCOPES
    {
        return Ok(None);
    }
    // Each scope is read into the start of what is left of `bytes`.
    let mut rest: &'a mut [MaybeUninit<u8>] = bytes;
    for i in 0..count {
        let mut item = ptr::null_mut();
        check(
            unsafe { sys::napi_get_element(env, list, i, &mut item) },
            "reading a scope",
        )?;
        let Some(len) = (unsafe { read_into(env, item, rest) }).map(str::len) else {
            return Ok(None);
        };
        let (filled, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        // SAFETY: `read_into` initialised these `len` bytes with valid UTF-8.
        scopes[i as usize] = unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                filled.as_ptr().cast::<u8>(),
                len,
            ))
        };
    }
    Ok(Some(count as usize))
}

/// The work of `verify_key_raw` / `verify_header_raw`.
///
/// # Safety
/// `argv` holds live handles of the current callback; `data` is the result buffer of
/// `install_fast_verify`.
unsafe fn fast_verify(
    env: sys::napi_env,
    header: bool,
    argv: &[sys::napi_value; 5],
    data: *mut c_void,
) -> Js<sys::napi_value> {
    // `_store` is only passed to keep the object that owns the KeyStore alive (see
    // `bind_store`).
    let [_store, handle, value, scope, options] = *argv;
    let mut wrapped = ptr::null_mut();
    check(
        unsafe { sys::napi_get_value_external(env, handle, &mut wrapped) },
        "napi_get_value_external",
    )
    .map_err(|e| throw(env, e))?;
    // SAFETY: only `bind_store` makes the handles the script passes, each from the live
    // `Box<KeyStore>` of the store passed with it; KeyStore is only ever borrowed shared.
    let store = unsafe { &*wrapped.cast::<KeyStore>() };

    let mut text_buf = [MaybeUninit::uninit(); STACK_TEXT];
    let stack = text_buf.as_ptr_range();
    // A longer text's copy is wiped when this drops; the stack copy below, after the check.
    let mut text_heap = Zeroizing::new(String::new());
    let what = if header {
        "the Authorization value"
    } else {
        "the key"
    };
    let text = unsafe { read_text(env, value, what, &mut text_buf, &mut text_heap) }?;
    // How much of `text_buf` napi may have written: the text and its NUL, or (for a text
    // that did not fit and was read again onto the heap) all of it.
    let on_stack = stack.contains(&text.as_ptr().cast());
    let written = if on_stack {
        (text.len() + 1).min(STACK_TEXT)
    } else {
        STACK_TEXT
    };

    // `scope`: the only required scope, when the script found `options.scopes` to be an
    // array of one string; otherwise the scopes come from `options`.
    let mut one_bytes = [MaybeUninit::uninit(); STACK_SCOPE_BYTES];
    let mut scope_bytes = [MaybeUninit::uninit(); STACK_SCOPE_BYTES];
    let mut scope_array = [""; STACK_SCOPES];
    let slow: Vec<String>;
    let slow_strs: Vec<&str>;
    let one: [&str; 1];
    let scopes: &[&str] = match unsafe { read_into(env, scope, &mut one_bytes) } {
        Some(scope) => {
            one = [scope];
            &one
        }
        None => match unsafe { read_scopes(env, options, &mut scope_bytes, &mut scope_array) }
            .map_err(|e| throw(env, e))?
        {
            Some(count) => &scope_array[..count],
            None => {
                // napi-rs reads properties of any value (`5` converts as `{}`): only an
                // object, null or undefined is options.
                let kind = js_type(env, options).map_err(|e| throw(env, e))?;
                if !matches!(
                    kind,
                    sys::ValueType::napi_object
                        | sys::ValueType::napi_null
                        | sys::ValueType::napi_undefined
                ) {
                    return Err(throw(env, invalid(VERIFY_OPTIONS)));
                }
                let options = unsafe { Option::<VerifyOptions>::from_napi_value(env, options) }
                    .map_err(|e| verify_options_error(env, e))?;
                slow = scopes_of(options);
                slow_strs = as_strs(&slow);
                &slow_strs
            }
        },
    };

    let checked = {
        // Held only for the check (close() takes it on this same thread).
        let inner = store.inner.read().unwrap_or_else(|p| p.into_inner());
        let core = inner.as_ref().ok_or_else(|| throw(env, closed()))?;
        if header {
            core.verify_header(text, scopes)
        } else {
            core.verify(text, scopes)
        }
    };
    wipe(&mut text_buf[..written]);
    let checked = checked.map_err(|e| throw(env, to_js_error(e)))?;
    // SAFETY: `data` is the result buffer, slot::COUNT f64s (see `install_fast_verify`);
    // only this thread uses it, and no JavaScript runs while this reference is held.
    let out = unsafe { &mut *data.cast::<[f64; slot::COUNT]>() };
    write_result(env, &checked, out)
}

/// The error for `verify` options that napi-rs could not convert: a JavaScript exception
/// (thrown by a getter) stays pending as it is; a value of the wrong type (napi-rs's
/// `ObjectExpected`, `ArrayExpected`, `StringExpected`) is `KEYSTEAD_INVALID_ARGUMENT`, as a
/// bad value of the right type is.
fn verify_options_error(env: sys::napi_env, err: napi::Error) -> Thrown {
    if err.status == napi::Status::PendingException {
        return throw(env, err);
    }
    throw(env, invalid(VERIFY_OPTIONS))
}

const VERIFY_OPTIONS: &str =
    "verify options must be an object whose `scopes` is an array of strings, null or undefined";

/// Overwrites a copy of a presented key with zeros, in writes the compiler may not drop.
fn wipe(buf: &mut [MaybeUninit<u8>]) {
    for byte in buf.iter_mut() {
        // SAFETY: a valid, aligned, exclusively borrowed byte.
        unsafe { ptr::write_volatile(byte, MaybeUninit::new(0)) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

fn utf16_len(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.encode_utf16().count()
    }
}

/// Milliseconds since the epoch, rounded down: what chrono's `timestamp_millis` gives, as
/// the other methods' `Date`s hold.
fn millis_f64(time: SystemTime) -> f64 {
    let whole = |d: Duration| {
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    };
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => whole(after) as f64,
        Err(before) => {
            let before = before.duration();
            let partial = u64::from(before.subsec_nanos() % 1_000_000 != 0);
            -(whole(before).saturating_add(partial) as f64)
        }
    }
}

/// Appends `text` as a JSON string.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(text);
        out.push('"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_json_id(out: &mut String, id: Option<KeyId>) {
    match id {
        Some(id) => {
            let _ = write!(out, "\"{id}\"");
        }
        None => out.push_str("null"),
    }
}

/// `slot::CODE` of an outcome: its index in [`OUTCOMES`].
fn code_index(outcome: Outcome) -> napi::Result<usize> {
    OUTCOMES
        .iter()
        .position(|known| *known == outcome)
        .ok_or_else(|| unknown(outcome.as_str()))
}

/// `slot::STATUS` of a status: its index in [`STATUSES`].
fn status_index(status: KeyStatus) -> napi::Result<usize> {
    STATUSES
        .iter()
        .position(|known| *known == status)
        .ok_or_else(|| unknown(status.as_str()))
}

/// `slot::WWW_KIND` of a `WWW-Authenticate` value: its index in [`WWW`], or `None`.
fn www_index(www: Option<&str>) -> Option<usize> {
    WWW.iter().position(|known| *known == www)
}

/// A value added to core that this binding does not map yet (a bug here, never silent).
fn unknown(what: &str) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("keystead: the Node binding does not know the value `{what}`"),
    )
}

/// Fills `out` and returns the payload (see src/fast_verify.js), or undefined.
fn write_result(
    env: sys::napi_env,
    checked: &keystead::Verification,
    out: &mut [f64; slot::COUNT],
) -> Js<sys::napi_value> {
    let code = code_index(checked.outcome()).map_err(|e| throw(env, e))?;
    out[slot::CODE] = code as f64;
    out[slot::HTTP_STATUS] = f64::from(checked.http_status());
    PAYLOAD.with_borrow_mut(|payload| {
        payload.clear();
        fill_payload(env, checked, out, payload)
    })
}

thread_local! {
    /// The buffer `write_result` builds payloads in, kept between calls.
    static PAYLOAD: RefCell<String> = const { RefCell::new(String::new()) };
}

fn fill_payload(
    env: sys::napi_env,
    checked: &keystead::Verification,
    out: &mut [f64; slot::COUNT],
    payload: &mut String,
) -> Js<sys::napi_value> {
    let www = checked.www_authenticate();
    match www_index(www.as_deref()) {
        Some(kind) => out[slot::WWW_KIND] = kind as f64,
        None => {
            let www = www.unwrap_or_default();
            out[slot::WWW_KIND] = -1.0;
            out[slot::WWW_LEN] = utf16_len(&www) as f64;
            payload.push_str(&www);
        }
    }
    let Some(info) = checked.key() else {
        if let Some(id) = checked.key_id() {
            // A refused key: its id only.
            out[slot::HAS_KEY] = 2.0;
            let start = payload.len();
            let _ = write!(payload, "{id}");
            out[slot::ID_LEN] = utf16_len(&payload[start..]) as f64;
            return js_string(env, payload);
        }
        out[slot::HAS_KEY] = 0.0;
        if payload.is_empty() {
            let mut undefined = ptr::null_mut();
            // SAFETY: the current callback's env.
            check(
                unsafe { sys::napi_get_undefined(env, &mut undefined) },
                "napi_get_undefined",
            )
            .map_err(|e| throw(env, e))?;
            return Ok(undefined);
        }
        return js_string(env, payload);
    };
    // Only a valid verification has a key, and a valid key was active at the check: what
    // `status()` would say, without reading the clock again.
    let status = status_index(KeyStatus::Active).map_err(|e| throw(env, e))?;
    out[slot::HAS_KEY] = 1.0;
    out[slot::STATUS] = status as f64;
    out[slot::CREATED] = millis_f64(info.created_at());
    out[slot::UPDATED] = millis_f64(info.updated_at());
    out[slot::EXPIRES] = info.expires_at().map_or(f64::NAN, millis_f64);
    out[slot::LAST_USED] = info.last_used_at().map_or(f64::NAN, millis_f64);
    out[slot::USE_COUNT] = i64::try_from(info.use_count()).unwrap_or(i64::MAX) as f64;

    // id + name + JSON [scopes, metadata, replaces, replacedBy]
    payload.reserve(64 + info.name().len());
    let start = payload.len();
    let _ = write!(payload, "{}", info.id());
    out[slot::ID_LEN] = utf16_len(&payload[start..]) as f64;
    payload.push_str(info.name());
    out[slot::NAME_LEN] = utf16_len(info.name()) as f64;
    payload.push_str("[[");
    for (i, scope) in info.scopes().iter().enumerate() {
        if i > 0 {
            payload.push(',');
        }
        push_json_string(payload, scope);
    }
    payload.push_str("],{");
    for (i, (key, value)) in info.metadata().iter().enumerate() {
        if i > 0 {
            payload.push(',');
        }
        push_json_string(payload, key);
        payload.push(':');
        push_json_string(payload, value);
    }
    payload.push_str("},");
    push_json_id(payload, info.replaces());
    payload.push(',');
    push_json_id(payload, info.replaced_by());
    payload.push(']');
    js_string(env, payload)
}

fn js_string(env: sys::napi_env, text: &str) -> Js<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: the current callback's env; `text` is valid UTF-8 of the given length (and
    // ASCII, a subset of Latin-1, in the first case: no decoding needed).
    let status = unsafe {
        if text.is_ascii() {
            sys::napi_create_string_latin1(
                env,
                text.as_ptr().cast(),
                text.len() as isize,
                &mut value,
            )
        } else {
            sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut value)
        }
    };
    check(status, "napi_create_string_utf8").map_err(|e| throw(env, e))?;
    Ok(value)
}

// ---- work off the event loop ----

/// Turns a core result into the task's JS value, or a rejection with the same error (and
/// `code`) as the synchronous method would throw.
fn settle<T, U>(
    env: Env,
    result: keystead::Result<T>,
    convert: impl FnOnce(T) -> Result<U>,
) -> napi::Result<U> {
    result
        .map_err(to_js_error)
        .and_then(convert)
        .map_err(|err| napi::Error::from(JsError::from(err).into_unknown(env)))
}

/// Runs a task's `compute` body, turning a panic into an error: napi-rs runs `compute` on a
/// libuv thread inside an `extern "C"` callback without catching unwinds, so a panic there
/// would abort the process.
fn compute_caught<T>(body: impl FnOnce() -> keystead::Result<T>) -> keystead::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err(keystead::Error::Storage(
            "keystead: internal error (panic) in the Node binding".into(),
        ))
    })
}

/// Runs a task's `resolve` body, turning a panic into a rejection (see [`compute_caught`]).
fn resolve_caught<T>(body: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err(napi::Error::new(
            napi::Status::GenericFailure,
            "keystead: internal error (panic) in the Node binding".to_owned(),
        ))
    })
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
        Ok(compute_caught(|| match self.op.take() {
            Some(KeyOp::Create(new)) => self.store.create(new),
            Some(KeyOp::Rotate(id, grace)) => self.store.rotate(id, grace),
            None => Err(keystead::Error::InvalidArgument(
                "the task already ran".into(),
            )),
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        resolve_caught(|| settle(env, output, CreatedKey::try_from))
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
        Ok(compute_caught(|| match self.op {
            InfoOp::Revoke(id) => self.store.revoke(id),
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        resolve_caught(|| settle(env, output, |changed| info(&changed)))
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
        Ok(compute_caught(|| self.store.flush()))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        resolve_caught(|| settle(env, output, |()| Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of core error has its code, and README's table of codes documents it.
    #[test]
    fn every_core_error_kind_has_a_documented_code() {
        let readme = include_str!("../README.md");
        for &kind in keystead::ErrorKind::ALL {
            let row = format!("| `{}` |", kind.code());
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
        assert_eq!(error_code(&keystead::Error::Closed), "KEYSTEAD_CLOSED");
        assert_eq!(closed().status, "KEYSTEAD_CLOSED");
        assert_eq!(closed().reason, "the key store is closed");
    }

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
            (keystead::Error::StoreReplaced, "KEYSTEAD_STORE_ERROR"),
            (keystead::Error::Closed, "KEYSTEAD_CLOSED"),
        ];
        for (err, code) in cases {
            assert_eq!(error_code(&err), code);
            assert_eq!(to_js_error(err).status, code);
        }
    }

    #[test]
    fn every_outcome_and_status_has_its_table_index() {
        for (index, outcome) in OUTCOMES.into_iter().enumerate() {
            assert_eq!(code_index(outcome).unwrap(), index);
        }
        for (index, status) in STATUSES.into_iter().enumerate() {
            assert_eq!(status_index(status).unwrap(), index);
        }
        assert_eq!(www_index(None), Some(0));
        assert_eq!(www_index(Some("Bearer")), Some(1));
        assert_eq!(
            www_index(Some("Bearer error=\"insufficient_scope\", scope=\"a\"")),
            None
        );
    }

    /// What src/fast_verify.js receives: core's codes and statuses, in table order, and
    /// every slot once.
    #[test]
    fn the_tables_handed_to_the_script_come_from_core() {
        let json = tables_json();
        assert!(json.starts_with(
            "{\"codes\":[\"valid\",\"missing\",\"malformed\",\"not_found\",\"disabled\",\
             \"revoked\",\"expired\",\"insufficient_scope\"],\"statuses\":[\"active\",\
             \"disabled\",\"revoked\",\"expired\"],\"www\":[null,\"Bearer\",\
             \"Bearer error=\\\"invalid_request\\\"\",\"Bearer error=\\\"invalid_token\\\"\"],"
        ));
        for (index, (name, at)) in slot::NAMES.iter().enumerate() {
            assert_eq!(index, *at, "{name}");
            assert!(json.contains(&format!("\"{name}\":{at}")), "{name}");
        }
    }

    #[test]
    fn times_are_the_milliseconds_chrono_gives() {
        let epoch = SystemTime::UNIX_EPOCH;
        let times = [
            epoch,
            epoch + Duration::from_millis(1_764_322_800_123),
            epoch + Duration::from_nanos(1_764_322_800_123_999_999),
            epoch - Duration::from_nanos(1),
            epoch - Duration::from_micros(1500),
            epoch - Duration::from_millis(1),
            epoch - Duration::new(2, 100),
        ];
        for time in times {
            assert_eq!(
                millis_f64(time),
                to_date(time).unwrap().timestamp_millis() as f64,
                "{time:?}"
            );
        }
    }

    /// Every exported function and method catches panics (napi-rs's `catch_unwind`), so a
    /// bug becomes a JS error instead of aborting the process.
    #[test]
    fn every_exported_function_catches_unwinds() {
        let source = include_str!("lib.rs");
        let mut lines = source.lines().peekable();
        let mut checked = 0;
        while let Some(line) = lines.next() {
            let attr = line.trim_start();
            if !attr.starts_with("#[napi") || attr.starts_with("#[napi(object") {
                continue;
            }
            // The item the attribute applies to (skipping doc comments and other attributes).
            let item = lines
                .clone()
                .map(str::trim_start)
                .find(|l| !l.starts_with("///") && !l.starts_with("#["))
                .unwrap_or_default();
            if item.contains("fn ") {
                assert!(attr.contains("catch_unwind"), "{attr} on `{item}`");
                checked += 1;
            }
        }
        assert!(checked >= 20, "found only {checked} exported functions");
    }

    #[test]
    fn far_future_times_are_errors_not_panics() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(17_281_000_000_000);
        assert_eq!(to_date(far).unwrap_err().status, "KEYSTEAD_STORE_ERROR");
        let past = SystemTime::UNIX_EPOCH - Duration::from_secs(17_281_000_000_000);
        assert!(to_date(past).is_err());
        assert!(JsDate(f64::NAN).time("t").is_err());
        assert!(JsDate(f64::INFINITY).time("t").is_err());
        assert_eq!(
            JsDate(-1.0).time("t").unwrap(),
            SystemTime::UNIX_EPOCH - Duration::from_millis(1)
        );
    }

    #[test]
    fn payload_json_strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "plain:scope");
        push_json_string(&mut out, "q\"b\\n\nt\u{1}é");
        assert_eq!(out, "\"plain:scope\"\"q\\\"b\\\\n\\u000at\\u0001é\"");
    }

    #[test]
    fn utf16_lengths() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("😀"), 2);
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
