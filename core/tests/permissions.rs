//! File permissions and where secrets may appear.
//!
//! Extends open.rs (`the_file_is_created_private`, default umask) and secrets.rs (no
//! plaintext in the file, in `CreatedKey`/`Verification`/`Options` Debug, or in argument
//! errors) with: mode 0600 under a permissive umask and after writes, no side files, peppered
//! stores, Debug of every public type that holds key data, and the Display of errors a key
//! pasted into the wrong place can produce.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use keystead::{KeyStatus, KeyStore, ListFilter, NewKey, Options};

const CHILD_ENV: &str = "KEYSTEAD_PERMISSIONS_CHILD";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The child: creates a store (under the umask its shell set) and writes to it.
#[test]
#[ignore = "a child role, not a test: the_store_is_created_0600_whatever_the_umask_and_stays_so runs it in a subprocess"]
fn umask_child_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        panic!("a child role, not a test: the_store_is_created_0600_whatever_the_umask_and_stays_so runs it with {} set", CHILD_ENV);
    };
    let store = KeyStore::open(&path, Options::new().flush_interval(Duration::ZERO)).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    store.rotate(created.info().id(), Duration::ZERO).unwrap();
    assert!(!store.verify(created.key(), &[]).unwrap().is_valid());
    store.close().unwrap();
}

#[test]
fn the_store_is_created_0600_whatever_the_umask_and_stays_so() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for umask in ["000", "002", "022", "077"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("keystead.redb");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(&exe)
            .args([
                "--ignored",
                "--exact",
                "umask_child_role",
                "--quiet",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .status()
            .unwrap();
        assert!(status.success(), "umask {umask}: child failed");
        assert_eq!(mode(&path), 0o600, "umask {umask}");
        // Nothing else was created beside it (no lock, journal or temporary files).
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["keystead.redb"], "umask {umask}");
        // Reopening and writing here (default umask) keeps the mode.
        let store = KeyStore::open(&path, Options::new()).unwrap();
        store.create(NewKey::new("again")).unwrap();
        store.close().unwrap();
        assert_eq!(mode(&path), 0o600, "umask {umask}, after a reopen");
    }
}

/// Every 16-character run of the key's secret part.
fn secret_runs(key: &str) -> Vec<String> {
    let secret = &key[key.len() - 49..key.len() - 6];
    secret
        .as_bytes()
        .windows(16)
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect()
}

fn leaks(text: &str, keys: &[String]) -> Option<String> {
    keys.iter()
        .flat_map(|k| secret_runs(k))
        .find(|run| text.contains(run.as_str()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_peppered_store_holds_neither_the_pepper_nor_any_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    let pepper = b"pepper-from-the-secret-manager-5d1c9a".to_vec();
    let store = KeyStore::open(
        &path,
        Options::new()
            .pepper(pepper.clone())
            .flush_interval(Duration::ZERO)
            .actor("admin@example"),
    )
    .unwrap();
    let mut keys = Vec::new();
    for i in 0..30 {
        let created = store
            .create(NewKey::new(format!("key-{i}")).metadata([("team", "t")]))
            .unwrap();
        keys.push(created.key().to_owned());
        if i % 3 == 0 {
            keys.push(
                store
                    .rotate(created.info().id(), Duration::from_secs(60))
                    .unwrap()
                    .key()
                    .to_owned(),
            );
        }
        if i % 5 == 0 {
            store.revoke(created.info().id()).unwrap();
        }
    }
    for k in &keys {
        store.verify(k, &[]).unwrap();
    }
    store.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(contains(&bytes, b"key-29"), "the scan sees the records");
    assert!(!contains(&bytes, &pepper), "the pepper is in the file");
    assert!(
        !contains(&bytes, &pepper[..12]),
        "part of the pepper is in the file"
    );
    // One pass over the file: any 16-character run of any secret.
    let runs: std::collections::HashSet<Vec<u8>> = keys
        .iter()
        .flat_map(|k| secret_runs(k))
        .map(String::into_bytes)
        .collect();
    assert!(
        bytes.windows(16).all(|w| !runs.contains(w)),
        "part of a secret is on disk"
    );
}

#[test]
fn debug_output_of_every_public_type_is_free_of_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let pepper = "pepper-value-7f3e1b-0123456789abcdef";
    let store = KeyStore::open(
        dir.path().join("k.redb"),
        Options::new()
            .pepper(pepper.as_bytes().to_vec())
            .flush_interval(Duration::ZERO),
    )
    .unwrap();
    let created = store
        .create(NewKey::new("k").scopes(["a:b"]).metadata([("m", "v")]))
        .unwrap();
    let rotated = store
        .rotate(created.info().id(), Duration::from_secs(60))
        .unwrap();
    let keys = vec![created.key().to_owned(), rotated.key().to_owned()];
    let scope_denied = store.verify(rotated.key(), &["c:d"]).unwrap();
    let outputs = vec![
        format!("{store:?}"),
        format!("{created:?}"),
        format!("{rotated:?}"),
        format!("{:?}", created.info()),
        format!("{:?}", store.list(&ListFilter::new()).unwrap()),
        format!("{:?}", store.get(created.info().id()).unwrap()),
        format!("{:?}", store.audit(None, 100).unwrap()),
        format!("{:?}", store.verify(created.key(), &[]).unwrap()),
        format!("{scope_denied:?}"),
        format!("{:?}", scope_denied.www_authenticate()),
        format!("{:?}", keystead::parse_key(created.key()).unwrap()),
        format!(
            "{:?}",
            store
                .usage(
                    created.info().id(),
                    std::time::UNIX_EPOCH,
                    std::time::SystemTime::now()
                )
                .unwrap()
        ),
    ];
    for out in &outputs {
        assert!(leaks(out, &keys).is_none(), "secret in {out}");
        assert!(!out.contains(pepper), "pepper in {out}");
    }
    // The rotate audit entry names the new key by id only.
    let audit = format!("{:?}", store.audit(None, 100).unwrap());
    assert!(audit.contains(&rotated.info().id().to_string()));
}

#[test]
fn errors_about_a_key_pasted_in_the_wrong_place_do_not_echo_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let store = KeyStore::open(&path, Options::new().flush_interval(Duration::ZERO)).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    let key = created.key().to_owned();
    let id = created.info().id();
    let keys = vec![key.clone()];
    let with_space = format!("{key} ");
    let errors: Vec<(&str, String)> = vec![
        (
            "key as a key id",
            key.parse::<keystead::KeyId>().unwrap_err().to_string(),
        ),
        (
            "key as a status",
            KeyStatus::parse(&key).unwrap_err().to_string(),
        ),
        (
            "key as a scope",
            store
                .set_scopes(id, &[with_space.as_str()])
                .unwrap_err()
                .to_string(),
        ),
        (
            "key as a required scope",
            store
                .verify(&key, &[with_space.as_str()])
                .unwrap_err()
                .to_string(),
        ),
        (
            "key (plus a bad character) as a metadata key",
            store
                .set_metadata(id, BTreeMap::from([(format!("{key}!"), "v".to_owned())]))
                .unwrap_err()
                .to_string(),
        ),
        (
            "key as a metadata value, too long",
            store
                .set_metadata(id, BTreeMap::from([("k".to_owned(), key.repeat(20))]))
                .unwrap_err()
                .to_string(),
        ),
        (
            "key plus a newline as a name",
            store
                .rename(id, &format!("{key}\n"))
                .unwrap_err()
                .to_string(),
        ),
        (
            "key as a prefix",
            KeyStore::open(
                dir.path().join("other.redb"),
                Options::new().prefix(key.clone()),
            )
            .unwrap_err()
            .to_string(),
        ),
        (
            "key as a list filter status",
            KeyStatus::parse(&format!("revoked {key}"))
                .unwrap_err()
                .to_string(),
        ),
    ];
    for (what, message) in &errors {
        assert!(leaks(message, &keys).is_none(), "{what}: {message}");
        // Not even a short piece of the secret (the first 12 characters of a key are its
        // prefix and id, which are public).
        let secret = &key[key.len() - 49..key.len() - 6];
        for w in secret.as_bytes().windows(8) {
            assert!(
                !message.as_bytes().windows(8).any(|m| m == w),
                "{what}: {message}"
            );
        }
    }
    // Malformed-key reasons and header errors are fixed texts. The last (checksum) character
    // is replaced by a different one: a fixed 'x' left a key that already ended in 'x' valid
    // (1 run in 62).
    let last = if key.ends_with('x') { 'y' } else { 'x' };
    let typo = format!("{}{last}", &key[..key.len() - 1]);
    let reason = keystead::parse_key(&typo).unwrap_err();
    assert!(!reason.to_string().contains(&key[15..30]));
}
