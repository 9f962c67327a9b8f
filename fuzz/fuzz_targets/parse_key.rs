//! `parse_key` on arbitrary strings, against an independent reference parser written from
//! the documented format; plus a round trip of keys formatted here from arbitrary
//! (prefix, id, secret), and single-character changes that the checksum must catch.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use keystead::{parse_key, KeyId, KeyParts, MalformedKey};
use keystead_fuzz::{checksum_text, format_key, reference_parse_key, BODY_LEN};
use libfuzzer_sys::fuzz_target;

/// Checks one string against the reference and the stated properties.
fn check(text: &str) -> Result<KeyParts, MalformedKey> {
    let result = parse_key(text);
    let expected = reference_parse_key(text);
    match (&result, expected) {
        (Ok(parts), Ok((prefix, id_text))) => {
            assert_eq!(parts.prefix, prefix, "prefix of {text:?}");
            assert!(text.starts_with(parts.prefix.as_str()), "{text:?}");
            assert_eq!(text.len(), parts.prefix.len() + 1 + BODY_LEN, "{text:?}");
            let id = parts.id.to_string();
            assert_eq!(id.len(), 12, "{text:?}");
            assert_eq!(id, id_text, "id of {text:?}");
            assert_eq!(&text[prefix.len() + 1..prefix.len() + 13], id, "{text:?}");
            assert_eq!(id.parse::<KeyId>().ok(), Some(parts.id), "{text:?}");
        }
        (Err(err), Err(reason)) => assert_eq!(err.as_str(), reason, "{text:?}"),
        (got, want) => panic!("parse_key({text:?}) = {got:?}, reference: {want:?}"),
    }
    result
}

#[derive(Debug, Arbitrary)]
struct RoundTrip {
    /// Prefix characters, mapped onto `[a-z][a-z0-9_]{0,15}` without a trailing `_`.
    prefix: Vec<u8>,
    id: u64,
    secret: [u8; 32],
    /// Where to change one character and what to (an ASCII byte other than the current one).
    change_at: u8,
    change_to: u8,
}

fn prefix_from(raw: &[u8]) -> String {
    const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let mut out = String::new();
    for (i, &b) in raw.iter().take(16).enumerate() {
        let set = if i == 0 { FIRST } else { REST };
        out.push(char::from(set[usize::from(b) % set.len()]));
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push('k');
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check(text);
        // The same text with its checksum recomputed, so the checks after the checksum (and
        // the Ok path) see arbitrary content too.
        if text.len() > 6 && text.is_char_boundary(text.len() - 6) {
            let covered = &text[..text.len() - 6];
            let _ = check(&format!("{covered}{}", checksum_text(covered.as_bytes())));
        }
    }

    let Ok(rt) = RoundTrip::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let prefix = prefix_from(&rt.prefix);
    let key = format_key(&prefix, rt.id, &rt.secret);
    let parts = check(&key).unwrap_or_else(|e| panic!("formatted key {key:?} fails: {e:?}"));
    assert_eq!(parts.prefix, prefix);
    // The id parses to the same value as a formatted id of `rt.id`.
    assert_eq!(
        parts.id,
        key[prefix.len() + 1..prefix.len() + 13]
            .parse::<KeyId>()
            .unwrap()
    );
    assert_eq!(
        parts.id.to_string(),
        keystead_fuzz::base62_fixed(&rt.id.to_be_bytes(), 12).unwrap()
    );
    // CRC-32 catches every single-byte change anywhere in the key.
    let mut changed = key.clone().into_bytes();
    let at = usize::from(rt.change_at) % changed.len();
    let to = rt.change_to % 0x80;
    if changed[at] != to {
        changed[at] = to;
        let changed = String::from_utf8(changed).expect("ASCII");
        assert!(
            check(&changed).is_err(),
            "change at {at} of {key:?} not caught: {changed:?}"
        );
    }
});
