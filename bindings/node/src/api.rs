//! The napi-rs API: the JS-facing objects and the `KeyStore` class.

use crate::*;

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
    /// How long cached keys keep verifying while the store's database cannot be reached
    /// (default 30000 ms after the last successful sync); past it, and at once for a key that
    /// is not cached, verify throws `KEYSTEAD_UNAVAILABLE`.
    pub max_staleness_ms: Option<Option<i64>>,
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

pub(crate) fn info(info: &keystead::KeyInfo) -> Result<KeyInfo> {
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

/// Verifications by outcome, keyed by the outcome's stable code (a verification's `code`).
#[napi(object, object_from_js = false)]
pub struct OutcomeCounts {
    pub valid: i64,
    pub missing: i64,
    pub malformed: i64,
    #[napi(js_name = "not_found")]
    pub not_found: i64,
    pub disabled: i64,
    pub revoked: i64,
    pub expired: i64,
    #[napi(js_name = "insufficient_scope")]
    pub insufficient_scope: i64,
}

/// A snapshot of one store handle's counters since it was opened (`store.stats()`); they only
/// grow. docs/metrics.md defines each field, with the same names in every binding.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct Stats {
    /// Verifications by outcome code, every code present.
    pub outcomes: OutcomeCounts,
    /// Verifications that ended in an outcome (the sum of `outcomes`).
    pub verifications: i64,
    /// Verify calls that threw instead of answering (e.g. `KEYSTEAD_UNAVAILABLE`).
    pub verify_errors: i64,
    /// Verifications of a well-formed key answered without reading a key record.
    pub cache_hits: i64,
    /// Verifications of a well-formed key that read a key record from the store.
    pub cache_misses: i64,
    /// Reads of the store's change feed by the verify path (failed ones too).
    pub refreshes: i64,
    pub refresh_failures: i64,
    /// Batches of usage counts written to the store.
    pub flushes: i64,
    pub flush_failures: i64,
    /// Successful verifications counted in memory, not yet written.
    pub usage_pending: i64,
    /// Milliseconds since the last successful change-feed read; `null` before the first.
    pub last_refresh_age_ms: Option<f64>,
    /// Keys whose records are in the verify cache now.
    pub cached_keys: i64,
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<keystead::Stats> for Stats {
    fn from(s: keystead::Stats) -> Self {
        let mut outcomes = OutcomeCounts {
            valid: 0,
            missing: 0,
            malformed: 0,
            not_found: 0,
            disabled: 0,
            revoked: 0,
            expired: 0,
            insufficient_scope: 0,
        };
        for (outcome, n) in s.outcomes() {
            let slot = match outcome.as_str() {
                "valid" => &mut outcomes.valid,
                "missing" => &mut outcomes.missing,
                "malformed" => &mut outcomes.malformed,
                "not_found" => &mut outcomes.not_found,
                "disabled" => &mut outcomes.disabled,
                "revoked" => &mut outcomes.revoked,
                "expired" => &mut outcomes.expired,
                "insufficient_scope" => &mut outcomes.insufficient_scope,
                // An outcome of a later core: counted in `verifications` only.
                _ => continue,
            };
            *slot = count(n);
        }
        Stats {
            outcomes,
            verifications: count(s.verifications()),
            verify_errors: count(s.verify_errors),
            cache_hits: count(s.cache_hits),
            cache_misses: count(s.cache_misses),
            refreshes: count(s.refreshes),
            refresh_failures: count(s.refresh_failures),
            flushes: count(s.flushes),
            flush_failures: count(s.flush_failures),
            usage_pending: count(s.usage_pending),
            last_refresh_age_ms: s.last_refresh_age.map(|age| age.as_secs_f64() * 1000.0),
            cached_keys: count(s.cached_keys),
        }
    }
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

pub(crate) fn open_options(options: Option<OpenOptions>) -> Result<Options> {
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
    if let Some(ms) = o.refresh_interval_ms.flatten() {
        out = out.refresh_interval(millis("refreshIntervalMs", ms)?);
    }
    if let Some(ms) = o.max_staleness_ms.flatten() {
        out = out.max_staleness(millis("maxStalenessMs", ms)?);
    }
    if let Some(ms) = o.flush_interval_ms.flatten() {
        out = out.flush_interval(millis("flushIntervalMs", ms)?);
    }
    if let Some(actor) = o.actor.flatten() {
        out = out.actor(actor);
    }
    Ok(out)
}

pub(crate) fn new_key(options: NewKeyOptions) -> Result<NewKey> {
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

pub(crate) fn list_filter(options: Option<ListOptions>) -> Result<ListFilter> {
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

pub(crate) fn scopes_of(options: Option<VerifyOptions>) -> Vec<String> {
    options.and_then(|o| o.scopes.flatten()).unwrap_or_default()
}

pub(crate) fn as_strs(scopes: &[String]) -> Vec<&str> {
    scopes.iter().map(String::as_str).collect()
}

// ---- the store ----

pub(crate) type Core = keystead::KeyStore;

/// A store of API keys in one embedded file, shared safely by several processes.
#[napi]
pub struct KeyStore {
    /// `None` once closed. Async tasks hold their own `Arc` until they finish. Behind a lock
    /// (uncontended: only the JS thread takes it) because `close` must work while a Promise
    /// method is pending, and napi-rs keeps `&self` borrowed until such a Promise settles.
    pub(crate) inner: RwLock<Option<Arc<Core>>>,
}

#[napi]
impl KeyStore {
    /// Opens the store at `path`, creating it (mode 0600) if it does not exist.
    #[napi(factory, catch_unwind)]
    pub fn open(path: String, options: Option<OpenOptions>) -> Result<Self> {
        let cache_size = match options.as_ref().and_then(|o| o.cache_size.flatten()) {
            Some(size) => Some(
                usize::try_from(size)
                    .map_err(|_| invalid("cacheSize must be a non-negative number of bytes"))?,
            ),
            None => None,
        };
        let options = open_options(options)?;
        // The page cache is a setting of the file backend, not of every store.
        let store = match cache_size {
            Some(bytes) => core(
                keystead::backend::FileBackend::for_location(
                    &path,
                    keystead::backend::FileOptions::new().cache_size(bytes),
                )
                .and_then(|file| Core::open_with(file, options)),
            )?,
            None => core(Core::open(path, options))?,
        };
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

    /// A snapshot of this handle's counters (cheap: no store access). docs/metrics.md.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.store()?.stats().into())
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
pub(crate) fn replaced_method() -> napi::Error<&'static str> {
    napi::Error::new(
        STORE,
        "keystead: internal error: the Node binding's verify was not installed".to_owned(),
    )
}

pub(crate) fn grace_of(options: Option<RotateOptions>) -> Result<Duration> {
    millis(
        "graceMs",
        options.and_then(|o| o.grace_ms.flatten()).unwrap_or(0),
    )
}
