#![cfg(feature = "postgres")]
//! Several stores in one database, one schema each (chosen by the location's `search_path`):
//! every store's writes notify the one `keystead` channel, so a store must act only on its
//! own notifications. Before the payload named its store, a busier neighbour's higher
//! generation raised this store's change signal for good, and every verify re-read the change
//! feed — a database round trip per request instead of none (found by a CI run where another
//! test's schema sat in the same database).

mod common;

use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Outcome};

#[test]
fn a_neighbouring_stores_writes_neither_refresh_this_one_nor_hide_its_own_changes() {
    // Listen on, and an interval so long that only a notification can make this store read
    // its change feed during the test.
    let options = common::options().refresh_interval(Duration::from_secs(3600));
    let ours = common::pg_plain_location();
    let store = KeyStore::open(&ours, options.clone()).unwrap();
    let watched = store.create(NewKey::new("watched")).unwrap();
    let other_key = store.create(NewKey::new("other")).unwrap();
    assert!(store.verify(watched.key(), &[]).unwrap().is_valid());
    assert!(store.verify(other_key.key(), &[]).unwrap().is_valid());

    // A neighbour in another schema of the same database, far ahead in generations.
    let neighbour = KeyStore::open(common::pg_plain_location(), options.clone()).unwrap();
    for i in 0..20 {
        neighbour.create(NewKey::new(format!("n{i}"))).unwrap();
    }

    // Then a change to our store from another handle (another host). Notifications reach a
    // listener in commit order, so once this store has acted on this one, the neighbour's
    // twenty have reached it too.
    let admin = KeyStore::open(&ours, options).unwrap();
    admin.revoke(watched.info().id()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = store.verify(watched.key(), &[]).unwrap().outcome();
        if outcome == Outcome::Revoked {
            break;
        }
        assert_eq!(outcome, Outcome::Valid);
        assert!(
            Instant::now() < deadline,
            "the revocation from another handle was not seen within 30 s (listener down?)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // The neighbour's notifications must not make every verify read the feed.
    let before = store.stats().refreshes;
    for _ in 0..20 {
        assert!(store.verify(other_key.key(), &[]).unwrap().is_valid());
    }
    assert_eq!(
        store.stats().refreshes,
        before,
        "verifies of a cached key re-read the change feed: another store's notifications \
         raised this store's change signal"
    );
}
