//! Rotation: the replacement works at once, the old key for the grace period only.

mod common;
mod support;

use std::time::{Duration, SystemTime};

use common::open_new;
use keystead::{Error, KeyStatus, NewKey, Outcome};

fn old_key_works_during_grace_and_links_both_ways() {
    let t = open_new();
    let s = &t.store;
    let old = s
        .create(
            NewKey::new("svc")
                .scopes(["chat:completions"])
                .metadata([("team", "a")]),
        )
        .unwrap();
    let old_id = old.info().id();
    let before = SystemTime::now();
    let new = s.rotate(old_id, Duration::from_secs(3600)).unwrap();
    let after = SystemTime::now();
    assert_ne!(new.key(), old.key());
    assert_eq!(new.info().name(), "svc");
    assert_eq!(new.info().scopes(), ["chat:completions"]);
    assert_eq!(new.info().metadata()["team"], "a");
    assert_eq!(new.info().replaces(), Some(old_id));
    assert_eq!(new.info().expires_at(), None);

    for key in [old.key(), new.key()] {
        assert_eq!(
            s.verify(key, &["chat:completions"]).unwrap().outcome(),
            Outcome::Valid
        );
    }
    let old_info = s.get(old_id).unwrap().unwrap();
    assert_eq!(old_info.replaced_by(), Some(new.info().id()));
    // The grace ends an hour after the rotate's clock read (kept in whole milliseconds).
    let end = old_info.expires_at().unwrap();
    let hour = Duration::from_secs(3600);
    assert!(end + Duration::from_millis(1) > before + hour && end <= after + hour);
    assert!(matches!(
        s.rotate(old_id, Duration::ZERO),
        Err(Error::InvalidState {
            state: "rotated",
            ..
        })
    ));
}

fn grace_ends_the_old_key() {
    let t = open_new();
    let s = &t.store;
    let old = s.create(NewKey::new("svc")).unwrap();
    let new = s
        .rotate(old.info().id(), Duration::from_millis(300))
        .unwrap();
    let grace_end = s
        .get(old.info().id())
        .unwrap()
        .unwrap()
        .expires_at()
        .expect("the old key got the grace period as its expiry");
    // Valid while the grace runs, expired from its end: checked by the clock on every verify.
    let valid = support::check_expiry_rule(s, old.key(), grace_end);
    println!("grace_ends_the_old_key: {valid} verifies answered valid during the grace");
    assert_eq!(s.verify(new.key(), &[]).unwrap().outcome(), Outcome::Valid);
}

fn zero_grace_ends_the_old_key_at_once() {
    let t = open_new();
    let s = &t.store;
    let old = s.create(NewKey::new("svc")).unwrap();
    s.rotate(old.info().id(), Duration::ZERO).unwrap();
    assert_eq!(
        s.verify(old.key(), &[]).unwrap().outcome(),
        Outcome::Expired
    );
    assert_eq!(
        s.get(old.info().id()).unwrap().unwrap().status(),
        KeyStatus::Expired
    );
}

fn grace_never_extends_an_earlier_expiry() {
    let t = open_new();
    let s = &t.store;
    let soon = SystemTime::now() + Duration::from_secs(60);
    let old = s.create(NewKey::new("svc").expires_at(soon)).unwrap();
    s.rotate(old.info().id(), Duration::from_secs(86_400))
        .unwrap();
    let end = s
        .get(old.info().id())
        .unwrap()
        .unwrap()
        .expires_at()
        .unwrap();
    assert!(end <= soon + Duration::from_millis(1));
}

fn a_disabled_key_can_be_rotated_and_the_new_one_is_active() {
    let t = open_new();
    let s = &t.store;
    let old = s.create(NewKey::new("svc")).unwrap();
    s.disable(old.info().id()).unwrap();
    let new = s.rotate(old.info().id(), Duration::from_secs(60)).unwrap();
    assert_eq!(
        s.verify(old.key(), &[]).unwrap().outcome(),
        Outcome::Disabled
    );
    assert_eq!(s.verify(new.key(), &[]).unwrap().outcome(), Outcome::Valid);
}

common::every_backend!(
    old_key_works_during_grace_and_links_both_ways,
    grace_ends_the_old_key,
    zero_grace_ends_the_old_key_at_once,
    grace_never_extends_an_earlier_expiry,
    a_disabled_key_can_be_rotated_and_the_new_one_is_active,
);
