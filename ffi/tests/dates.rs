//! Times through the FFI, which carries them as `i64` milliseconds so that the generated Swift
//! has no conversion that can trap: far-future times (issue 12, item 4) and negative durations
//! are a typed `InvalidArgument`, never a panic, and the extremes of `i64` are handled.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::ms;

use common::{new_key, open_temp, quiet};
use keystead_ffi::KeysteadError;

const DAY: Duration = Duration::from_secs(86_400);

fn year_10000() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(253_402_300_800)
}

#[test]
fn far_future_times_are_invalid_arguments() {
    let (_dir, _path, store) = open_temp(quiet());
    let id = store.create(new_key("far")).unwrap().info.id;
    let err = store
        .rotate(id.clone(), (DAY * 200_000_000).as_millis() as i64)
        .unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store.rotate(id.clone(), i64::MAX).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store
        .set_expiry(id.clone(), Some(ms(year_10000())))
        .unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let mut far = new_key("far2");
    far.expires_at_ms = Some(ms(year_10000()));
    let err = store.create(far).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store.usage(id.clone(), 0, ms(year_10000())).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store.audit(Some(ms(year_10000())), 10).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let info = store.get(id).unwrap().unwrap();
    assert_eq!(info.expires_at_ms, None);
    assert_eq!(info.replaced_by, None);
}

#[test]
fn the_extremes_of_i64_and_negative_durations_are_typed_errors() {
    let (_dir, _path, store) = open_temp(quiet());
    let id = store.create(new_key("edges")).unwrap().info.id;
    let invalid =
        |r: Result<_, KeysteadError>| matches!(r, Err(KeysteadError::InvalidArgument { .. }));
    assert!(invalid(store.rotate(id.clone(), -1).map(drop)));
    assert!(invalid(store.rotate(id.clone(), i64::MIN).map(drop)));
    for at in [i64::MAX, i64::MIN, -1, 0] {
        assert!(
            invalid(store.set_expiry(id.clone(), Some(at)).map(drop)),
            "{at}"
        );
        let mut key = new_key("edge");
        key.expires_at_ms = Some(at);
        assert!(invalid(store.create(key).map(drop)), "{at}");
    }
    assert!(invalid(
        store.usage(id.clone(), i64::MIN, i64::MAX).map(drop)
    ));
    assert!(store.usage(id.clone(), i64::MIN, 0).unwrap().is_empty());
    assert!(invalid(store.audit(Some(i64::MAX), 10).map(drop)));
    assert_eq!(store.audit(Some(i64::MIN), 10).unwrap().len(), 1);
    let negative = keystead_ffi::OpenOptions {
        refresh_interval_ms: Some(-5),
        ..quiet()
    };
    let err = keystead_ffi::KeyStore::open("memory:".into(), negative).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("refresh_interval_ms"), "{err}");
    let negative = keystead_ffi::OpenOptions {
        max_staleness_ms: Some(-1),
        ..quiet()
    };
    let err = keystead_ffi::KeyStore::open("memory:".into(), negative).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_staleness_ms"), "{err}");
    for staleness in [0, 5_000, i64::MAX] {
        let valid = keystead_ffi::OpenOptions {
            max_staleness_ms: Some(staleness),
            ..quiet()
        };
        let opened = keystead_ffi::KeyStore::open("memory:".into(), valid).unwrap();
        opened.close().unwrap();
    }
    let filter = keystead_ffi::ListFilter {
        expiring_within_ms: Some(-1),
        ..Default::default()
    };
    assert!(invalid(store.list(filter).map(drop)));
    // A time in range round-trips to the millisecond.
    let at = ms(SystemTime::now() + Duration::from_secs(3600)) + 123;
    assert_eq!(
        store
            .set_expiry(id.clone(), Some(at))
            .unwrap()
            .expires_at_ms,
        Some(at)
    );
}
