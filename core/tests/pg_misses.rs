#![cfg(feature = "postgres")]
//! The bound on database lookups of uncached ids (issue 14): key ids are public and the
//! checksum is computable, so a flood of random well-formed keys must not become one query
//! each. Above `max_misses_per_sec` (here the location parameter) verify fails with
//! `StoreUnavailable` (kind `Unavailable`), never `not_found`; cached keys are not affected;
//! the budget refills over time.

mod common;
mod support;

use std::time::{Duration, Instant};

use keystead::{ErrorKind, KeyStore, NewKey, Outcome};

const PER_SEC: u32 = 50;
const FLOOD: usize = 500;

/// `key` with its id replaced by `id` and the checksum recomputed: a well-formed key of this
/// store's prefix whose id is (almost surely) unknown.
fn with_id(key: &str, id: u64) -> String {
    let body_start = key.len() - 61;
    let mut out = key[..body_start].to_owned();
    out.push_str(&common::base62(id, 12));
    out.push_str(&key[body_start + 12..key.len() - 6]);
    let crc = common::crc32(out.as_bytes());
    out.push_str(&common::base62(u64::from(crc), 6));
    out
}

#[test]
fn a_flood_of_unknown_ids_is_refused_above_the_bound_and_cached_keys_still_verify() {
    let location = format!(
        "{}&max_misses_per_sec={PER_SEC}",
        common::pg_plain_location()
    );
    let store = KeyStore::open(&location, common::options()).unwrap();
    let created = store.create(NewKey::new("cached")).unwrap();
    let key = created.key().to_owned();
    // Warm it (this first lookup is a miss and spends a token; afterwards it is cached).
    assert_eq!(store.verify(&key, &[]).unwrap().outcome(), Outcome::Valid);
    // The helper of the other tests gives a well-formed unknown id too.
    assert_eq!(
        store
            .verify(&common::unknown_id(&key), &[])
            .unwrap()
            .outcome(),
        Outcome::NotFound
    );

    let (mut rng, seed) = support::Rng::from_env();
    let mut not_found = 0usize;
    let mut refused = 0usize;
    let mut problems = Vec::new();
    let mut message = None;
    let started = Instant::now();
    for i in 0..FLOOD {
        let unknown = with_id(&key, rng.next_u64());
        match store.verify(&unknown, &[]) {
            Ok(v) if v.outcome() == Outcome::NotFound => not_found += 1,
            Ok(v) => problems.push(format!("unknown id #{i} answered {:?}", v.outcome())),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                refused += 1;
                message.get_or_insert_with(|| e.to_string());
            }
            Err(e) => problems.push(format!("unknown id #{i} failed with another kind: {e}")),
        }
        if i % 10 == 0 {
            // A cached key never needs the database: unaffected by the flood.
            match store.verify(&key, &[]) {
                Ok(v) if v.outcome() == Outcome::Valid => {}
                other => problems.push(format!(
                    "the cached key during the flood (after #{i}): {:?}",
                    other.map(|v| v.outcome())
                )),
            }
            // A wrong secret for a cached id is judged from the cache as well.
            match store.verify(&common::wrong_secret(&key), &[]) {
                Ok(v) if v.outcome() == Outcome::NotFound => {}
                other => problems.push(format!(
                    "a wrong secret for the cached id during the flood (after #{i}): {:?}",
                    other.map(|v| v.outcome())
                )),
            }
        }
    }
    let elapsed = started.elapsed();
    assert!(
        problems.is_empty(),
        "seed {seed}:\n{}",
        support::first_lines(&problems)
    );
    println!(
        "flood of {FLOOD} unknown ids in {elapsed:?}: {not_found} not_found, {refused} refused \
         ({})",
        message.as_deref().unwrap_or("")
    );
    assert!(
        refused >= 1,
        "no lookup was refused: the bound of {PER_SEC}/s from the location was not applied"
    );
    assert_eq!(not_found + refused, FLOOD);
    // The bucket holds at most PER_SEC tokens and earns PER_SEC per second: however slow the
    // machine, the flood cannot have had more lookups than this (+1 for rounding).
    let budget = f64::from(PER_SEC) * (1.0 + elapsed.as_secs_f64()) + 1.0;
    assert!(
        (not_found as f64) <= budget,
        "{not_found} lookups in {elapsed:?}, more than the bound allows ({budget:.0})"
    );
    let message = message.unwrap();
    assert!(
        message.contains("max_misses_per_sec"),
        "the error should name the setting: {message}"
    );

    // The budget refills: after more than a second a new unknown id is looked up again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        store
            .verify(&with_id(&key, rng.next_u64()), &[])
            .unwrap()
            .outcome(),
        Outcome::NotFound
    );
    assert_eq!(store.verify(&key, &[]).unwrap().outcome(), Outcome::Valid);
}
