#![cfg(feature = "postgres")]
//! TLS and authentication against PostgreSQL (issue 14, docs/fleet.md "TLS"): a server with
//! a certificate from a throwaway CA and SCRAM passwords, as `scripts/test-postgres.sh --tls`
//! starts it. `sslmode=verify-full` with `sslrootcert` works; a wrong CA and a wrong password
//! are typed errors (kind `Unavailable`) whose messages say what went wrong and never hold the
//! password.
//!
//! Run with `bash scripts/test-postgres.sh --tls -- cargo test -p keystead --features postgres
//! --test pg_tls`. Without `--tls` these tests fail (they never skip).

mod common;

use keystead::backend::{PostgresBackend, PostgresOptions};
use keystead::{Error, ErrorKind, KeyStore, NewKey, Outcome};

fn tls_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the TLS tests need a server with TLS; run them under \
             `scripts/test-postgres.sh --tls` (e.g. `bash scripts/test-postgres.sh --tls -- \
             cargo test -p keystead --features postgres --test pg_tls`)"
        )
    })
}

/// `KEYSTEAD_TEST_PG_TLS_URL`: verify-full with sslrootcert = the test CA.
fn tls_url() -> String {
    tls_var("KEYSTEAD_TEST_PG_TLS_URL")
}

/// The password in a `postgres://user:password@host` URL.
fn password_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let userinfo = rest.split_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_owned()
}

/// The TLS URL on a fresh schema of its own (created over the plain URL, as
/// `common::pg_location` does), so tests never share tables.
fn tls_location() -> String {
    let tls = tls_url();
    let plain = common::pg_location();
    let options = &plain[plain.find("options=").expect("pg_location sets options")..];
    format!("{tls}&{options}")
}

/// `url` with the value of query parameter `name` replaced.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((n, _)) if n == name => format!("{n}={value}"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// `url` with its password replaced.
fn with_password(url: &str, password: &str) -> String {
    url.replacen(
        &format!(":{}@", password_of(url)),
        &format!(":{password}@"),
        1,
    )
}

fn open_err(location: &str) -> Error {
    match KeyStore::open(location, common::options()) {
        Ok(_) => panic!("the open succeeded"),
        Err(e) => e,
    }
}

/// Neither the real password nor `others` appear in the error's Display or Debug.
fn assert_no_password(e: &Error, others: &[&str]) {
    let real = password_of(&tls_url());
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(&real), "the password leaked: {text}");
        for other in others {
            assert!(!text.contains(other), "a password leaked: {text}");
        }
    }
}

#[test]
fn verify_full_with_the_ca_opens_and_verifies() {
    let location = tls_location();
    assert!(location.contains("sslmode=verify-full"), "{location}");
    let store = KeyStore::open(&location, common::options()).unwrap();
    let created = store.create(NewKey::new("over-tls")).unwrap();
    assert_eq!(
        store.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Valid
    );
    // Another handle looks the key up over its own TLS connection (a cold miss).
    let other = KeyStore::open(&location, common::options()).unwrap();
    assert_eq!(
        other.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Valid
    );
    let backend = PostgresBackend::new(&location, PostgresOptions::new()).unwrap();
    let debug = format!("{backend:?}");
    assert!(
        !debug.contains(&password_of(&location)),
        "the password leaked: {debug}"
    );
}

#[test]
fn a_wrong_ca_fails_at_open_naming_the_certificate() {
    let location = with_param(
        &tls_location(),
        "sslrootcert",
        &tls_var("KEYSTEAD_TEST_PG_WRONG_CA"),
    );
    let e = open_err(&location);
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = e.to_string();
    assert!(
        text.to_lowercase().contains("certificate"),
        "the message should name the certificate problem: {text}"
    );
    assert_no_password(&e, &[]);
}

#[test]
fn a_wrong_password_fails_with_a_clear_message() {
    let wrong = "wrongpassword0123456789abcdef0000";
    // Over TLS with SCRAM, and over plain TCP.
    let plain = format!("{}&sslmode=disable", common::pg_location());
    for base in [tls_location(), plain] {
        let location = with_password(&base, wrong);
        assert_ne!(location, base);
        let e = open_err(&location);
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("password authentication failed"),
            "the message should say that the password was refused: {text}"
        );
        assert_no_password(&e, &[wrong]);
    }
}

/// Without `sslmode` keystead uses `prefer`, and rustls verifies whatever it connects to
/// (src/backend/postgres/url.rs): against a server with TLS whose certificate is not in the
/// default roots, the open fails (unlike libpq's `prefer`, which does not verify) — with a
/// message that says it was the certificate, so the operator knows to set `sslrootcert`.
#[test]
fn the_default_sslmode_refuses_an_untrusted_certificate_by_name() {
    tls_url();
    let location = common::pg_location();
    assert!(!location.contains("sslmode"), "{location}");
    let e = open_err(&location);
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = e.to_string();
    assert!(
        text.to_lowercase().contains("certificate"),
        "the message should name the certificate problem: {text}"
    );
    assert_no_password(&e, &[]);
}

#[test]
fn an_unknown_sslmode_is_an_invalid_argument() {
    let location = with_param(&tls_location(), "sslmode", "bogus");
    let e = open_err(&location);
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("sslmode"), "{e}");
    assert_no_password(&e, &[]);
    let e = PostgresBackend::new(&location, PostgresOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_no_password(&e, &[]);
}
