//! Node.js binding of keystead: a thin napi-rs wrapper over the core crate.
//!
//! Every rule (validation, hashing, verification, storage) lives in `keystead`; this crate only
//! converts between JavaScript values and core types, and maps [`keystead::Error`] to JS errors
//! with a stable `code` in one place ([`error_code`] / [`to_js_error`]).
//!
//! `verify` / `verifyHeader` are the hot path: at load, [`install_fast_verify`] replaces the
//! napi-rs methods with the JavaScript ones of `src/fast_verify.js`, which call plain Node-API
//! functions ([`verify_key_raw`], [`verify_header_raw`]) and decode the key lazily.
//!
//! This file only wires the modules together (they share its imports through `use crate::*`)
//! and holds the unit tests:
//! - `convert`: core errors to JS errors (the one table), JS dates and durations;
//! - `api`: the napi-rs API, the JS-facing objects and the `KeyStore` class;
//! - `verify_path`: the raw Node-API verify path and the tables it hands the script;
//! - `tasks`: the async tasks behind `createAsync`, `rotateAsync`, `revokeAsync`, `flushAsync`.

mod api;
mod convert;
mod tasks;
mod verify_path;

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

pub use api::*;
pub use convert::*;
pub use tasks::*;
pub use verify_path::*;

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
            (
                keystead::Error::StoreUnavailable("connection refused".into()),
                "KEYSTEAD_UNAVAILABLE",
            ),
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
        let source = [
            include_str!("lib.rs"),
            include_str!("api.rs"),
            include_str!("convert.rs"),
            include_str!("tasks.rs"),
            include_str!("verify_path.rs"),
        ]
        .join("\n");
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
