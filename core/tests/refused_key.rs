//! Issue 12, item 9: a refused verification carries the key's id (for logs), never its info,
//! so code that checks "has a key" instead of "is valid" cannot admit a refused key.

mod common;

use std::time::{Duration, SystemTime};

use keystead::{NewKey, Outcome};

#[test]
fn only_a_valid_verification_carries_the_key() {
    let t = common::open_new();
    let s = &t.store;
    let scoped = |name: &str| NewKey::new(name).scopes(["chat:completions"]);

    let valid = s.create(scoped("valid")).unwrap();
    let v = s.verify(valid.key(), &["chat:completions"]).unwrap();
    assert_eq!(v.outcome(), Outcome::Valid);
    assert_eq!(v.key().map(|k| k.id()), Some(valid.info().id()));
    assert_eq!(v.key_id(), Some(valid.info().id()));

    let v = s.verify(valid.key(), &["images:generate"]).unwrap();
    assert_eq!(v.outcome(), Outcome::InsufficientScope);
    assert!(v.key().is_none(), "insufficient_scope carried the key");
    assert_eq!(v.key_id(), Some(valid.info().id()));

    let disabled = s.create(scoped("disabled")).unwrap();
    s.disable(disabled.info().id()).unwrap();
    let revoked = s.create(scoped("revoked")).unwrap();
    s.revoke(revoked.info().id()).unwrap();
    // An expiry 100 ms ahead. Should the machine stall past it before the create checks it,
    // the create is refused (an expiry in the past) and retried further ahead; then wait until
    // the expiry has passed, by the clock rather than by a fixed sleep.
    let mut ahead = Duration::from_millis(100);
    let expiring = loop {
        let at = SystemTime::now() + ahead;
        match s.create(scoped("expired").expires_at(at)) {
            Ok(created) => break created,
            Err(keystead::Error::InvalidArgument(_)) if SystemTime::now() >= at => ahead *= 2,
            Err(e) => panic!("{e}"),
        }
    };
    let expires_at = expiring.info().expires_at().unwrap();
    while SystemTime::now() <= expires_at {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (created, outcome) in [
        (&disabled, Outcome::Disabled),
        (&revoked, Outcome::Revoked),
        (&expiring, Outcome::Expired),
    ] {
        let v = s.verify(created.key(), &[]).unwrap();
        assert_eq!(v.outcome(), outcome);
        assert!(v.key().is_none(), "{outcome} carried the key");
        assert_eq!(v.key_id(), Some(created.info().id()), "{outcome}");
        assert!(format!("{v:?}").contains(&created.info().id().to_string()));
    }

    // No id where the secret did not match.
    for presented in [
        common::wrong_secret(revoked.key()),
        common::unknown_id(valid.key()),
        "ks_typo".to_owned(),
        String::new(),
    ] {
        let v = s.verify(&presented, &[]).unwrap();
        assert!(
            v.key().is_none() && v.key_id().is_none(),
            "{:?}",
            v.outcome()
        );
    }
}
