//! A store file written by an older build keeps opening unchanged, through the public API only.
//!
//! `fixtures/store-main-1670dbb.redb` was written by main at 1670dbb (before the storage seam
//! of issue 13) with `core/examples/make_fixture.rs`; `fixtures/store-main-1670dbb.json` holds
//! the plaintext keys of that throwaway store (test data, valid nowhere else) and everything
//! the API reported about it then. The fixture is never regenerated (a new build gets a new
//! fixture; see the example's header). Each test works on a private copy (mode 0600, as a
//! store must be), so the committed file is never written.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keystead::{
    parse_key, Error, KeyId, KeyInfo, KeyStatus, KeyStore, ListFilter, NewKey, Options, Outcome,
};
use serde_json::Value;

const FIXTURE: &str = "store-main-1670dbb";

struct Fixture {
    /// Holds the copy; dropping it removes the copy, so bind it for the whole test.
    _dir: tempfile::TempDir,
    path: PathBuf,
    facts: Value,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A private copy of the fixture store and its facts.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    std::fs::copy(fixtures_dir().join(format!("{FIXTURE}.redb")), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(fixtures_dir().join(format!("{FIXTURE}.json"))).unwrap();
    Fixture {
        _dir: dir,
        path,
        facts: serde_json::from_str(&text).unwrap(),
    }
}

fn hex(text: &str) -> Vec<u8> {
    assert_eq!(text.len() % 2, 0);
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Opens the fixture's store: its pepper and prefix, never creating anything, usage written
/// only on `flush`/`close`.
fn options(facts: &Value) -> Options {
    Options::new()
        .pepper(hex(str_of(&facts["pepper_hex"])))
        .prefix(str_of(&facts["prefix"]))
        .flush_interval(Duration::ZERO)
        .create_if_missing(false)
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn array_of(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
}

fn id_of(v: &Value) -> KeyId {
    str_of(v).parse().unwrap()
}

fn opt_id(v: &Value) -> Option<KeyId> {
    (!v.is_null()).then(|| id_of(v))
}

fn time_of(v: &Value) -> Option<SystemTime> {
    v.as_i64()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).expect("after 1970")))
}

fn ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// 9000-01-01T00:00:00Z, the end of every usage query.
fn year_9000() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(221_845_392_000)
}

fn outcome_of(text: &str) -> Outcome {
    [
        Outcome::Valid,
        Outcome::Missing,
        Outcome::Malformed,
        Outcome::NotFound,
        Outcome::Disabled,
        Outcome::Revoked,
        Outcome::Expired,
        Outcome::InsufficientScope,
    ]
    .into_iter()
    .find(|o| o.as_str() == text)
    .unwrap_or_else(|| panic!("unknown outcome {text}"))
}

/// The verifications recorded for a key: (required scopes, outcome).
fn checks_of(key: &Value) -> Vec<(Vec<String>, Outcome)> {
    array_of(&key["checks"])
        .iter()
        .map(|c| {
            let required = array_of(&c["required"])
                .iter()
                .map(|s| str_of(s).to_owned())
                .collect();
            (required, outcome_of(str_of(&c["outcome"])))
        })
        .collect()
}

fn valid_checks(key: &Value) -> u64 {
    checks_of(key)
        .iter()
        .filter(|(_, o)| *o == Outcome::Valid)
        .count() as u64
}

/// Compares a key's information with its recorded facts. `extra_uses` valid verifications
/// have been made (and flushed) since the fixture was written.
fn check_info(info: &KeyInfo, key: &Value, extra_uses: u64) {
    let label = str_of(&key["label"]);
    assert_eq!(info.id(), id_of(&key["id"]), "{label}: id");
    assert_eq!(info.name(), str_of(&key["name"]), "{label}: name");
    assert_eq!(
        info.status(),
        KeyStatus::parse(str_of(&key["status"])).unwrap(),
        "{label}: status"
    );
    let scopes: Vec<&str> = array_of(&key["scopes"]).iter().map(str_of).collect();
    assert_eq!(info.scopes(), scopes.as_slice(), "{label}: scopes");
    let metadata: BTreeMap<String, String> = key["metadata"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), str_of(v).to_owned()))
        .collect();
    assert_eq!(info.metadata(), &metadata, "{label}: metadata");
    assert_eq!(
        Some(info.created_at()),
        time_of(&key["created_at_ms"]),
        "{label}: created_at"
    );
    assert_eq!(
        Some(info.updated_at()),
        time_of(&key["updated_at_ms"]),
        "{label}: updated_at"
    );
    assert_eq!(
        info.expires_at(),
        time_of(&key["expires_at_ms"]),
        "{label}: expires_at"
    );
    assert_eq!(
        info.replaces(),
        opt_id(&key["replaces"]),
        "{label}: replaces"
    );
    assert_eq!(
        info.replaced_by(),
        opt_id(&key["replaced_by"]),
        "{label}: replaced_by"
    );
    let recorded_uses = u64_of(&key["use_count"]);
    assert_eq!(
        info.use_count(),
        recorded_uses + extra_uses,
        "{label}: use_count"
    );
    let recorded_last_use = time_of(&key["last_used_at_ms"]);
    if extra_uses == 0 {
        assert_eq!(
            info.last_used_at(),
            recorded_last_use,
            "{label}: last_used_at"
        );
    } else {
        // Used again today: a later last use, whatever the fixture held.
        assert!(
            info.last_used_at() >= recorded_last_use && info.last_used_at().is_some(),
            "{label}: last_used_at {:?} after {recorded_last_use:?}",
            info.last_used_at()
        );
    }
}

/// Checks every recorded fact of every key (`extra_uses`: valid verifications of each key
/// made and flushed since) and the audit log's first entries. Returns the listed keys.
fn check_facts(
    store: &KeyStore,
    facts: &Value,
    extra_uses: impl Fn(&Value) -> u64,
) -> Vec<KeyInfo> {
    assert_eq!(store.prefix(), str_of(&facts["prefix"]));
    let keys = array_of(&facts["keys"]);
    let listed = store.list(&ListFilter::new()).unwrap();
    let by_id: BTreeMap<KeyId, &KeyInfo> = listed.iter().map(|i| (i.id(), i)).collect();
    for key in keys {
        let label = str_of(&key["label"]);
        let id = id_of(&key["id"]);
        let extra = extra_uses(key);
        let info = store
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("{label}: missing"));
        check_info(&info, key, extra);
        assert_eq!(by_id.get(&id), Some(&&info), "{label}: listed as by get");

        let usage = store.usage(id, UNIX_EPOCH, year_9000()).unwrap();
        let recorded: Vec<(i64, u64)> = array_of(&key["usage"])
            .iter()
            .map(|u| (u["day_ms"].as_i64().unwrap(), u64_of(&u["count"])))
            .collect();
        if extra == 0 {
            let got: Vec<(i64, u64)> = usage.iter().map(|u| (ms(u.day), u.count)).collect();
            assert_eq!(got, recorded, "{label}: usage");
        } else {
            // The new uses land on today (the fixture's day or a later one).
            let total: u64 = usage.iter().map(|u| u.count).sum();
            let recorded_total: u64 = recorded.iter().map(|(_, c)| c).sum();
            assert_eq!(total, recorded_total + extra, "{label}: usage total");
            for (day, count) in &recorded {
                let now = usage.iter().find(|u| ms(u.day) == *day);
                assert!(
                    now.is_some_and(|u| u.count >= *count),
                    "{label}: usage of {day}"
                );
            }
        }
    }
    for gone in array_of(&facts["deleted"]) {
        let id = id_of(&gone["id"]);
        assert_eq!(store.get(id).unwrap(), None, "deleted key");
        assert!(!by_id.contains_key(&id), "deleted key listed");
        assert!(matches!(
            store.usage(id, UNIX_EPOCH, year_9000()),
            Err(Error::KeyNotFound(got)) if got == id
        ));
    }

    // The audit log, oldest first: every recorded entry, exactly.
    let mut audit = store.audit(None, usize::MAX).unwrap();
    audit.reverse();
    let recorded = array_of(&facts["audit"]);
    assert!(audit.len() >= recorded.len(), "audit entries lost");
    for (entry, want) in audit.iter().zip(recorded) {
        assert_eq!(entry.seq, u64_of(&want["seq"]), "audit seq");
        assert_eq!(
            Some(entry.at),
            time_of(&want["at_ms"]),
            "audit time of {}",
            entry.seq
        );
        assert_eq!(
            entry.actor.as_deref(),
            want["actor"].as_str(),
            "actor of {}",
            entry.seq
        );
        assert_eq!(
            entry.action.as_str(),
            str_of(&want["action"]),
            "action of {}",
            entry.seq
        );
        assert_eq!(entry.key_id, id_of(&want["key_id"]), "key of {}", entry.seq);
        assert_eq!(
            entry.detail,
            str_of(&want["detail"]),
            "detail of {}",
            entry.seq
        );
    }
    listed
}

/// Verifies every recorded check of every key (and of the deleted ones) and returns how many
/// were valid per key id.
fn run_checks(store: &KeyStore, facts: &Value) -> BTreeMap<KeyId, u64> {
    let mut valid = BTreeMap::new();
    let keys = array_of(&facts["keys"]).iter();
    for key in keys.chain(array_of(&facts["deleted"])) {
        let label = str_of(&key["label"]);
        let plaintext = str_of(&key["key"]);
        let id = id_of(&key["id"]);
        assert_eq!(
            parse_key(plaintext).unwrap().id,
            id,
            "{label}: the key's id"
        );
        for (required, outcome) in checks_of(key) {
            let required: Vec<&str> = required.iter().map(String::as_str).collect();
            let v = store.verify(plaintext, &required).unwrap();
            assert_eq!(v.outcome(), outcome, "{label}: verify with {required:?}");
            let header = store
                .verify_header(format!("Bearer {plaintext}"), &required)
                .unwrap();
            assert_eq!(header.outcome(), outcome, "{label}: verify_header");
            // The id is known whenever the secret matched; the whole key only when valid.
            let matched = outcome != Outcome::NotFound;
            assert_eq!(v.key_id(), matched.then_some(id), "{label}: key id");
            assert_eq!(
                v.key().map(KeyInfo::name),
                (outcome == Outcome::Valid).then(|| str_of(&key["name"])),
                "{label}: key info"
            );
            if outcome == Outcome::Valid {
                *valid.entry(id).or_insert(0) += 2;
            }
        }
    }
    valid
}

#[test]
fn the_fixture_is_what_its_generator_meant() {
    // Guards the JSON against a hand edit that would make a wrong fact "expected".
    let facts = fixture().facts;
    let keys = array_of(&facts["keys"]);
    let status: BTreeMap<&str, &str> = keys
        .iter()
        .map(|k| (str_of(&k["label"]), str_of(&k["status"])))
        .collect();
    let want = [
        ("alpha", "active"),
        ("beta", "disabled"),
        ("gamma", "revoked"),
        ("delta-old", "active"),
        ("delta-new", "active"),
        ("epsilon", "active"),
        ("eta", "active"),
        ("theta-old", "expired"),
        ("theta-new", "active"),
    ];
    assert_eq!(status, BTreeMap::from(want));
    for key in keys {
        assert_eq!(
            u64_of(&key["use_count"]),
            valid_checks(key),
            "{}",
            key["label"]
        );
    }
    let actions: BTreeSet<&str> = array_of(&facts["audit"])
        .iter()
        .map(|a| str_of(&a["action"]))
        .collect();
    // Every action the audit log can hold, so each one's stored code is read back.
    let every = [
        "create",
        "rename",
        "set_scopes",
        "set_metadata",
        "set_expiry",
        "disable",
        "enable",
        "revoke",
        "rotate",
        "delete",
    ];
    assert_eq!(actions, BTreeSet::from(every));
    assert_eq!(array_of(&facts["audit"]).len(), 21);
    assert_eq!(array_of(&facts["deleted"]).len(), 1);
}

#[test]
fn a_store_written_by_main_1670dbb_opens_unchanged_and_takes_writes() {
    let Fixture { _dir, path, facts } = fixture();
    assert!(KeyStore::check_integrity(&path).unwrap());

    // Read everything before verifying anything (verifies count uses).
    let store = KeyStore::open(&path, options(&facts)).unwrap();
    check_facts(&store, &facts, |_| 0);
    let valid = run_checks(&store, &facts);
    let extra = |key: &Value| valid.get(&id_of(&key["id"])).copied().unwrap_or(0);
    // The new uses go into the old file's usage counters.
    store.flush().unwrap();
    check_facts(&store, &facts, extra);

    // Writes to the old file: a new key, then revoke it.
    let created = store
        .create(NewKey::new("iota").scopes(["new:scope"]))
        .unwrap();
    let iota = created.info().id();
    assert!(store
        .verify(created.key(), &["new:scope"])
        .unwrap()
        .is_valid());
    store.revoke(iota).unwrap();
    assert_eq!(
        store.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    store.close().unwrap();
    assert!(KeyStore::check_integrity(&path).unwrap());

    // Reopened: the old facts, the new uses, and the new key with its two audit entries.
    let store = KeyStore::open(&path, options(&facts)).unwrap();
    let listed = check_facts(&store, &facts, extra);
    assert_eq!(listed.len(), array_of(&facts["keys"]).len() + 1);
    let info = store.get(iota).unwrap().expect("the new key persisted");
    assert_eq!(info.name(), "iota");
    assert_eq!(info.status(), KeyStatus::Revoked);
    assert_eq!(info.scopes(), ["new:scope"]);
    assert_eq!(info.use_count(), 1);
    assert_eq!(
        store.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    let mut audit = store.audit(None, usize::MAX).unwrap();
    audit.reverse();
    let recorded = array_of(&facts["audit"]);
    assert_eq!(audit.len(), recorded.len() + 2);
    let last_seq = u64_of(&recorded[recorded.len() - 1]["seq"]);
    let new: Vec<_> = audit[recorded.len()..]
        .iter()
        .map(|e| (e.action.as_str(), e.key_id, e.actor.clone()))
        .collect();
    assert_eq!(new, [("create", iota, None), ("revoke", iota, None)]);
    assert!(audit[recorded.len()].seq > last_seq);
    assert!(audit[recorded.len() + 1].seq > audit[recorded.len()].seq);
    store.close().unwrap();
}

#[test]
fn a_wrong_pepper_or_prefix_is_refused_and_the_file_is_left_as_it_was() {
    let Fixture { _dir, path, facts } = fixture();
    let before = std::fs::read(&path).unwrap();
    let other_pepper = b"not-the-fixture-pepper-32-bytes!".to_vec();
    let result = KeyStore::open(&path, options(&facts).pepper(other_pepper));
    assert!(matches!(result, Err(Error::WrongPepper)), "{result:?}");
    let no_pepper = Options::new().flush_interval(Duration::ZERO);
    let result = KeyStore::open(&path, no_pepper);
    assert!(matches!(result, Err(Error::WrongPepper)), "{result:?}");
    let result = KeyStore::open(&path, options(&facts).prefix("other"));
    assert!(
        matches!(result, Err(Error::PrefixMismatch { .. })),
        "{result:?}"
    );
    assert!(
        std::fs::read(&path).unwrap() == before,
        "a refused open changed the file"
    );

    // The right pepper still opens it, and so does no prefix (the store's own is used).
    let store = KeyStore::open(
        &path,
        Options::new()
            .pepper(hex(str_of(&facts["pepper_hex"])))
            .flush_interval(Duration::ZERO),
    )
    .unwrap();
    assert_eq!(store.prefix(), "ks");
    check_facts(&store, &facts, |_| 0);
}
