//! `keystead._keystead`: the Python binding of keystead, re-exported by `keystead/__init__.py`.
//!
//! Thin by design: every rule lives in the core crate. This file only converts types
//! (`datetime` <-> `SystemTime`, `timedelta` <-> `Duration`, ids as `str`), releases the GIL
//! around every store call, and maps [`keystead::Error`] to Python exceptions by its kind, in
//! [`exception_of`].
//! The exception classes are defined in Python (`keystead/_errors.py`) so that
//! `InvalidArgument` can subclass both `KeysteadError` and `ValueError`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keystead::{
    AuditEntry, DailyUsage, Error, ErrorKind, KeyId, KeyInfo, KeyStatus, ListFilter, NewKey,
    Options, Stats, Verification, Zeroizing, DEFAULT_AUDIT_LIMIT,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBytes, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyList, PyMapping, PyString, PyTuple,
    PyTzInfo,
};
use pyo3::{intern, IntoPyObjectExt};

mod errors {
    pyo3::import_exception!(keystead._errors, KeysteadError);
    pyo3::import_exception!(keystead._errors, StoreError);
    pyo3::import_exception!(keystead._errors, WrongPepperError);
    pyo3::import_exception!(keystead._errors, InvalidArgument);
    pyo3::import_exception!(keystead._errors, KeyNotFoundError);
    pyo3::import_exception!(keystead._errors, InvalidStateError);
    pyo3::import_exception!(keystead._errors, PrefixMismatchError);
    pyo3::import_exception!(keystead._errors, UnsupportedVersionError);
    pyo3::import_exception!(keystead._errors, ClosedError);
    pyo3::import_exception!(keystead._errors, UnavailableError);
}

/// The exception class of each kind of core error: the one table. `None` for a kind this
/// binding does not know yet (a later core), which [`to_py_err`] raises as `KeysteadError`.
fn exception_of(kind: ErrorKind) -> Option<fn(String) -> PyErr> {
    use ErrorKind as K;
    Some(match kind {
        K::InvalidArgument => errors::InvalidArgument::new_err::<String>,
        K::KeyNotFound => errors::KeyNotFoundError::new_err::<String>,
        K::InvalidState => errors::InvalidStateError::new_err::<String>,
        K::WrongPepper => errors::WrongPepperError::new_err::<String>,
        K::PrefixMismatch => errors::PrefixMismatchError::new_err::<String>,
        K::UnsupportedVersion => errors::UnsupportedVersionError::new_err::<String>,
        // Corrupt, Locked, Storage, Io, InsecurePermissions, StoreReplaced: the message says
        // which.
        K::Store => errors::StoreError::new_err::<String>,
        K::Closed => errors::ClosedError::new_err::<String>,
        K::Unavailable => errors::UnavailableError::new_err::<String>,
        _ => return None,
    })
}

/// Core errors as Python exceptions, by [`exception_of`]. The message is core's own (it never
/// contains key material).
fn to_py_err(error: Error) -> PyErr {
    let raise = exception_of(error.kind()).unwrap_or(errors::KeysteadError::new_err::<String>);
    raise(error.to_string())
}

/// `{code: exception class}` for every kind of core error (`keystead::ErrorKind::ALL`), built
/// by the same table as every raised error: the tests check that each kind has its own class.
#[pyfunction]
fn _error_classes(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let classes = PyDict::new(py);
    for &kind in ErrorKind::ALL {
        let raise = exception_of(kind).unwrap_or(errors::KeysteadError::new_err::<String>);
        classes.set_item(kind.code(), raise(String::new()).get_type(py))?;
    }
    Ok(classes)
}

/// Checks required scopes by core's rule, without a store, so that the framework adapters
/// refuse a scope no key can have when the app is set up instead of on every request.
#[pyfunction]
fn _validate_scopes(scopes: Scopes) -> PyResult<()> {
    NewKey::new("scopes")
        .scopes(scopes.0)
        .validate()
        .map_err(to_py_err)
}

/// A scope given by the application, as UTF-8: a `str` holding a lone surrogate has none, and
/// is `InvalidArgument` like any other scope that cannot be stored.
fn scope_str<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    item.cast::<PyString>()?
        .to_str()
        .map_err(|_| invalid("a scope must be valid Unicode text (it holds a lone surrogate)"))
}

/// An argument the binding itself rejects (naive datetime, negative timedelta, ...).
fn invalid(message: impl Into<String>) -> PyErr {
    to_py_err(Error::InvalidArgument(message.into()))
}

// ---- argument conversions ----

fn key_id(text: &str) -> PyResult<KeyId> {
    text.parse().map_err(to_py_err)
}

fn unix_epoch(py: Python<'_>) -> PyResult<&Bound<'_, PyDateTime>> {
    static EPOCH: PyOnceLock<Py<PyDateTime>> = PyOnceLock::new();
    Ok(EPOCH
        .get_or_try_init(py, || {
            let utc = PyTzInfo::utc(py)?;
            PyDateTime::new(py, 1970, 1, 1, 0, 0, 0, 0, Some(&utc)).map(Bound::unbind)
        })?
        .bind(py))
}

const MICROS_PER_DAY: i128 = 86_400_000_000;

fn delta_micros(delta: &Bound<'_, PyDelta>) -> i128 {
    i128::from(delta.get_days()) * MICROS_PER_DAY
        + i128::from(delta.get_seconds()) * 1_000_000
        + i128::from(delta.get_microseconds())
}

/// A timezone-aware `datetime`; naive ones are refused (their meaning depends on the host).
struct Timestamp(SystemTime);

impl FromPyObject<'_, '_> for Timestamp {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        let datetime = obj.cast::<PyDateTime>()?;
        if datetime.call_method0("utcoffset")?.is_none() {
            return Err(invalid(
                "naive datetime: pass a timezone-aware one, e.g. datetime.now(timezone.utc)",
            ));
        }
        let since_epoch = datetime.sub(unix_epoch(obj.py())?)?;
        let micros = delta_micros(since_epoch.cast::<PyDelta>()?);
        let offset =
            Duration::from_micros(u64::try_from(micros.unsigned_abs()).unwrap_or(u64::MAX));
        let time = if micros >= 0 {
            UNIX_EPOCH.checked_add(offset)
        } else {
            UNIX_EPOCH.checked_sub(offset)
        };
        time.map(Timestamp)
            .ok_or_else(|| invalid("datetime out of range"))
    }
}

/// A UTC `datetime` for a core timestamp.
fn datetime(py: Python<'_>, time: SystemTime) -> PyResult<Bound<'_, PyAny>> {
    let micros = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_micros()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_micros()).unwrap_or(i128::MAX),
    };
    // datetime's range, 0001-01-01 to 9999-12-31T23:59:59.999999 UTC: outside it, adding
    // the delta below would raise OverflowError. Only a store written before the core
    // refused times after 9999 (or a damaged one) holds such a time.
    const MIN_MICROS: i128 = -62_135_596_800_000_000;
    const MAX_MICROS: i128 = 253_402_300_799_999_999;
    if !(MIN_MICROS..=MAX_MICROS).contains(&micros) {
        return Err(errors::StoreError::new_err(
            "a time in the store is outside the range of datetime (written by an older \
             keystead; give the key a nearer expiry)",
        ));
    }
    let out_of_range = |_| invalid("timestamp out of the range of datetime");
    let days = i32::try_from(micros.div_euclid(MICROS_PER_DAY)).map_err(out_of_range)?;
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    let seconds = i32::try_from(rest / 1_000_000).map_err(out_of_range)?;
    let micros = i32::try_from(rest % 1_000_000).map_err(out_of_range)?;
    let delta = PyDelta::new(py, days, seconds, micros, false)?;
    unix_epoch(py)?.add(delta)
}

fn opt_datetime(py: Python<'_>, time: Option<SystemTime>) -> PyResult<Option<Bound<'_, PyAny>>> {
    time.map(|t| datetime(py, t)).transpose()
}

/// A non-negative `timedelta`.
struct Span(Duration);

impl FromPyObject<'_, '_> for Span {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        let delta = obj.cast::<PyDelta>()?;
        let micros = delta_micros(&delta);
        if micros < 0 {
            return Err(invalid("a duration must not be negative"));
        }
        // Up to timedelta.max (about 8.6e22 µs, more than a u64 of microseconds holds, but
        // fewer seconds than a Duration does); the core refuses what it cannot store.
        let secs =
            u64::try_from(micros / 1_000_000).map_err(|_| invalid("the duration is too long"))?;
        let nanos = u32::try_from(micros % 1_000_000 * 1000).unwrap_or(0);
        Ok(Span(Duration::new(secs, nanos)))
    }
}

/// Scopes are any iterable of `str` except a bare `str` (which would be split into characters).
fn reject_single_string(obj: Borrowed<'_, '_, PyAny>) -> PyResult<()> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "scopes must be an iterable of str such as a tuple or list, not a single string",
        ));
    }
    Ok(())
}

/// Scopes to store (`create`, `set_scopes`): copied, since core keeps them.
#[derive(Default)]
struct Scopes(Vec<String>);

impl FromPyObject<'_, '_> for Scopes {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        reject_single_string(obj)?;
        let scopes = obj
            .try_iter()?
            .map(|item| scope_str(&item?).map(str::to_owned))
            .collect::<PyResult<_>>()?;
        Ok(Scopes(scopes))
    }
}

/// The scopes a `verify`/`verify_header` call requires, left as the caller's object: they are
/// read as `&str` borrowed from it by [`with_required_scopes`] (no copies on the hot path).
#[derive(Clone, Copy)]
struct RequiredScopes<'a, 'py>(Option<Borrowed<'a, 'py, PyAny>>);

impl RequiredScopes<'_, '_> {
    const NONE: Self = RequiredScopes(None);
}

impl<'a, 'py> FromPyObject<'a, 'py> for RequiredScopes<'a, 'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        reject_single_string(obj)?;
        Ok(RequiredScopes(Some(obj)))
    }
}

/// Up to this many required scopes are held and passed to core in arrays on the stack.
const INLINE_SCOPES: usize = 8;

/// Calls `f` with the required scopes as `&str`s that borrow the UTF-8 of the caller's `str`
/// objects. `f` releases the GIL, so those objects must stay alive and unchanged meanwhile: a
/// tuple is immutable and the caller holds it for the length of the call; the items of a list
/// (which another thread could change) are held here, on the stack when there are few; anything
/// else (a set, a generator, a subclass with its own `__iter__`) is first copied into a tuple.
fn with_required_scopes<R>(
    scopes: RequiredScopes<'_, '_>,
    f: impl FnOnce(&[&str]) -> PyResult<R>,
) -> PyResult<R> {
    let Some(obj) = scopes.0 else {
        return f(&[]);
    };
    if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
        let items = tuple.as_slice();
        return with_scope_strs(items.len(), items.iter(), f);
    }
    let copied = if let Ok(list) = obj.cast_exact::<PyList>() {
        if list.len() <= INLINE_SCOPES {
            let mut held: [Option<Bound<'_, PyAny>>; INLINE_SCOPES] = Default::default();
            let mut len = 0;
            for (slot, item) in held.iter_mut().zip(list.iter()) {
                *slot = Some(item);
                len += 1;
            }
            return with_scope_strs(len, held.iter().flatten(), f);
        }
        list.to_tuple()
    } else {
        PyTuple::new(obj.py(), obj.try_iter()?.collect::<PyResult<Vec<_>>>()?)?
    };
    let items = copied.as_slice();
    with_scope_strs(items.len(), items.iter(), f)
}

/// Calls `f` with the `len` `items` as `&str`s, from an array on the stack when they are few.
fn with_scope_strs<'a, 'py: 'a, R>(
    len: usize,
    items: impl Iterator<Item = &'a Bound<'py, PyAny>>,
    f: impl FnOnce(&[&str]) -> PyResult<R>,
) -> PyResult<R> {
    if len <= INLINE_SCOPES {
        let mut strs = [""; INLINE_SCOPES];
        let mut count = 0;
        for (slot, item) in strs.iter_mut().zip(items) {
            *slot = scope_str(item)?;
            count += 1;
        }
        f(&strs[..count])
    } else {
        let strs = items.map(scope_str).collect::<PyResult<Vec<&str>>>()?;
        f(&strs)
    }
}

/// Metadata: any mapping of `str` to `str`.
struct Metadata(BTreeMap<String, String>);

impl FromPyObject<'_, '_> for Metadata {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        let items = obj.cast::<PyMapping>()?.items()?;
        let entries = items
            .iter()
            .map(|item| item.extract::<(String, String)>())
            .collect::<PyResult<_>>()?;
        Ok(Metadata(entries))
    }
}

/// A pepper given as `bytes` or `str` (UTF-8 encoded).
struct Pepper(Zeroizing<Vec<u8>>);

impl FromPyObject<'_, '_> for Pepper {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(Pepper(Zeroizing::new(bytes.as_bytes().to_vec())));
        }
        if let Ok(text) = obj.cast::<PyString>() {
            return Ok(Pepper(Zeroizing::new(text.to_str()?.as_bytes().to_vec())));
        }
        Err(PyTypeError::new_err("pepper must be bytes or str"))
    }
}

/// An `Authorization` header value: `str`, `bytes` or `None` (absent).
fn header_bytes<'a>(value: Option<&'a Bound<'_, PyAny>>) -> PyResult<Cow<'a, [u8]>> {
    let Some(value) = value else {
        return Ok(Cow::Borrowed(b""));
    };
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(bytes.as_bytes()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(match text.to_str() {
            Ok(text) => Cow::Borrowed(text.as_bytes()),
            // A str with lone surrogates cannot hold a key: the replacement characters make
            // it malformed, which is the right outcome.
            Err(_) => Cow::Owned(text.to_string_lossy().into_owned().into_bytes()),
        });
    }
    Err(PyTypeError::new_err(
        "the Authorization value must be str, bytes or None",
    ))
}

// ---- result types ----

/// `Class(name=value, ...)` with Python's own `repr` of each value.
fn repr_of<'py, const N: usize>(
    class: &str,
    fields: [(&str, Bound<'py, PyAny>); N],
) -> PyResult<String> {
    let mut parts = Vec::with_capacity(N);
    for (name, value) in fields {
        parts.push(format!("{name}={}", value.repr()?));
    }
    Ok(format!("{class}({})", parts.join(", ")))
}

/// A constant string of core's (an outcome code, key status or audit action) as a Python `str`
/// created once per process; anything else is converted on each call.
fn constant_str<'py>(py: Python<'py>, text: &'static str) -> Bound<'py, PyString> {
    macro_rules! interned {
        ($($literal:literal)*) => {
            match text {
                $($literal => intern!(py, $literal).clone(),)*
                _ => PyString::new(py, text),
            }
        };
    }
    interned!(
        "valid" "missing" "malformed" "not_found" "disabled" "revoked" "expired"
        "insufficient_scope" "active" "create" "rename" "set_scopes" "set_metadata" "set_expiry"
        "disable" "enable" "revoke" "rotate" "delete"
    )
}

/// Where a `KeyInfo` object's data is: its own copy, or the key of the `Verification` it was
/// read from (shared, so that `check.key` copies nothing).
enum InfoSource {
    Owned(KeyInfo),
    /// Only for a verification that has a key.
    Verified(Py<PyVerification>),
}

/// Everything about a key except its secret (immutable snapshot). Fields are converted to
/// Python objects when they are read.
#[pyclass(frozen, eq, name = "KeyInfo", module = "keystead")]
struct PyKeyInfo(InfoSource);

impl From<KeyInfo> for PyKeyInfo {
    fn from(info: KeyInfo) -> Self {
        PyKeyInfo(InfoSource::Owned(info))
    }
}

impl PyKeyInfo {
    fn info(&self) -> &KeyInfo {
        match &self.0 {
            InfoSource::Owned(info) => info,
            InfoSource::Verified(check) => check
                .get()
                .0
                .key()
                .expect("a KeyInfo is only made for a verification with a key"),
        }
    }
}

impl PartialEq for PyKeyInfo {
    fn eq(&self, other: &Self) -> bool {
        self.info() == other.info()
    }
}

#[pymethods]
impl PyKeyInfo {
    #[getter]
    fn id(&self) -> String {
        self.info().id().to_string()
    }
    #[getter]
    fn name(&self) -> &str {
        self.info().name()
    }
    #[getter]
    fn scopes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.info().scopes())
    }
    /// A new `dict` on each access (the `KeyInfo` itself never changes).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, value) in self.info().metadata() {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }
    /// The status at the time of the access (expiry is evaluated then), as in core.
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        constant_str(py, self.info().status().as_str())
    }
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.info().created_at())
    }
    #[getter]
    fn updated_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.info().updated_at())
    }
    #[getter]
    fn expires_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        opt_datetime(py, self.info().expires_at())
    }
    #[getter]
    fn last_used_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        opt_datetime(py, self.info().last_used_at())
    }
    #[getter]
    fn use_count(&self) -> u64 {
        self.info().use_count()
    }
    #[getter]
    fn replaces(&self) -> Option<String> {
        self.info().replaces().map(|id| id.to_string())
    }
    #[getter]
    fn replaced_by(&self) -> Option<String> {
        self.info().replaced_by().map(|id| id.to_string())
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr_of(
            "KeyInfo",
            [
                ("id", self.id().into_bound_py_any(py)?),
                ("name", self.name().into_bound_py_any(py)?),
                ("status", self.status(py).into_any()),
                ("scopes", self.scopes(py)?.into_any()),
            ],
        )
    }
}

/// A newly created key: the only time the plaintext exists. `repr()` never shows it.
#[pyclass(frozen, name = "CreatedKey", module = "keystead")]
struct PyCreatedKey {
    key: Zeroizing<String>,
    info: KeyInfo,
}

impl From<keystead::CreatedKey> for PyCreatedKey {
    fn from(created: keystead::CreatedKey) -> Self {
        let (key, info) = created.into_parts();
        PyCreatedKey { key, info }
    }
}

#[pymethods]
impl PyCreatedKey {
    /// The full key to hand to the client, once.
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }
    #[getter]
    fn info(&self) -> PyKeyInfo {
        PyKeyInfo::from(self.info.clone())
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let info = self.info().__repr__(py)?;
        Ok(format!("CreatedKey(key=<redacted>, info={info})"))
    }
}

/// The outcome of checking a presented credential. Holds core's result (the key information
/// in it is shared with core's record cache); fields become Python objects when read.
#[pyclass(frozen, name = "Verification", module = "keystead")]
struct PyVerification(Verification);

#[pymethods]
impl PyVerification {
    /// Whether the credential is accepted (code `valid`).
    #[getter]
    fn ok(&self) -> bool {
        self.0.is_valid()
    }
    #[getter]
    fn code<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        constant_str(py, self.0.code())
    }
    /// The key, only for a valid key (`ok`); `None` for every refused outcome, so checking
    /// "has a key" never admits a revoked one. A view of this verification's key: nothing is
    /// copied.
    #[getter]
    fn key(slf: &Bound<'_, Self>) -> Option<PyKeyInfo> {
        slf.get()
            .0
            .key()
            .map(|_| PyKeyInfo(InfoSource::Verified(slf.clone().unbind())))
    }
    /// The id of the key whose secret matched, for logs: set for `valid` and for the outcomes
    /// refused after the secret matched (`disabled`, `revoked`, `expired`,
    /// `insufficient_scope`); `None` for `missing`, `malformed`, `not_found`.
    #[getter]
    fn key_id(&self) -> Option<String> {
        self.0.key_id().map(|id| id.to_string())
    }
    #[getter]
    fn http_status(&self) -> u16 {
        self.0.http_status()
    }
    /// Built by core when read (`None` for a valid key).
    #[getter]
    fn www_authenticate(&self) -> Option<String> {
        self.0.www_authenticate()
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let key_id = self.key_id();
        repr_of(
            "Verification",
            [
                ("code", self.code(py).into_any()),
                ("key_id", key_id.into_bound_py_any(py)?),
            ],
        )
    }
}

/// Successful verifications of one key on one UTC day.
#[pyclass(frozen, eq, name = "DailyUsage", module = "keystead")]
#[derive(PartialEq)]
struct PyDailyUsage(DailyUsage);

#[pymethods]
impl PyDailyUsage {
    /// Midnight UTC at the start of the day.
    #[getter]
    fn day<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.0.day)
    }
    #[getter]
    fn count(&self) -> u64 {
        self.0.count
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr_of(
            "DailyUsage",
            [
                ("day", self.day(py)?),
                ("count", self.count().into_bound_py_any(py)?),
            ],
        )
    }
}

/// A `timedelta` of a non-negative `Duration` (saturating at `timedelta.max`'s days).
fn delta<'py>(py: Python<'py>, span: Duration) -> PyResult<Bound<'py, PyDelta>> {
    const DAY_SECS: u64 = 86_400;
    let days = i32::try_from(span.as_secs() / DAY_SECS).unwrap_or(999_999_999);
    let seconds = (span.as_secs() % DAY_SECS) as i32;
    let micros = span.subsec_micros() as i32;
    PyDelta::new(py, days, seconds, micros, false)
}

/// A snapshot of one store handle's counters (`KeyStore.stats()`; docs/metrics.md defines
/// every field).
#[pyclass(frozen, eq, name = "Stats", module = "keystead")]
#[derive(PartialEq)]
struct PyStats(Stats);

#[pymethods]
impl PyStats {
    /// Verifications by outcome code, every code present (zero if none).
    #[getter]
    fn outcomes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (outcome, count) in self.0.outcomes() {
            out.set_item(constant_str(py, outcome.as_str()), count)?;
        }
        Ok(out)
    }
    /// Verifications that ended in an outcome (the sum of `outcomes`).
    #[getter]
    fn verifications(&self) -> u64 {
        self.0.verifications()
    }
    #[getter]
    fn verify_errors(&self) -> u64 {
        self.0.verify_errors
    }
    #[getter]
    fn cache_hits(&self) -> u64 {
        self.0.cache_hits
    }
    #[getter]
    fn cache_misses(&self) -> u64 {
        self.0.cache_misses
    }
    #[getter]
    fn refreshes(&self) -> u64 {
        self.0.refreshes
    }
    #[getter]
    fn refresh_failures(&self) -> u64 {
        self.0.refresh_failures
    }
    #[getter]
    fn flushes(&self) -> u64 {
        self.0.flushes
    }
    #[getter]
    fn flush_failures(&self) -> u64 {
        self.0.flush_failures
    }
    #[getter]
    fn usage_pending(&self) -> u64 {
        self.0.usage_pending
    }
    #[getter]
    fn last_refresh_age<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDelta>>> {
        self.0
            .last_refresh_age
            .map(|age| delta(py, age))
            .transpose()
    }
    #[getter]
    fn cached_keys(&self) -> u64 {
        self.0.cached_keys
    }
    /// Every field by name (`outcomes` as a dict of its own).
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (name, value) in self.fields(py)? {
            out.set_item(name, value)?;
        }
        Ok(out)
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr_of("Stats", self.fields(py)?)
    }
}

impl PyStats {
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<[(&'static str, Bound<'py, PyAny>); 12]> {
        let s = &self.0;
        Ok([
            ("outcomes", self.outcomes(py)?.into_any()),
            ("verifications", s.verifications().into_bound_py_any(py)?),
            ("verify_errors", s.verify_errors.into_bound_py_any(py)?),
            ("cache_hits", s.cache_hits.into_bound_py_any(py)?),
            ("cache_misses", s.cache_misses.into_bound_py_any(py)?),
            ("refreshes", s.refreshes.into_bound_py_any(py)?),
            (
                "refresh_failures",
                s.refresh_failures.into_bound_py_any(py)?,
            ),
            ("flushes", s.flushes.into_bound_py_any(py)?),
            ("flush_failures", s.flush_failures.into_bound_py_any(py)?),
            ("usage_pending", s.usage_pending.into_bound_py_any(py)?),
            (
                "last_refresh_age",
                self.last_refresh_age(py)?.into_bound_py_any(py)?,
            ),
            ("cached_keys", s.cached_keys.into_bound_py_any(py)?),
        ])
    }
}

/// One entry of the audit log.
#[pyclass(frozen, eq, name = "AuditEntry", module = "keystead")]
#[derive(PartialEq)]
struct PyAuditEntry(AuditEntry);

#[pymethods]
impl PyAuditEntry {
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.0.at)
    }
    #[getter]
    fn actor(&self) -> Option<&str> {
        self.0.actor.as_deref()
    }
    /// `create`, `rename`, `set_scopes`, `set_metadata`, `set_expiry`, `disable`, `enable`,
    /// `revoke`, `rotate` or `delete`.
    #[getter]
    fn action(&self) -> &'static str {
        self.0.action.as_str()
    }
    #[getter]
    fn key_id(&self) -> String {
        self.0.key_id.to_string()
    }
    #[getter]
    fn detail(&self) -> &str {
        &self.0.detail
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr_of(
            "AuditEntry",
            [
                ("seq", self.seq().into_bound_py_any(py)?),
                ("action", self.action().into_bound_py_any(py)?),
                ("key_id", self.key_id().into_bound_py_any(py)?),
                ("detail", self.detail().into_bound_py_any(py)?),
            ],
        )
    }
}

/// One item of `create_many`: a mapping of `create`'s keyword arguments.
fn new_key_from_mapping(item: &Bound<'_, PyAny>, index: usize) -> PyResult<NewKey> {
    let Ok(mapping) = item.cast::<PyMapping>() else {
        return Err(PyTypeError::new_err(format!(
            "create_many: item {index} is not a mapping (a dict with name, scopes, metadata, \
             expires_at)"
        )));
    };
    let mut name = None;
    let (mut scopes, mut metadata, mut expires_at) = (None, None, None);
    for entry in mapping.items()?.iter() {
        let (field, value): (String, Bound<'_, PyAny>) = entry.extract()?;
        match field.as_str() {
            "name" => name = Some(value.extract::<String>()?),
            "scopes" => scopes = Some(value.extract::<Scopes>()?),
            "metadata" if value.is_none() => {}
            "metadata" => metadata = Some(value.extract::<Metadata>()?),
            "expires_at" if value.is_none() => {}
            "expires_at" => expires_at = Some(value.extract::<Timestamp>()?),
            _ => {
                // A field name is echoed only when short: a long one may be a pasted key.
                let shown = if field.chars().count() <= 16 {
                    format!(" `{}`", field.escape_debug())
                } else {
                    String::new()
                };
                return Err(invalid(format!(
                    "create_many: item {index} has an unknown field{shown} (expected name, \
                     scopes, metadata, expires_at)"
                )));
            }
        }
    }
    let Some(name) = name else {
        return Err(invalid(format!("create_many: item {index} has no name")));
    };
    let mut new = NewKey::new(name);
    if let Some(Scopes(scopes)) = scopes {
        new = new.scopes(scopes);
    }
    if let Some(Metadata(metadata)) = metadata {
        new = new.metadata(metadata);
    }
    if let Some(Timestamp(at)) = expires_at {
        new = new.expires_at(at);
    }
    Ok(new)
}

// ---- the store ----

/// A store of API keys in one file. Thread-safe; every call releases the GIL.
#[pyclass(frozen, name = "KeyStore", module = "keystead")]
struct PyKeyStore {
    /// `None` once closed. Calls hold the read lock (so they run concurrently); `close` takes
    /// the write lock, so it waits for calls in flight. Shared with `OPEN_STORES`.
    store: Arc<StoreSlot>,
    prefix: String,
}

type StoreSlot = RwLock<Option<keystead::KeyStore>>;

/// Every store opened in this process, for `_after_fork`. Only touched with the GIL held (at
/// open and in the at-fork hook), so no other thread holds it when the interpreter forks.
static OPEN_STORES: Mutex<Vec<Weak<StoreSlot>>> = Mutex::new(Vec::new());

/// Run in the child after `os.fork()` (registered with `os.register_at_fork` by the package):
/// makes each open store the child's own (`KeyStore::after_fork` — the child's usage flusher,
/// and no double counting of the usage the parent had pending). A store whose lock a thread of
/// the parent held at the fork is left alone (its flusher is still restarted at its next
/// refresh).
#[pyfunction]
fn _after_fork() {
    let stores = OPEN_STORES.lock().unwrap_or_else(PoisonError::into_inner);
    for slot in stores.iter().filter_map(Weak::upgrade) {
        if let Ok(guard) = slot.try_read() {
            if let Some(store) = guard.as_ref() {
                store.after_fork();
            }
        }
    }
}

impl PyKeyStore {
    /// Runs `op` on the open store with the GIL released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&keystead::KeyStore) -> keystead::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let guard = self.store.read().unwrap_or_else(PoisonError::into_inner);
            match guard.as_ref() {
                Some(store) => op(store),
                None => Err(Error::Closed),
            }
        })
        .map_err(to_py_err)
    }
}

#[pymethods]
impl PyKeyStore {
    #[new]
    #[pyo3(signature = (
        path, prefix = None, pepper = None, cache_size = None,
        *, actor = None, refresh_interval = None, max_staleness = None, flush_interval = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        prefix: Option<String>,
        pepper: Option<Pepper>,
        cache_size: Option<usize>,
        actor: Option<String>,
        refresh_interval: Option<Span>,
        max_staleness: Option<Span>,
        flush_interval: Option<Span>,
    ) -> PyResult<Self> {
        let mut options = Options::new();
        if let Some(prefix) = prefix {
            options = options.prefix(prefix);
        }
        if let Some(Pepper(pepper)) = pepper {
            options = options.pepper(pepper.to_vec());
        }
        if let Some(actor) = actor {
            options = options.actor(actor);
        }
        if let Some(Span(interval)) = refresh_interval {
            options = options.refresh_interval(interval);
        }
        if let Some(Span(staleness)) = max_staleness {
            options = options.max_staleness(staleness);
        }
        if let Some(Span(interval)) = flush_interval {
            options = options.flush_interval(interval);
        }
        let store = py
            .detach(|| match cache_size {
                // The page cache is a setting of the file backend, not of every store.
                Some(bytes) => keystead::KeyStore::open_with(
                    keystead::backend::FileBackend::for_location(
                        &path,
                        keystead::backend::FileOptions::new().cache_size(bytes),
                    )?,
                    options,
                ),
                None => keystead::KeyStore::open(&path, options),
            })
            .map_err(to_py_err)?;
        let prefix = store.prefix().to_owned();
        let slot = Arc::new(RwLock::new(Some(store)));
        let mut open = OPEN_STORES.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|weak| weak.strong_count() > 0);
        open.push(Arc::downgrade(&slot));
        drop(open);
        Ok(PyKeyStore {
            prefix,
            store: slot,
        })
    }

    /// The prefix of every key this store issues, e.g. `ks`.
    #[getter]
    fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `close()` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    #[pyo3(signature = (name, *, scopes = Scopes::default(), metadata = None, expires_at = None))]
    fn create(
        &self,
        py: Python<'_>,
        name: String,
        scopes: Scopes,
        metadata: Option<Metadata>,
        expires_at: Option<Timestamp>,
    ) -> PyResult<PyCreatedKey> {
        let mut new = NewKey::new(name).scopes(scopes.0);
        if let Some(Metadata(metadata)) = metadata {
            new = new.metadata(metadata);
        }
        if let Some(Timestamp(at)) = expires_at {
            new = new.expires_at(at);
        }
        self.run(py, |s| s.create(new)).map(PyCreatedKey::from)
    }

    /// Creates many keys in one transaction: all of them, or none if any is invalid. Each item
    /// is a mapping with `create`'s arguments: `name` (required), `scopes`, `metadata`,
    /// `expires_at`. Returns the created keys in the same order.
    fn create_many(&self, py: Python<'_>, keys: Bound<'_, PyAny>) -> PyResult<Vec<PyCreatedKey>> {
        if keys.is_instance_of::<PyString>()
            || keys.is_instance_of::<PyBytes>()
            || keys.cast::<PyMapping>().is_ok()
        {
            return Err(PyTypeError::new_err(
                "create_many takes an iterable (e.g. a list) of mappings, one per key",
            ));
        }
        let mut batch = Vec::new();
        for (index, item) in keys.try_iter()?.enumerate() {
            batch.push(new_key_from_mapping(&item?, index)?);
        }
        let created = self.run(py, |s| s.create_many(batch))?;
        Ok(created.into_iter().map(PyCreatedKey::from).collect())
    }

    fn get(&self, py: Python<'_>, id: &str) -> PyResult<Option<PyKeyInfo>> {
        let id = key_id(id)?;
        Ok(self.run(py, |s| s.get(id))?.map(PyKeyInfo::from))
    }

    #[pyo3(signature = (
        *, status = None, scope = None, name_prefix = None, expiring_within = None,
        after = None, limit = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn list(
        &self,
        py: Python<'_>,
        status: Option<&str>,
        scope: Option<String>,
        name_prefix: Option<String>,
        expiring_within: Option<Span>,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> PyResult<Vec<PyKeyInfo>> {
        let mut filter = ListFilter::new();
        if let Some(status) = status {
            filter = filter.status(KeyStatus::parse(status).map_err(to_py_err)?);
        }
        if let Some(scope) = scope {
            filter = filter.scope(scope);
        }
        if let Some(prefix) = name_prefix {
            filter = filter.name_prefix(prefix);
        }
        if let Some(Span(within)) = expiring_within {
            filter = filter.expiring_within(within);
        }
        if let Some(after) = after {
            filter = filter.after(key_id(after)?);
        }
        if let Some(limit) = limit {
            filter = filter.limit(limit);
        }
        let keys = self.run(py, |s| s.list(&filter))?;
        Ok(keys.into_iter().map(PyKeyInfo::from).collect())
    }

    fn rename(&self, py: Python<'_>, id: &str, name: &str) -> PyResult<PyKeyInfo> {
        let id = key_id(id)?;
        self.run(py, |s| s.rename(id, name)).map(PyKeyInfo::from)
    }

    fn set_metadata(&self, py: Python<'_>, id: &str, metadata: Metadata) -> PyResult<PyKeyInfo> {
        let id = key_id(id)?;
        self.run(py, |s| s.set_metadata(id, metadata.0))
            .map(PyKeyInfo::from)
    }

    fn set_scopes(&self, py: Python<'_>, id: &str, scopes: Scopes) -> PyResult<PyKeyInfo> {
        let id = key_id(id)?;
        self.run(py, |s| s.set_scopes(id, &scopes.0))
            .map(PyKeyInfo::from)
    }

    fn set_expiry(
        &self,
        py: Python<'_>,
        id: &str,
        expires_at: Option<Timestamp>,
    ) -> PyResult<PyKeyInfo> {
        let id = key_id(id)?;
        let at = expires_at.map(|Timestamp(at)| at);
        self.run(py, |s| s.set_expiry(id, at)).map(PyKeyInfo::from)
    }

    fn disable(&self, py: Python<'_>, id: &str) -> PyResult<PyKeyInfo> {
        let id = key_id(id)?;
        self.run(py, |s| s.disable(id)).map(PyKeyInfo::from)
    }

    fn enable(&self, py: Python<'_>, id: &str) -> PyResult<PyKeyInfo> {
        let id = key_id(id)?;
        self.run(py, |s| s.enable(id)).map(PyKeyInfo::from)
    }

    fn revoke(&self, py: Python<'_>, id: &str) -> PyResult<PyKeyInfo> {
        let id = key_id(id)?;
        self.run(py, |s| s.revoke(id)).map(PyKeyInfo::from)
    }

    #[pyo3(signature = (id, grace = Span(Duration::ZERO)))]
    fn rotate(&self, py: Python<'_>, id: &str, grace: Span) -> PyResult<PyCreatedKey> {
        let id = key_id(id)?;
        let grace = grace.0;
        self.run(py, |s| s.rotate(id, grace))
            .map(PyCreatedKey::from)
    }

    fn delete(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = key_id(id)?;
        self.run(py, |s| s.delete(id))
    }

    #[pyo3(signature = (key, scopes = RequiredScopes::NONE))]
    fn verify(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyString>,
        scopes: RequiredScopes<'_, '_>,
    ) -> PyResult<PyVerification> {
        // A str with lone surrogates has no UTF-8 form and cannot hold a key: its lossy form
        // (replacement characters) is `malformed`, as in `verify_header`. No exception for a
        // presented value.
        let key = match key.to_str() {
            Ok(key) => Cow::Borrowed(key),
            Err(_) => key.to_string_lossy(),
        };
        with_required_scopes(scopes, |scopes| self.run(py, |s| s.verify(&key, scopes)))
            .map(PyVerification)
    }

    #[pyo3(signature = (value, scopes = RequiredScopes::NONE))]
    fn verify_header(
        &self,
        py: Python<'_>,
        value: Option<&Bound<'_, PyAny>>,
        scopes: RequiredScopes<'_, '_>,
    ) -> PyResult<PyVerification> {
        let header = header_bytes(value)?;
        with_required_scopes(scopes, |scopes| {
            self.run(py, |s| s.verify_header(&*header, scopes))
        })
        .map(PyVerification)
    }

    /// Daily counts of successful verifications for the UTC days from `since` to `until`
    /// inclusive (`from`/`to` in core; `from` is a Python keyword).
    fn usage(
        &self,
        py: Python<'_>,
        id: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> PyResult<Vec<PyDailyUsage>> {
        let id = key_id(id)?;
        let days = self.run(py, |s| s.usage(id, since.0, until.0))?;
        Ok(days.into_iter().map(PyDailyUsage).collect())
    }

    #[pyo3(signature = (since = None, limit = DEFAULT_AUDIT_LIMIT))]
    fn audit(
        &self,
        py: Python<'_>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> PyResult<Vec<PyAuditEntry>> {
        let since = since.map(|Timestamp(t)| t);
        let entries = self.run(py, |s| s.audit(since, limit))?;
        Ok(entries.into_iter().map(PyAuditEntry).collect())
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, keystead::KeyStore::flush)
    }

    /// A snapshot of this handle's counters (cheap: no store access).
    fn stats(&self, py: Python<'_>) -> PyResult<PyStats> {
        Ok(PyStats(self.run(py, |s| Ok(s.stats()))?))
    }

    /// Flushes usage and closes the store; later calls raise `ClosedError`. Closing twice is a
    /// no-op.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let taken = self
                .store
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            taken.map_or(Ok(()), keystead::KeyStore::close)
        })
        .map_err(to_py_err)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (_exc_type = None, _exc = None, _traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr_of(
            "KeyStore",
            [
                ("prefix", self.prefix().into_bound_py_any(py)?),
                ("closed", self.closed().into_bound_py_any(py)?),
            ],
        )
    }
}

#[pymodule]
#[pyo3(name = "_keystead")]
fn keystead_python(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyKeyStore>()?;
    m.add_class::<PyKeyInfo>()?;
    m.add_class::<PyCreatedKey>()?;
    m.add_class::<PyVerification>()?;
    m.add_class::<PyDailyUsage>()?;
    m.add_class::<PyAuditEntry>()?;
    m.add_class::<PyStats>()?;
    m.add_function(wrap_pyfunction!(_error_classes, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(_validate_scopes, m)?)?;
    Ok(())
}
