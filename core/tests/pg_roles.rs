//! The least-privilege role layout of docs/fleet.md works as documented: a serving process
//! opened as the verifying role verifies and flushes usage but cannot change keys, and the
//! audit log is append-only even for the admin role.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use keystead::{Error, KeyStore, NewKey, Options, Outcome};

/// A superuser connection to the test database (the admin URL names another database).
fn admin_client() -> postgres::Client {
    let url = std::env::var("KEYSTEAD_TEST_PG_ADMIN_URL").unwrap_or_else(|_| {
        panic!("KEYSTEAD_TEST_PG_ADMIN_URL is not set: run under scripts/test-postgres.sh")
    });
    let mut config: postgres::Config = url.parse().unwrap();
    let test: postgres::Config = common::pg_url().parse().unwrap();
    config.dbname(test.get_dbname().unwrap());
    config.connect(postgres::NoTls).unwrap()
}

/// `KEYSTEAD_TEST_PG_URL` with another user and password, on schema `schema`.
fn url_as(user: &str, password: &str, schema: &str) -> String {
    let base = common::pg_url();
    let rest = base.split_once('@').unwrap().1;
    let host_db = rest.split('?').next().unwrap();
    format!(
        "postgres://{user}:{password}@{host_db}?sslmode=disable&options=-csearch_path%3D{schema}"
    )
}

#[test]
fn the_verifying_role_verifies_and_counts_but_cannot_change_keys() {
    let tag = std::process::id();
    let (schema, admin, verify) = (
        format!("ks_roles_{tag}"),
        format!("ks_admin_{tag}"),
        format!("ks_verify_{tag}"),
    );
    let mut su = admin_client();
    su.batch_execute(&format!(
        "CREATE ROLE {admin} LOGIN PASSWORD 'admin-pw'; \
         CREATE ROLE {verify} LOGIN PASSWORD 'verify-pw'; \
         CREATE SCHEMA {schema} AUTHORIZATION {admin}; \
         GRANT USAGE ON SCHEMA {schema} TO {verify};"
    ))
    .unwrap();

    let options = || {
        Options::new()
            .flush_interval(Duration::ZERO)
            .refresh_interval(Duration::ZERO)
    };
    // The admin role creates the store (and the tables) and a key.
    let admin_store = KeyStore::open(url_as(&admin, "admin-pw", &schema), options()).unwrap();
    let created = admin_store
        .create(NewKey::new("k").scopes(["chat:completions"]))
        .unwrap();

    // The grants of docs/fleet.md, run by the admin role on its own tables.
    let mut owner =
        postgres::Client::connect(&url_as(&admin, "admin-pw", &schema), postgres::NoTls).unwrap();
    owner
        .batch_execute(&format!(
            "GRANT SELECT ON keystead_schema_version, keystead_meta, keystead_state, \
                 keystead_keys, keystead_changes TO {verify}; \
             GRANT SELECT, INSERT, UPDATE ON keystead_usage_daily TO {verify}; \
             REVOKE UPDATE, DELETE, TRUNCATE ON keystead_audit FROM {admin};"
        ))
        .unwrap();

    let serving = KeyStore::open(url_as(&verify, "verify-pw", &schema), options()).unwrap();
    for _ in 0..3 {
        assert_eq!(
            serving
                .verify(created.key(), &["chat:completions"])
                .unwrap()
                .outcome(),
            Outcome::Valid
        );
    }
    serving.flush().unwrap();
    assert_eq!(
        admin_store
            .get(created.info().id())
            .unwrap()
            .unwrap()
            .use_count(),
        3
    );
    // Admin calls through the verifying role are refused by the database.
    match serving.revoke(created.info().id()) {
        Err(Error::Storage(message)) => assert!(message.contains("permission denied"), "{message}"),
        other => panic!("expected a permission error, got {other:?}"),
    }
    assert!(matches!(
        serving.create(NewKey::new("nope")),
        Err(Error::Storage(_))
    ));
    // The key is unchanged, and the admin's revoke is seen by the serving process.
    assert!(serving.verify(created.key(), &[]).unwrap().is_valid());
    admin_store.revoke(created.info().id()).unwrap();
    assert_eq!(
        serving.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    // The audit log is append-only even for its owner.
    let denied = owner.batch_execute("DELETE FROM keystead_audit");
    assert!(
        denied
            .as_ref()
            .err()
            .and_then(|e| e.as_db_error())
            .is_some_and(|db| db.code().code() == "42501"),
        "{denied:?}"
    );
    assert_eq!(admin_store.audit(None, 10).unwrap().len(), 2);

    drop((serving, admin_store, owner));
    su.batch_execute(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP ROLE {admin}; DROP ROLE {verify};"
    ))
    .unwrap();
}
