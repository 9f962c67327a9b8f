//! The shared vectors in tests/vectors/*.json, as the Python and Node suites consume them too.

use keystead::{parse_authorization_header, parse_key, HeaderError, KeyStore, Options};
use serde_json::Value;

fn cases(name: &str) -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/");
    let text = std::fs::read_to_string(format!("{path}{name}")).expect("vector file");
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    doc["cases"].as_array().expect("cases").clone()
}

fn store() -> (tempfile::TempDir, KeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path().join("v.redb"), Options::new().prefix("ks")).unwrap();
    (dir, store)
}

#[test]
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

#[test]
fn key_vectors_verify_as_expected() {
    let (_dir, store) = store();
    for case in cases("keys.json") {
        let name = case["name"].as_str().unwrap();
        let got = store.verify(case["key"].as_str().unwrap(), &[]).unwrap();
        assert_eq!(got.code(), case["verify"].as_str().unwrap(), "{name}");
    }
}

#[test]
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
