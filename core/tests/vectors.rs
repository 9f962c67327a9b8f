//! The shared vectors in tests/vectors/*.json, as the Python and Node suites consume them too.

mod common;

use keystead::{parse_authorization_header, parse_key, HeaderError, KeyStore};
use serde_json::Value;

fn cases(name: &str) -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/");
    let text = std::fs::read_to_string(format!("{path}{name}")).expect("vector file");
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    doc["cases"].as_array().expect("cases").clone()
}

/// An empty store with prefix `ks` on the running test's backend (see `every_backend!`).
fn store() -> (tempfile::TempDir, KeyStore) {
    let t = common::open_new();
    assert_eq!(t.store.prefix(), "ks");
    (t.dir, t.store)
}

fn key_vectors_parse_as_expected() {
    let cases = cases("keys.json");
    assert!(cases.len() >= 30);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let key = case["key"].as_str().unwrap();
        match (parse_key(key), case["valid"].as_bool().unwrap()) {
            (Ok(parts), true) => {
                assert_eq!(parts.prefix, case["prefix"].as_str().unwrap(), "{name}");
                assert_eq!(parts.id.to_string(), case["id"].as_str().unwrap(), "{name}");
            }
            (Err(reason), false) => {
                assert_eq!(reason.as_str(), case["reason"].as_str().unwrap(), "{name}");
            }
            (got, _) => panic!("{name}: unexpected {got:?}"),
        }
    }
}

fn key_vectors_verify_as_expected() {
    let (_dir, store) = store();
    for case in cases("keys.json") {
        let name = case["name"].as_str().unwrap();
        let got = store.verify(case["key"].as_str().unwrap(), &[]).unwrap();
        assert_eq!(got.code(), case["verify"].as_str().unwrap(), "{name}");
    }
}

fn header_vectors_parse_and_verify_as_expected() {
    let cases = cases("headers.json");
    assert!(cases.len() >= 40);
    let (_dir, store) = store();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let header = case["header"].as_str().unwrap();
        let parsed = parse_authorization_header(header.as_bytes());
        match case["expect"].as_str().unwrap() {
            "token" => assert_eq!(parsed, Ok(case["token"].as_str().unwrap()), "{name}"),
            "missing" => assert_eq!(parsed, Err(HeaderError::Missing), "{name}"),
            "malformed" => assert_eq!(parsed, Err(HeaderError::Malformed), "{name}"),
            other => panic!("{name}: unknown expectation {other}"),
        }
        let outcome = store.verify_header(header, &[]).unwrap();
        assert_eq!(outcome.code(), case["verify"].as_str().unwrap(), "{name}");
    }
}

/// tests/vectors/lifecycle.json: scripted admin steps, each verify with the code, HTTP status
/// and `WWW-Authenticate` every binding must give. Also checks that the scripts reach all eight
/// outcome codes.
fn lifecycle_vectors_give_the_expected_outcomes() {
    use keystead::{KeyId, NewKey};
    use std::collections::{BTreeSet, HashMap};
    use std::time::Duration;

    let mut codes = BTreeSet::new();
    for case in cases("lifecycle.json") {
        let name = case["name"].as_str().unwrap();
        let (_dir, store) = store();
        let mut keys: HashMap<String, (String, KeyId)> = HashMap::new();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let at = format!("{name}, step {i}");
            let key_ref = || keys[step["key"].as_str().unwrap()].clone();
            let verification = match step["op"].as_str().unwrap() {
                "create" => {
                    let created = store
                        .create(
                            NewKey::new(step["name"].as_str().unwrap())
                                .scopes(strings(&step["scopes"])),
                        )
                        .unwrap();
                    let entry = (created.key().to_owned(), created.info().id());
                    keys.insert(step["as"].as_str().unwrap().to_owned(), entry);
                    None
                }
                "disable" => store.disable(key_ref().1).map(|_| None).unwrap(),
                "enable" => store.enable(key_ref().1).map(|_| None).unwrap(),
                "revoke" => store.revoke(key_ref().1).map(|_| None).unwrap(),
                "delete" => store.delete(key_ref().1).map(|()| None).unwrap(),
                "set_scopes" => store
                    .set_scopes(key_ref().1, &strings(&step["scopes"]))
                    .map(|_| None)
                    .unwrap(),
                "rotate" => {
                    let grace = Duration::from_millis(step["grace_ms"].as_u64().unwrap());
                    let created = store.rotate(key_ref().1, grace).unwrap();
                    let entry = (created.key().to_owned(), created.info().id());
                    keys.insert(step["as"].as_str().unwrap().to_owned(), entry);
                    None
                }
                op @ ("verify" | "verify_header") => {
                    let scopes = strings(&step["scopes"]);
                    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    Some(if op == "verify" {
                        let presented = match step.get("raw") {
                            Some(raw) => raw.as_str().unwrap().to_owned(),
                            None => key_ref().0,
                        };
                        store.verify(&presented, &scopes).unwrap()
                    } else {
                        let mut header = step["header"].as_str().unwrap().to_owned();
                        for (k, (key, _)) in &keys {
                            header = header.replace(&format!("{{{k}}}"), key);
                        }
                        store.verify_header(&header, &scopes).unwrap()
                    })
                }
                other => panic!("{at}: unknown op {other}"),
            };
            if let Some(v) = verification {
                let expect = &step["expect"];
                assert_eq!(v.code(), expect["code"].as_str().unwrap(), "{at}");
                assert_eq!(
                    u64::from(v.http_status()),
                    expect["http_status"].as_u64().unwrap(),
                    "{at}"
                );
                assert_eq!(
                    v.www_authenticate().as_deref(),
                    expect["www_authenticate"].as_str(),
                    "{at}"
                );
                codes.insert(v.code().to_owned());
            }
        }
    }
    let all = [
        "valid",
        "missing",
        "malformed",
        "not_found",
        "disabled",
        "revoked",
        "expired",
        "insufficient_scope",
    ];
    assert_eq!(codes, all.iter().map(|c| (*c).to_owned()).collect());
}

common::every_backend!(
    key_vectors_parse_as_expected,
    key_vectors_verify_as_expected,
    header_vectors_parse_and_verify_as_expected,
    lifecycle_vectors_give_the_expected_outcomes,
);
