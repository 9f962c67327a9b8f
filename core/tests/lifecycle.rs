//! The admin operations and every verification outcome.

mod common;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use common::{open_new, unknown_id, wrong_secret};
use keystead::{AuditAction, Error, KeyStatus, ListFilter, NewKey, Outcome};

fn every_outcome_code_is_reachable() {
    let t = open_new();
    let s = &t.store;
    let key = s
        .create(NewKey::new("chat").scopes(["chat:completions"]))
        .unwrap();
    let id = key.info().id();

    let mut seen = std::collections::BTreeSet::new();
    let mut check = |outcome: Outcome, expected: Outcome, status: u16| {
        assert_eq!(outcome, expected);
        assert_eq!(expected.http_status(), status);
        seen.insert(expected.as_str());
    };
    let v = s.verify(key.key(), &["chat:completions"]).unwrap();
    check(v.outcome(), Outcome::Valid, 200);
    assert_eq!(v.key().unwrap().id(), id);
    assert_eq!(v.www_authenticate(), None);

    let v = s.verify_header("", &[]).unwrap();
    check(v.outcome(), Outcome::Missing, 401);
    assert_eq!(v.www_authenticate().as_deref(), Some("Bearer"));
    assert!(v.key().is_none());

    let v = s.verify_header("Bearer nope", &[]).unwrap();
    check(v.outcome(), Outcome::Malformed, 400);
    assert_eq!(
        v.www_authenticate().as_deref(),
        Some("Bearer error=\"invalid_request\"")
    );

    let v = s.verify(&wrong_secret(key.key()), &[]).unwrap();
    check(v.outcome(), Outcome::NotFound, 401);
    assert!(v.key().is_none(), "a wrong secret must not reveal the key");
    assert_eq!(
        v.www_authenticate().as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    let v = s.verify(&unknown_id(key.key()), &[]).unwrap();
    check(v.outcome(), Outcome::NotFound, 401);

    let v = s.verify(key.key(), &["images:generate"]).unwrap();
    check(v.outcome(), Outcome::InsufficientScope, 403);
    assert_eq!(
        v.www_authenticate().as_deref(),
        Some("Bearer error=\"insufficient_scope\", scope=\"images:generate\"")
    );

    s.disable(id).unwrap();
    check(
        s.verify(key.key(), &[]).unwrap().outcome(),
        Outcome::Disabled,
        401,
    );
    s.enable(id).unwrap();
    check(
        s.verify(key.key(), &[]).unwrap().outcome(),
        Outcome::Valid,
        200,
    );

    // An expiry 300 ms ahead; should the machine stall past it before the create, the create is
    // refused (an expiry in the past) and retried further ahead.
    let mut ahead = Duration::from_millis(300);
    let short = loop {
        let at = SystemTime::now() + ahead;
        match s.create(NewKey::new("short").expires_at(at)) {
            Ok(created) => break created,
            Err(Error::InvalidArgument(_)) if SystemTime::now() >= at => ahead *= 2,
            Err(e) => panic!("{e}"),
        }
    };
    // Valid before its expiry and expired from it, checked by the clock on every verify.
    support::check_expiry_rule(s, short.key(), short.info().expires_at().unwrap());
    check(
        s.verify(short.key(), &[]).unwrap().outcome(),
        Outcome::Expired,
        401,
    );

    s.revoke(id).unwrap();
    let v = s.verify(key.key(), &[]).unwrap();
    check(v.outcome(), Outcome::Revoked, 401);
    // A refused verification names the key by id only.
    assert!(v.key().is_none());
    assert_eq!(v.key_id(), Some(id));
    assert_eq!(seen.len(), 8, "{seen:?}");
}

fn status_is_only_revealed_after_the_secret_matched() {
    let t = open_new();
    let key = t.store.create(NewKey::new("x")).unwrap();
    t.store.revoke(key.info().id()).unwrap();
    let v = t.store.verify(&wrong_secret(key.key()), &[]).unwrap();
    assert_eq!(v.outcome(), Outcome::NotFound);
    assert!(v.key().is_none());
}

fn key_of_another_store_prefix_is_malformed() {
    let t = open_new();
    let key = t.store.create(NewKey::new("x")).unwrap();
    let other = format!("hub{}", &key.key()[2..]);
    assert_eq!(
        t.store.verify(&other, &[]).unwrap().outcome(),
        Outcome::Malformed
    );
}

fn create_validates_its_arguments() {
    let t = open_new();
    let s = &t.store;
    let invalid = |r: keystead::Result<keystead::CreatedKey>| {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}")
    };
    invalid(s.create(NewKey::new("")));
    invalid(s.create(NewKey::new("   ")));
    invalid(s.create(NewKey::new("x".repeat(129))));
    invalid(s.create(NewKey::new("tab\tname")));
    invalid(s.create(NewKey::new("evil\u{202E}txt.exe")));
    invalid(s.create(NewKey::new("x").scopes(["has space"])));
    invalid(s.create(NewKey::new("x").scopes([""])));
    invalid(s.create(NewKey::new("x").scopes(["a".repeat(65)])));
    invalid(s.create(NewKey::new("x").scopes((0..33).map(|i| format!("s{i}")))));
    invalid(s.create(NewKey::new("x").metadata([("", "v")])));
    invalid(s.create(NewKey::new("x").metadata([("k", "v".repeat(1025))])));
    invalid(s.create(NewKey::new("x").metadata((0..33).map(|i| (format!("k{i}"), "v")))));
    invalid(
        s.create(NewKey::new("x").metadata((0..8).map(|i| (format!("k{i}"), "v".repeat(1000))))),
    );
    invalid(s.create(NewKey::new("x").expires_at(SystemTime::now() - Duration::from_secs(1))));
    // The limits themselves are accepted.
    s.create(
        NewKey::new("é".repeat(128))
            .scopes((0..32).map(|i| format!("scope:{i}")))
            .metadata([("k", "v".repeat(1024))]),
    )
    .unwrap();
    assert_eq!(
        s.list(&ListFilter::new()).unwrap().len(),
        1,
        "nothing half-written"
    );
}

fn scopes_are_sorted_and_deduplicated() {
    let t = open_new();
    let key = t
        .store
        .create(NewKey::new("x").scopes(["b", "a", "b"]))
        .unwrap();
    assert_eq!(key.info().scopes(), ["a", "b"]);
    let info = t.store.set_scopes(key.info().id(), &["z", "y"]).unwrap();
    assert_eq!(info.scopes(), ["y", "z"]);
    assert_eq!(
        t.store.verify(key.key(), &["y", "z"]).unwrap().outcome(),
        Outcome::Valid
    );
    assert_eq!(
        t.store.verify(key.key(), &["a"]).unwrap().outcome(),
        Outcome::InsufficientScope
    );
    assert!(matches!(
        t.store.verify(key.key(), &["bad scope\""]),
        Err(Error::InvalidArgument(_))
    ));
}

fn admin_setters_change_what_get_returns() {
    let t = open_new();
    let s = &t.store;
    let key = s
        .create(NewKey::new("before").metadata([("team", "a")]))
        .unwrap();
    let id = key.info().id();
    assert_eq!(s.rename(id, "after").unwrap().name(), "after");
    let meta: BTreeMap<String, String> = [("team".to_string(), "b".to_string())].into();
    s.set_metadata(id, meta.clone()).unwrap();
    let at = SystemTime::now() + Duration::from_secs(3600);
    s.set_expiry(id, Some(at)).unwrap();
    let info = s.get(id).unwrap().unwrap();
    assert_eq!(info.name(), "after");
    assert_eq!(info.metadata(), &meta);
    // Kept in whole milliseconds since the epoch: `at` cut to the millisecond.
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(
        info.expires_at().unwrap(),
        std::time::UNIX_EPOCH + Duration::from_millis(at_ms)
    );
    assert!(info.updated_at() >= info.created_at());
    s.set_expiry(id, None).unwrap();
    assert_eq!(s.get(id).unwrap().unwrap().expires_at(), None);
    assert!(matches!(
        s.set_expiry(id, Some(SystemTime::now() - Duration::from_secs(5))),
        Err(Error::InvalidArgument(_))
    ));
}

fn revoked_is_permanent_and_idempotent() {
    let t = open_new();
    let s = &t.store;
    let id = s.create(NewKey::new("x")).unwrap().info().id();
    s.revoke(id).unwrap();
    s.revoke(id).unwrap();
    assert!(matches!(
        s.enable(id),
        Err(Error::InvalidState {
            state: "revoked",
            ..
        })
    ));
    assert!(matches!(s.disable(id), Err(Error::InvalidState { .. })));
    assert!(matches!(
        s.rotate(id, Duration::ZERO),
        Err(Error::InvalidState { .. })
    ));
    assert_eq!(s.get(id).unwrap().unwrap().status(), KeyStatus::Revoked);
}

fn unknown_ids_are_key_not_found() {
    let t = open_new();
    let s = &t.store;
    let key = s.create(NewKey::new("x")).unwrap();
    let id = key.info().id();
    s.delete(id).unwrap();
    assert!(s.get(id).unwrap().is_none());
    assert_eq!(
        s.verify(key.key(), &[]).unwrap().outcome(),
        Outcome::NotFound
    );
    for result in [s.rename(id, "y"), s.disable(id), s.enable(id), s.revoke(id)] {
        assert!(matches!(result, Err(Error::KeyNotFound(x)) if x == id));
    }
    assert!(matches!(s.delete(id), Err(Error::KeyNotFound(_))));
    assert!(matches!(
        s.rotate(id, Duration::ZERO),
        Err(Error::KeyNotFound(_))
    ));
    let now = SystemTime::now();
    assert!(matches!(s.usage(id, now, now), Err(Error::KeyNotFound(_))));
}

fn list_filters_and_pages() {
    let t = open_new();
    let s = &t.store;
    let mut ids = Vec::new();
    for i in 0..10 {
        let scopes: &[&str] = if i % 2 == 0 {
            &["chat:completions"]
        } else {
            &["embeddings"]
        };
        let mut new = NewKey::new(format!("{}-{i}", if i < 5 { "dev" } else { "prod" }))
            .scopes(scopes.iter().copied());
        if i == 9 {
            new = new.expires_at(SystemTime::now() + Duration::from_secs(3 * 86_400));
        }
        ids.push(s.create(new).unwrap().info().id());
    }
    s.disable(ids[1]).unwrap();
    s.revoke(ids[2]).unwrap();

    let all = s.list(&ListFilter::new()).unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].id() < w[1].id()), "id order");
    let count = |f: ListFilter| s.list(&f).unwrap().len();
    assert_eq!(count(ListFilter::new().status(KeyStatus::Active)), 8);
    assert_eq!(count(ListFilter::new().status(KeyStatus::Disabled)), 1);
    assert_eq!(count(ListFilter::new().status(KeyStatus::Revoked)), 1);
    assert_eq!(count(ListFilter::new().name_prefix("dev")), 5);
    assert_eq!(count(ListFilter::new().scope("embeddings")), 5);
    assert_eq!(
        count(ListFilter::new().expiring_within(Duration::from_secs(7 * 86_400))),
        1
    );
    assert_eq!(
        count(ListFilter::new().expiring_within(Duration::from_secs(86_400))),
        0
    );

    let mut paged = Vec::new();
    let mut filter = ListFilter::new().limit(3);
    loop {
        let page = s.list(&filter).unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        filter = ListFilter::new().limit(3).after(last.id());
        paged.extend(page.iter().map(|k| k.id()));
    }
    assert_eq!(paged, all.iter().map(|k| k.id()).collect::<Vec<_>>());
    assert!(s.list(&ListFilter::new().limit(0)).unwrap().is_empty());
}

fn usage_is_counted_per_day_and_flushed() {
    let t = open_new();
    let s = &t.store;
    let key = s.create(NewKey::new("x")).unwrap();
    let id = key.info().id();
    let first_verify = SystemTime::now();
    for _ in 0..25 {
        assert!(s.verify(key.key(), &[]).unwrap().is_valid());
    }
    // Failed verifications are not usage.
    s.verify(&wrong_secret(key.key()), &[]).unwrap();
    s.verify(key.key(), &["missing:scope"]).unwrap();
    assert_eq!(
        s.get(id).unwrap().unwrap().use_count(),
        0,
        "nothing written before a flush"
    );
    s.flush().unwrap();
    let info = s.get(id).unwrap().unwrap();
    assert_eq!(info.use_count(), 25);
    // The last use is the last valid verify's clock read (whole milliseconds): after the
    // first verify started and before now, however long the machine took in between.
    let last = info.last_used_at().unwrap();
    assert!(
        last + Duration::from_millis(1) > first_verify && last <= SystemTime::now(),
        "last_used_at {last:?}, first verify at {first_verify:?}"
    );
    let now = SystemTime::now();
    let days = s.usage(id, now - Duration::from_secs(86_400), now).unwrap();
    assert_eq!(days.iter().map(|d| d.count).sum::<u64>(), 25);
    assert_eq!(days.len(), 1);
}

#[test]
fn drop_flushes_pending_usage() {
    let t = open_new();
    let path = t.path();
    let key = t.store.create(NewKey::new("x")).unwrap();
    for _ in 0..7 {
        t.store.verify(key.key(), &[]).unwrap();
    }
    let common::TempStore { dir, store, .. } = t;
    drop(store);
    let reopened = common::open_at(&path, common::options());
    assert_eq!(
        reopened.get(key.info().id()).unwrap().unwrap().use_count(),
        7
    );
    drop(dir);
}

#[test]
fn background_flush_runs_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = keystead::KeyStore::open(
        dir.path().join("k.redb"),
        keystead::Options::new().flush_interval(Duration::from_millis(50)),
    )
    .unwrap();
    let key = store.create(NewKey::new("x")).unwrap();
    store.verify(key.key(), &[]).unwrap();
    let deadline = std::time::Instant::now() + support::EVENTUALLY;
    while store.get(key.info().id()).unwrap().unwrap().use_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "background flush never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn audit_records_every_admin_change_with_actor() {
    let dir = tempfile::tempdir().unwrap();
    let s = keystead::KeyStore::open(
        dir.path().join("k.redb"),
        common::options().actor("alice@example"),
    )
    .unwrap();
    let id = s.create(NewKey::new("a")).unwrap().info().id();
    s.rename(id, "b").unwrap();
    s.set_scopes(id, &["x"]).unwrap();
    s.set_metadata(id, [("k".to_string(), "v".to_string())].into())
        .unwrap();
    s.set_expiry(id, Some(SystemTime::now() + Duration::from_secs(60)))
        .unwrap();
    s.disable(id).unwrap();
    s.enable(id).unwrap();
    let new_id = s.rotate(id, Duration::from_secs(60)).unwrap().info().id();
    s.revoke(new_id).unwrap();
    s.delete(id).unwrap();
    // No-op changes are not audited.
    s.revoke(new_id).unwrap();
    s.rename(new_id, "b").unwrap();

    let log = s.audit(None, 100).unwrap();
    let actions: Vec<AuditAction> = log.iter().rev().map(|e| e.action).collect();
    use AuditAction::*;
    assert_eq!(
        actions,
        [
            Create,
            Rename,
            SetScopes,
            SetMetadata,
            SetExpiry,
            Disable,
            Enable,
            Rotate,
            Create,
            Revoke,
            Delete
        ]
    );
    assert!(log
        .iter()
        .all(|e| e.actor.as_deref() == Some("alice@example")));
    assert!(log
        .windows(2)
        .all(|w| w[0].seq > w[1].seq && w[0].at >= w[1].at));
    assert_eq!(log[0].key_id, id);
    assert_eq!(s.audit(None, 3).unwrap().len(), 3);
    let future = SystemTime::now() + Duration::from_secs(60);
    assert!(s.audit(Some(future), 10).unwrap().is_empty());
}

fn create_many_is_all_or_nothing() {
    let t = open_new();
    let s = &t.store;
    let batch = (0..50).map(|i| NewKey::new(format!("bulk-{i}"))).collect();
    let created = s.create_many(batch).unwrap();
    assert_eq!(created.len(), 50);
    for c in &created {
        assert!(s.verify(c.key(), &[]).unwrap().is_valid());
    }
    let mut bad: Vec<NewKey> = (0..10).map(|i| NewKey::new(format!("more-{i}"))).collect();
    bad.push(NewKey::new(""));
    assert!(matches!(s.create_many(bad), Err(Error::InvalidArgument(_))));
    assert_eq!(
        s.list(&ListFilter::new()).unwrap().len(),
        50,
        "nothing of the bad batch"
    );
    assert_eq!(s.audit(None, 1000).unwrap().len(), 50);
    assert!(s.create_many(Vec::new()).unwrap().is_empty());
}

#[test]
fn close_right_after_open_does_not_wait_for_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    // An hour-long interval: a close that waited for it would not return within the test's
    // run; one that returns in less than the interval did not wait for it.
    let interval = Duration::from_secs(3600);
    let store = keystead::KeyStore::open(
        dir.path().join("k.redb"),
        keystead::Options::new().flush_interval(interval),
    )
    .unwrap();
    let start = std::time::Instant::now();
    store.close().unwrap();
    assert!(start.elapsed() < interval, "{:?}", start.elapsed());
}

fn a_bad_status_name_is_not_echoed_in_full() {
    let t = open_new();
    let key = t.store.create(NewKey::new("x")).unwrap();
    let err = KeyStatus::parse(key.key()).unwrap_err().to_string();
    assert!(!err.contains(&key.key()[15..]), "{err}");
}

common::every_backend!(
    every_outcome_code_is_reachable,
    status_is_only_revealed_after_the_secret_matched,
    key_of_another_store_prefix_is_malformed,
    create_validates_its_arguments,
    scopes_are_sorted_and_deduplicated,
    admin_setters_change_what_get_returns,
    revoked_is_permanent_and_idempotent,
    unknown_ids_are_key_not_found,
    list_filters_and_pages,
    usage_is_counted_per_day_and_flushed,
    create_many_is_all_or_nothing,
    a_bad_status_name_is_not_echoed_in_full,
);
