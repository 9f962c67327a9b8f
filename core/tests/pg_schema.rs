//! The PostgreSQL schema as docs/fleet.md describes it: readable with SQL, a newer schema
//! refused like a newer file, and only the authenticated `record` trusted (a row edited by
//! hand is `Corrupt`, never another key's data).
#![cfg(feature = "postgres")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use keystead::{Error, KeyStore, NewKey, Options, Outcome};

fn options() -> Options {
    Options::new()
        .flush_interval(Duration::ZERO)
        .refresh_interval(Duration::ZERO)
        .actor("ops@example")
}

fn client(location: &str) -> postgres::Client {
    postgres::Client::connect(location, postgres::NoTls).unwrap()
}

#[test]
fn an_operator_reads_keys_usage_and_audit_with_sql() {
    let location = common::pg_plain_location();
    let store = KeyStore::open(&location, options()).unwrap();
    let mut metadata = BTreeMap::new();
    metadata.insert("team".to_owned(), "search \"β\"".to_owned());
    let created = store
        .create(
            NewKey::new("dev-server-integration")
                .scopes(["chat:completions", "embeddings"])
                .metadata(metadata),
        )
        .unwrap();
    for _ in 0..3 {
        assert!(store.verify(created.key(), &[]).unwrap().is_valid());
    }
    store.flush().unwrap();
    store.disable(created.info().id()).unwrap();

    let mut sql = client(&location);
    let public_id = created.info().id().to_string();
    let row = sql
        .query_one(
            "SELECT name, scopes, metadata->>'team', state, octet_length(salt), \
                    octet_length(secret_mac), expires_at IS NULL \
             FROM keystead_keys WHERE public_id = $1",
            &[&public_id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dev-server-integration");
    assert_eq!(
        row.get::<_, Vec<String>>(1),
        vec!["chat:completions".to_owned(), "embeddings".to_owned()]
    );
    assert_eq!(row.get::<_, String>(2), "search \"β\"");
    assert_eq!(row.get::<_, String>(3), "disabled");
    assert_eq!(row.get::<_, i32>(4), 16);
    assert_eq!(row.get::<_, i32>(5), 32);
    assert!(row.get::<_, bool>(6));
    // The key itself appears nowhere: not its secret part, not the whole key.
    let secret_part = &created.key()[created.key().len() - 49..created.key().len() - 6];
    let dump: String = sql
        .query_one(
            "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM keystead_keys) t",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!dump.contains(secret_part));

    let uses: i64 = sql
        .query_one(
            "SELECT sum(u.uses)::int8 FROM keystead_usage_daily u \
             JOIN keystead_keys k ON k.id = u.key_id WHERE k.public_id = $1",
            &[&public_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(uses, 3);
    let audit: Vec<(String, Option<String>, String)> = sql
        .query(
            "SELECT action, actor, key_id FROM keystead_audit ORDER BY seq",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        audit,
        vec![
            (
                "create".to_owned(),
                Some("ops@example".to_owned()),
                public_id.clone()
            ),
            (
                "disable".to_owned(),
                Some("ops@example".to_owned()),
                public_id
            ),
        ]
    );
}

#[test]
fn a_newer_database_schema_is_refused_like_a_newer_file() {
    let location = common::pg_plain_location();
    drop(KeyStore::open(&location, options()).unwrap());
    client(&location)
        .batch_execute(
            "INSERT INTO keystead_schema_version (version, name) VALUES (2, 'from the future')",
        )
        .unwrap();
    match KeyStore::open(&location, options()) {
        Err(Error::UnsupportedVersion {
            what,
            found,
            supported,
        }) => {
            assert_eq!((what, found, supported), ("database schema", 2, 1));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn a_record_copied_onto_another_row_is_corrupt_not_the_other_key() {
    let location = common::pg_plain_location();
    let store = KeyStore::open(&location, options()).unwrap();
    let a = store.create(NewKey::new("a").scopes(["admin"])).unwrap();
    let b = store.create(NewKey::new("b")).unwrap();
    // Someone with write access to the table copies a's authenticated record onto b's row
    // (and bumps nothing): b's id must not turn into a's key.
    client(&location)
        .execute(
            "UPDATE keystead_keys SET record = (SELECT record FROM keystead_keys \
             WHERE public_id = $1) WHERE public_id = $2",
            &[&a.info().id().to_string(), &b.info().id().to_string()],
        )
        .unwrap();
    let fresh = KeyStore::open(&location, options()).unwrap();
    // b's key is refused (the copied head's hash is of a's secret under a's salt and id).
    match fresh.verify(b.key(), &[]) {
        Ok(v) => assert_eq!(v.outcome(), Outcome::NotFound),
        Err(e) => assert!(matches!(e, Error::Corrupt(_)), "{e}"),
    }
    assert!(matches!(fresh.get(b.info().id()), Err(Error::Corrupt(_))));
    assert_eq!(
        fresh.verify(a.key(), &["admin"]).unwrap().outcome(),
        Outcome::Valid
    );
}
