//! Inputs from fuzzing (fuzz/), replayed by `cargo test`.
//!
//! `REGRESSIONS` holds minimised inputs that once made a fuzz target fail, with the property
//! they broke; the other tests replay the committed seed corpora (fuzz/corpus/<target>/)
//! through the same properties the fuzz targets check, so a change that breaks one shows up
//! without running the fuzzer.

use std::fs;
use std::path::PathBuf;

use keystead::{decode_record_roundtrip, parse_authorization_header, parse_key, KeyId};

/// Which fuzz target an input belongs to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Header,
    Key,
    Record,
}

/// Minimised failing inputs, as hex: (target, hex, what went wrong). None found so far.
const REGRESSIONS: &[(Target, &str, &str)] = &[];

fn hex_decode(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex length");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn is_b64token(token: &[u8]) -> bool {
    let body = token
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        .count();
    body > 0 && token[body..].iter().all(|&b| b == b'=')
}

/// parse_authorization_header never panics; a token is a b64token inside the input.
fn check_header(input: &[u8]) {
    if let Ok(token) = parse_authorization_header(input) {
        assert!(is_b64token(token.as_bytes()), "{token:?} from {input:?}");
        let range = input.as_ptr_range();
        let t = token.as_bytes().as_ptr_range();
        assert!(
            range.start <= t.start && t.end <= range.end,
            "token outside {input:?}"
        );
    }
}

/// parse_key never panics; on Ok the prefix starts the input, the id follows `prefix_`, and
/// the key is prefix + 1 + 61 bytes.
fn check_key(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(parts) = parse_key(text) {
        assert!(text.starts_with(&parts.prefix), "{text:?}");
        assert_eq!(text.len(), parts.prefix.len() + 1 + 61, "{text:?}");
        let id = parts.id.to_string();
        let at = parts.prefix.len() + 1;
        assert_eq!(&text[at - 1..at], "_", "{text:?}");
        assert_eq!(&text[at..at + 12], id, "{text:?}");
        assert_eq!(id.parse::<KeyId>().ok(), Some(parts.id), "{text:?}");
    }
}

/// decode_record_roundtrip never panics; what decodes re-encodes to the same bytes.
fn check_record(input: &[u8]) {
    if let Ok(out) = decode_record_roundtrip(input) {
        assert_eq!(out, input, "record does not re-encode to itself");
    }
}

fn check(target: Target, input: &[u8]) {
    match target {
        Target::Header => check_header(input),
        Target::Key => check_key(input),
        Target::Record => check_record(input),
    }
}

#[test]
fn minimised_fuzz_failures() {
    for (target, hex, what) in REGRESSIONS {
        println!("{target:?}: {what}");
        check(*target, &hex_decode(hex));
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        // The fuzz directory is not part of a packaged crate.
        return Vec::new();
    };
    let mut inputs: Vec<Vec<u8>> = entries
        .map(|e| fs::read(e.expect("corpus entry").path()).expect("corpus file"))
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn header_corpus() {
    for input in corpus("parse_authorization_header") {
        check(Target::Header, &input);
    }
}

#[test]
fn key_corpus() {
    for input in corpus("parse_key") {
        check(Target::Key, &input);
    }
}

#[test]
fn record_corpus() {
    let inputs = corpus("decode_record");
    for input in &inputs {
        check(Target::Record, input);
    }
    // The seeds are valid records (fuzz/seed-corpus.py writes them from the documented layout).
    let decoded = inputs
        .iter()
        .filter(|i| decode_record_roundtrip(i).is_ok())
        .count();
    assert!(inputs.is_empty() || decoded > 0, "no seed record decodes");
}
