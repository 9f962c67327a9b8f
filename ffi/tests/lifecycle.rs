//! The whole key lifecycle through the ffi types (the Rust side of what Swift calls).

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::{new_key, open_temp, quiet};
use keystead_ffi::{KeyStore, ListFilter, NewKey, OpenOptions};

#[test]
fn create_verify_revoke_verify() {
    let (_dir, _path, store) = open_temp(quiet());
    let created = store.create(new_key("dev-server-integration")).unwrap();
    assert!(created.key.starts_with("ks_"));
    assert_eq!(created.key.len(), 3 + 61);
    assert_eq!(created.info.status, "active");
    assert_eq!(created.info.name, "dev-server-integration");

    let ok = store.verify(created.key.clone(), vec![]).unwrap();
    assert!(ok.ok);
    assert_eq!(ok.code, "valid");
    assert_eq!(ok.http_status, 200);
    assert_eq!(ok.www_authenticate, None);
    assert_eq!(
        ok.key.as_ref().map(|k| k.id.as_str()),
        Some(created.info.id.as_str())
    );
    assert_eq!(ok.key_id.as_deref(), Some(created.info.id.as_str()));

    let revoked = store.revoke(created.info.id.clone()).unwrap();
    assert_eq!(revoked.status, "revoked");

    let no = store.verify(created.key.clone(), vec![]).unwrap();
    assert!(!no.ok);
    assert_eq!(no.code, "revoked");
    assert_eq!(no.http_status, 401);
    assert_eq!(
        no.www_authenticate.as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    // A refused key is named by its id only.
    assert!(no.key.is_none());
    assert_eq!(no.key_id, Some(created.info.id.clone()));
    store.close().unwrap();
}

#[test]
fn every_method_round_trips() {
    let options = OpenOptions {
        actor: Some("ffi-test".into()),
        ..quiet()
    };
    let (_dir, _path, store) = open_temp(options);
    assert_eq!(store.prefix().unwrap(), "ks");

    let expires = SystemTime::now() + Duration::from_secs(3600);
    let created = store
        .create(NewKey {
            name: "analytics".into(),
            scopes: vec!["embeddings".into(), "chat:completions".into()],
            metadata: HashMap::from([("owner".to_owned(), "platform".to_owned())]),
            expires_at_ms: Some(common::ms(expires)),
        })
        .unwrap();
    let id = created.info.id.clone();
    assert_eq!(created.info.scopes, ["chat:completions", "embeddings"]);
    assert_eq!(created.info.metadata["owner"], "platform");
    // Milliseconds in, the same milliseconds out.
    assert_eq!(created.info.expires_at_ms, Some(common::ms(expires)));

    // get / list
    assert_eq!(store.get(id.clone()).unwrap().unwrap().name, "analytics");
    let other = store.create(new_key("other")).unwrap();
    assert_eq!(store.list(ListFilter::default()).unwrap().len(), 2);
    let scoped = store
        .list(ListFilter {
            scope: Some("embeddings".into()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(scoped.len(), 1);
    assert_eq!(scoped[0].id, id);
    let by_name = store
        .list(ListFilter {
            name_prefix: Some("oth".into()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].id, other.info.id);
    let expiring = store
        .list(ListFilter {
            expiring_within_ms: Some(7_200_000),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(expiring.len(), 1);
    let first = store
        .list(ListFilter {
            limit: Some(1),
            ..ListFilter::default()
        })
        .unwrap();
    let rest = store
        .list(ListFilter {
            after: Some(first[0].id.clone()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(first.len() + rest.len(), 2);
    assert_ne!(first[0].id, rest[0].id);

    // setters
    assert_eq!(
        store.rename(id.clone(), "renamed".into()).unwrap().name,
        "renamed"
    );
    let info = store
        .set_metadata(id.clone(), HashMap::from([("team".into(), "ml".into())]))
        .unwrap();
    assert_eq!(info.metadata, HashMap::from([("team".into(), "ml".into())]));
    let info = store
        .set_scopes(id.clone(), vec!["images".into(), "chat:completions".into()])
        .unwrap();
    assert_eq!(info.scopes, ["chat:completions", "images"]);
    assert_eq!(
        store.set_expiry(id.clone(), None).unwrap().expires_at_ms,
        None
    );

    // disable / enable, with verify in between
    assert_eq!(store.disable(id.clone()).unwrap().status, "disabled");
    let check = store.verify(created.key.clone(), vec![]).unwrap();
    assert_eq!((check.ok, check.code.as_str()), (false, "disabled"));
    assert_eq!(store.enable(id.clone()).unwrap().status, "active");
    assert!(store.verify(created.key.clone(), vec![]).unwrap().ok);

    // verify_header and scopes
    let header = format!("Bearer {}", created.key);
    let check = store
        .verify_header(header.clone(), vec!["images".into()])
        .unwrap();
    assert!(check.ok);
    let check = store
        .verify_header(header.clone(), vec!["embeddings".into()])
        .unwrap();
    assert_eq!(check.code, "insufficient_scope");
    assert_eq!(check.http_status, 403);
    assert_eq!(
        check.www_authenticate.as_deref(),
        Some("Bearer error=\"insufficient_scope\", scope=\"embeddings\"")
    );
    let check = store.verify_header(String::new(), vec![]).unwrap();
    assert_eq!((check.code.as_str(), check.http_status), ("missing", 401));
    assert_eq!(check.www_authenticate.as_deref(), Some("Bearer"));
    let check = store.verify("ks_typo".into(), vec![]).unwrap();
    assert_eq!((check.code.as_str(), check.http_status), ("malformed", 400));
    assert!(check.key.is_none());

    // usage: two valid verifications so far (one bare, one header)
    let now = SystemTime::now();
    let usage = store
        .usage(
            id.clone(),
            common::ms(now - Duration::from_secs(86_400)),
            common::ms(now),
        )
        .unwrap();
    assert_eq!(usage.iter().map(|u| u.count).sum::<u64>(), 2);
    store.flush().unwrap();
    let info = store.get(id.clone()).unwrap().unwrap();
    assert_eq!(info.use_count, 2);
    assert!(info.last_used_at_ms.is_some());

    // rotate: both verify during the grace period, and the records link
    let rotated = store.rotate(id.clone(), 60_000).unwrap();
    assert_ne!(rotated.key, created.key);
    assert_eq!(rotated.info.replaces.as_deref(), Some(id.as_str()));
    assert_eq!(
        store.get(id.clone()).unwrap().unwrap().replaced_by,
        Some(rotated.info.id.clone())
    );
    assert!(store.verify(created.key.clone(), vec![]).unwrap().ok);
    assert!(store.verify(rotated.key.clone(), vec![]).unwrap().ok);

    // audit: newest first, with the actor
    let audit = store.audit(None, 100).unwrap();
    assert!(audit.windows(2).all(|w| w[0].seq > w[1].seq));
    assert!(audit.iter().all(|e| e.actor.as_deref() == Some("ffi-test")));
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "create",
        "rename",
        "set_metadata",
        "set_scopes",
        "set_expiry",
        "disable",
        "enable",
        "rotate",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    assert_eq!(store.audit(None, 2).unwrap().len(), 2);
    for entry in &audit {
        assert!(!entry.detail.contains(&created.key));
        assert!(!entry.detail.contains(&rotated.key));
    }

    // delete
    store.delete(other.info.id.clone()).unwrap();
    assert_eq!(store.get(other.info.id.clone()).unwrap(), None);
    store.close().unwrap();
}

#[test]
fn pepper_and_prefix_are_passed_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.redb").to_str().unwrap().to_owned();
    let options = OpenOptions {
        prefix: Some("hub".into()),
        pepper: Some(b"from-the-secret-manager-0123456789".to_vec()),
        ..quiet()
    };
    let store = KeyStore::open(path.clone(), options.clone()).unwrap();
    let created = store.create(new_key("x")).unwrap();
    assert!(created.key.starts_with("hub_"));
    store.close().unwrap();

    let store = KeyStore::open(path, options).unwrap();
    assert_eq!(store.prefix().unwrap(), "hub");
    assert!(store.verify(created.key, vec![]).unwrap().ok);
    store.close().unwrap();
}
