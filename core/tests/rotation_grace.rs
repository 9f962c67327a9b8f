//! A rotated key's grace period can only be shortened (issue 12, item 6): clearing its expiry
//! or setting a later one would revive a key that has been replaced.

mod common;

use std::time::{Duration, SystemTime};

use keystead::{Error, KeyStatus, NewKey};

const HOUR: Duration = Duration::from_secs(3600);

fn a_rotated_key_cannot_have_its_expiry_cleared_or_extended() {
    let t = common::open_new();
    let old = t.store.create(NewKey::new("svc")).unwrap().info().id();
    t.store.rotate(old, HOUR).unwrap();
    let grace_end = t.store.get(old).unwrap().unwrap().expires_at().unwrap();

    let err = t.store.set_expiry(old, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidState {
                state: "rotated",
                ..
            }
        ),
        "{err:?}"
    );
    let later = grace_end + HOUR * 24 * 365;
    let err = t.store.set_expiry(old, Some(later)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidState {
                state: "rotated",
                ..
            }
        ),
        "{err:?}"
    );
    // Still ends when the grace period ends.
    assert_eq!(
        t.store.get(old).unwrap().unwrap().expires_at(),
        Some(grace_end)
    );
}

fn a_rotated_key_can_have_its_grace_shortened_or_kept() {
    let t = common::open_new();
    let old = t.store.create(NewKey::new("svc")).unwrap().info().id();
    let new = t.store.rotate(old, HOUR * 24).unwrap().info().id();
    let grace_end = t.store.get(old).unwrap().unwrap().expires_at().unwrap();
    // The same expiry: nothing changes.
    let info = t.store.set_expiry(old, Some(grace_end)).unwrap();
    assert_eq!(info.expires_at(), Some(grace_end));
    // Sooner: allowed.
    let sooner = SystemTime::now() + HOUR;
    let info = t.store.set_expiry(old, Some(sooner)).unwrap();
    assert!(info.expires_at().unwrap() < grace_end);
    assert_eq!(info.status(), KeyStatus::Active);
    // And then not back to the original end.
    assert!(t.store.set_expiry(old, Some(grace_end)).is_err());
    // The replacement key is not restricted.
    t.store.set_expiry(new, Some(grace_end + HOUR)).unwrap();
    t.store.set_expiry(new, None).unwrap();
}

common::every_backend!(
    a_rotated_key_cannot_have_its_expiry_cleared_or_extended,
    a_rotated_key_can_have_its_grace_shortened_or_kept,
);
