//! The one mapping from core errors to JS errors, and JS dates and durations.

use crate::*;

/// The stable `code` of the JS error thrown for a core error: the code of its kind
/// ([`ErrorKind::code`]), so this binding's table is core's (README's "Errors" lists each one).
pub(crate) fn error_code(err: &keystead::Error) -> &'static str {
    err.kind().code()
}

/// The one mapping from core errors to JS errors. Core messages never contain key material.
pub(crate) fn to_js_error(err: keystead::Error) -> napi::Error<&'static str> {
    napi::Error::new(error_code(&err), err.to_string())
}

pub(crate) const INVALID: &str = ErrorKind::InvalidArgument.code();
pub(crate) const STORE: &str = ErrorKind::Store.code();

pub(crate) fn closed() -> napi::Error<&'static str> {
    to_js_error(keystead::Error::Closed)
}

pub(crate) fn invalid(message: impl Into<String>) -> napi::Error<&'static str> {
    napi::Error::new(INVALID, message.into())
}

pub(crate) fn core<T>(result: keystead::Result<T>) -> Result<T> {
    result.map_err(to_js_error)
}

pub(crate) fn key_id(text: &str) -> Result<KeyId> {
    core(text.parse::<KeyId>())
}

pub(crate) fn millis(name: &str, value: i64) -> Result<Duration> {
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
pub(crate) fn to_date(time: SystemTime) -> Result<DateTime<Utc>> {
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

pub(crate) fn opt_date(time: Option<SystemTime>) -> Result<Option<DateTime<Utc>>> {
    time.map(to_date).transpose()
}

/// A JavaScript `Date` as given (milliseconds since the epoch, NaN for an invalid Date).
/// napi-rs's own `DateTime` conversion turns an invalid Date into 1970-01-01 without a word;
/// this keeps the value so that [`JsDate::time`] can refuse it. (napi-rs names the
/// TypeScript type of a type called `JsDate` `Date`.)
pub struct JsDate(pub(crate) f64);

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
    pub(crate) fn time(&self, name: &str) -> Result<SystemTime> {
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
