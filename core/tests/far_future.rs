//! Far-future dates (issue 12, item 4): the store refuses any time after
//! 9999-12-31T23:59:59Z with a typed error, so no binding is ever handed a date it cannot
//! represent (chrono, JavaScript `Date` and Python `datetime` all have limits).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keystead::{Error, KeyStatus, NewKey};

/// 9999-12-31T23:59:59Z.
const LATEST_SECS: u64 = 253_402_300_799;

fn latest() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LATEST_SECS)
}

/// 10000-01-01T00:00:00Z.
fn year_10000() -> SystemTime {
    latest() + Duration::from_secs(1)
}

const DAY: Duration = Duration::from_secs(86_400);

fn rotate_with_a_grace_ending_after_9999_is_refused() {
    let t = common::open_new();
    let old = t.store.create(NewKey::new("grace")).unwrap();
    let id = old.info().id();
    let err = t.store.rotate(id, DAY * 200_000_000).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("9999-12-31T23:59:59Z"), "{err}");
    // Nothing changed: no replacement, the old key as it was.
    let info = t.store.get(id).unwrap().unwrap();
    assert_eq!(info.replaced_by(), None);
    assert_eq!(info.expires_at(), None);
    assert_eq!(info.status(), KeyStatus::Active);
    assert_eq!(t.store.list(&Default::default()).unwrap().len(), 1);
    // The largest Duration too (no overflow on the way).
    let err = t.store.rotate(id, Duration::MAX).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // A long grace within the range is still fine.
    t.store.rotate(id, DAY * 365 * 100).unwrap();
}

fn set_expiry_in_the_year_10000_is_refused() {
    let t = common::open_new();
    let id = t.store.create(NewKey::new("far")).unwrap().info().id();
    let err = t.store.set_expiry(id, Some(year_10000())).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(t.store.get(id).unwrap().unwrap().expires_at(), None);
    let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
    let err = t.store.set_expiry(id, Some(far)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // The last second of 9999 is the latest accepted expiry.
    let info = t.store.set_expiry(id, Some(latest())).unwrap();
    assert_eq!(info.expires_at(), Some(latest()));
}

fn create_with_an_expiry_in_the_year_10000_is_refused() {
    let t = common::open_new();
    let new = NewKey::new("far").expires_at(year_10000());
    assert!(matches!(new.validate(), Err(Error::InvalidArgument(_))));
    let err = t.store.create(new).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(t.store.list(&Default::default()).unwrap().is_empty());
}

fn usage_and_audit_bounds_after_9999_are_refused() {
    let t = common::open_new();
    let id = t.store.create(NewKey::new("u")).unwrap().info().id();
    let err = t.store.usage(id, UNIX_EPOCH, year_10000()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = t.store.audit(Some(year_10000()), 10).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(t.store.usage(id, UNIX_EPOCH, latest()).unwrap().is_empty());
    assert!(t.store.audit(Some(latest()), 10).unwrap().is_empty());
}

common::every_backend!(
    rotate_with_a_grace_ending_after_9999_is_refused,
    set_expiry_in_the_year_10000_is_refused,
    create_with_an_expiry_in_the_year_10000_is_refused,
    usage_and_audit_bounds_after_9999_are_refused,
);
