//! A store file whose pages are damaged (a bad disk, a half-copied backup, an attacker) gives a
//! typed error on every call, never a panic that takes the host process down: redb itself
//! panics (`unreachable!`, "Invalid page type") on some damaged pages, so the file backend turns
//! a panic inside the storage engine into `Error::Corrupt`.

mod common;

use keystead::{Error, KeyStore, NewKey};

/// Damages the file in several ways and opens, verifies and lists on each result.
#[test]
fn damaged_pages_are_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let store = KeyStore::open(&path, common::options()).unwrap();
    let keys: Vec<String> = (0..50)
        .map(|i| {
            store
                .create(NewKey::new(format!("k{i}")).metadata([("pad", "x".repeat(200))]))
                .unwrap()
                .key()
                .to_owned()
        })
        .collect();
    store.close().unwrap();
    let pristine = std::fs::read(&path).unwrap();
    let len = pristine.len();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for fill in [0x00u8, 0xaa, 0xff] {
        let mut b = pristine.clone();
        b[4096..].fill(fill);
        cases.push((format!("every page after the first = {fill:#04x}"), b));
    }
    for page in (1..len / 4096).step_by(3) {
        let mut b = pristine.clone();
        for byte in &mut b[page * 4096..(page + 1) * 4096] {
            *byte ^= 0x5a;
        }
        cases.push((format!("page {page} flipped"), b));
    }
    let mut panicked = Vec::new();
    let mut refused = 0;
    for (what, bytes) in &cases {
        std::fs::write(&path, bytes).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let store = match KeyStore::open(&path, common::options()) {
                Ok(store) => store,
                Err(e) => return Err(e),
            };
            for key in &keys {
                store.verify(key, &[])?;
            }
            store.list(&keystead::ListFilter::new())?;
            Ok(())
        });
        match outcome {
            Err(_) => panicked.push(what.clone()),
            Ok(Err(Error::Corrupt(_) | Error::Storage(_) | Error::Io(_))) => refused += 1,
            Ok(Err(other)) => panic!("{what}: unexpected error {other:?}"),
            Ok(Ok(())) => {}
        }
    }
    println!(
        "damaged_pages: {} cases, {refused} refused with a typed error, {} panicked",
        cases.len(),
        panicked.len()
    );
    assert!(refused > 0, "no damage was detected at all (test setup)");
    assert!(panicked.is_empty(), "panicked on: {panicked:?}");
}
