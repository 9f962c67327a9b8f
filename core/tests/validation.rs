//! Input validation of names, scopes, metadata and actors (issue 12, items 7, 8 and 10):
//! invisible and direction-changing characters, control characters, full keys pasted into
//! the wrong field, and over-long actors that used to corrupt the audit log.

mod common;

use std::collections::BTreeMap;

use keystead::{Error, KeyStore, NewKey};

/// Default-ignorable and bidi-control code points, one of each kind.
const INVISIBLE: &[char] = &[
    '\u{200E}',  // LRM
    '\u{200F}',  // RLM
    '\u{061C}',  // ALM
    '\u{200B}',  // zero-width space
    '\u{200C}',  // ZWNJ
    '\u{200D}',  // ZWJ
    '\u{2060}',  // word joiner
    '\u{2064}',  // invisible plus
    '\u{FEFF}',  // BOM / zero-width no-break space
    '\u{00AD}',  // soft hyphen
    '\u{FE0F}',  // variation selector 16
    '\u{180E}',  // Mongolian vowel separator
    '\u{E0041}', // tag latin capital A
    '\u{202E}',  // RLO
    '\u{2066}',  // LRI
    '\u{3164}',  // Hangul filler
];

fn a_key() -> String {
    let t = common::open_new();
    t.store
        .create(NewKey::new("donor"))
        .unwrap()
        .key()
        .to_owned()
}

fn assert_invalid_without<T: std::fmt::Debug>(result: keystead::Result<T>, secret: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(
                !message.contains(secret),
                "the message echoes it: {message}"
            );
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn names_refuse_invisible_and_bidi_characters() {
    let t = common::open_new();
    let id = t.store.create(NewKey::new("fine")).unwrap().info().id();
    for &c in INVISIBLE {
        let name = format!("pay{c}ments");
        let err = t.store.create(NewKey::new(name.clone())).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "U+{:04X}: {err:?}",
            c as u32
        );
        let err = t.store.rename(id, &name).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "U+{:04X}: {err:?}",
            c as u32
        );
        assert!(keystead::is_invisible_char(c), "U+{:04X}", c as u32);
    }
    // Visible non-ASCII is fine.
    t.store.rename(id, "café – 東京 ✓").unwrap();
    for c in ['a', 'é', ' ', '東', '✓'] {
        assert!(!keystead::is_invisible_char(c));
    }
}

#[test]
fn metadata_values_refuse_control_and_bidi_characters() {
    let t = common::open_new();
    let id = t.store.create(NewKey::new("m")).unwrap().info().id();
    for value in [
        "\u{1b}[31mred",
        "a\u{202E}b",
        "a\u{2066}b",
        "a\u{200F}b",
        "line\nbreak",
        "nul\0",
        "c1\u{85}",
        "del\u{7f}",
    ] {
        let metadata = BTreeMap::from([("owner".to_owned(), value.to_owned())]);
        let err = t.store.set_metadata(id, metadata.clone()).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{value:?}: {err:?}"
        );
        let err = t
            .store
            .create(NewKey::new("m2").metadata(metadata))
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{value:?}: {err:?}"
        );
    }
    let fine = BTreeMap::from([("owner".to_owned(), "platform – team ✓".to_owned())]);
    t.store.set_metadata(id, fine).unwrap();
}

#[test]
fn metadata_keys_and_scopes_refuse_invisible_characters() {
    let t = common::open_new();
    for &c in INVISIBLE {
        let key = format!("own{c}er");
        let new = NewKey::new("k").metadata([(key, "x")]);
        assert!(matches!(
            t.store.create(new),
            Err(Error::InvalidArgument(_))
        ));
        let new = NewKey::new("k").scopes([format!("chat{c}")]);
        assert!(matches!(
            t.store.create(new),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn a_full_key_is_refused_as_a_name_metadata_or_scope_without_being_echoed() {
    let key = a_key();
    let secret = &key[key.len() - 49..];
    let t = common::open_new();
    assert_invalid_without(t.store.create(NewKey::new(key.clone())), secret);
    assert_invalid_without(t.store.create(NewKey::new(format!("x {key} y"))), secret);
    let id = t.store.create(NewKey::new("ok")).unwrap().info().id();
    assert_invalid_without(t.store.rename(id, &key), secret);
    let meta = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
    assert_invalid_without(t.store.set_metadata(id, meta("owner", &key)), secret);
    assert_invalid_without(
        t.store
            .set_metadata(id, meta("note", &format!("token={key};"))),
        secret,
    );
    assert_invalid_without(t.store.set_metadata(id, meta(&key, "v")), secret);
    // Too long for a value, and still not echoed.
    let long = format!("{key}{}", " ".repeat(2000));
    assert_invalid_without(t.store.set_metadata(id, meta(&key, &long)), secret);
    assert_invalid_without(t.store.set_scopes(id, &[key.as_str()]), secret);
    assert!(t.store.get(id).unwrap().unwrap().metadata().is_empty());
    // Near misses that are not key-shaped stay allowed: a 64-digit hash after `_`.
    let hash = format!("sha256_{}", "ab12".repeat(16));
    t.store.set_metadata(id, meta("digest", &hash)).unwrap();
}

#[test]
fn redact_keys_hides_keys_in_text() {
    let key = a_key();
    let secret = &key[key.len() - 49..];
    let text = format!("error: unexpected argument '{key}' found");
    let shown = keystead::redact_keys(&text);
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("ks_[redacted]"), "{shown}");
    // A key with a character lost is hidden too.
    let shown = keystead::redact_keys(&key[..key.len() - 1]);
    assert!(!shown.contains(&secret[..40]), "{shown}");
}

#[test]
fn an_over_long_actor_is_refused_at_open_and_the_audit_stays_readable() {
    let t = common::open_new();
    t.store.create(NewKey::new("before")).unwrap();
    let path = t.path();
    // 65,530 `a`s and a two-byte `é`: the old codec cut it at 65,535 bytes, inside the `é`.
    let actor = format!("{}é", "a".repeat(65_530));
    let err = KeyStore::open(&path, common::options().actor(actor)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    for actor in [
        "",
        "   ",
        "a\nb",
        "evil\u{1b}[2J",
        "ad\u{202E}nimda",
        "z\u{200B}w",
    ] {
        let err = KeyStore::open(&path, common::options().actor(actor)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{actor:?}: {err:?}"
        );
    }
    let actor = "a".repeat(keystead::MAX_ACTOR_CHARS);
    let other = KeyStore::open(&path, common::options().actor(actor.clone())).unwrap();
    other.create(NewKey::new("after")).unwrap();
    let entries = t.store.audit(None, 10).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].actor.as_deref(), Some(actor.as_str()));
    let err = KeyStore::open(&path, common::options().actor(format!("{actor}a"))).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}
