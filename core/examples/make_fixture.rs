//! Writes a store fixture for `core/tests/old_store.rs`: a small throwaway store made through
//! the public API, and a JSON file with its plaintext keys and everything the API reports
//! about it (ids, names, statuses, scopes, metadata, times, usage, the audit log, the outcome
//! of verifying each key).
//!
//! The committed `core/tests/fixtures/store-main-1670dbb.{redb,json}` were written by this
//! program at commit 1670dbb (main before the storage seam of issue 13), so the test proves
//! that files written by that build keep opening unchanged. To add a fixture from a later
//! build, check that build out and run, from the repository root:
//!
//! ```sh
//! cargo run -p keystead --example make_fixture -- core/tests/fixtures store-main-$(git rev-parse --short HEAD)
//! ```
//!
//! then add a test for it. Never regenerate an existing fixture: it stands for the build that
//! wrote it. The program refuses to overwrite one.
//!
//! As deterministic as the public API allows: a fixed pepper, prefix, actor, names, scopes,
//! metadata, expiries and order of operations. Key ids, secrets, salts and timestamps are
//! random or the current time, which is why the JSON records them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keystead::{
    AuditEntry, CreatedKey, KeyInfo, KeyStatus, KeyStore, ListFilter, NewKey, Options, Outcome,
};
use serde_json::{json, Value};

/// The store's pepper (32 bytes). A test fixture's, never to be used for a real store.
const PEPPER: &[u8; 32] = b"keystead-test-fixture-pepper-v01";
const PREFIX: &str = "ks";
const ACTOR: &str = "fixture-generator";
/// The rotation grace of `delta`: long enough that old and new keys both verify for centuries.
const LONG_GRACE: Duration = Duration::from_secs(500 * 365 * 86_400);

fn at_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// 9000-01-01T00:00:00Z.
fn year_9000() -> SystemTime {
    at_secs(221_845_392_000)
}

/// 8000-01-01T00:00:00Z.
fn year_8000() -> SystemTime {
    at_secs(190_288_396_800)
}

fn ms(t: SystemTime) -> i64 {
    i64::try_from(
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// One key of the fixture, as made.
struct Entry {
    label: &'static str,
    key: String,
    /// Verifications the generator makes (required scopes, expected outcome). The valid
    /// ones are the key's uses, so `use_count` is the number of valid checks.
    checks: Vec<(Vec<&'static str>, Outcome)>,
}

fn entry(
    label: &'static str,
    created: &CreatedKey,
    checks: Vec<(Vec<&'static str>, Outcome)>,
) -> Entry {
    Entry {
        label,
        key: created.key().to_owned(),
        checks,
    }
}

fn info_json(info: &KeyInfo) -> Value {
    json!({
        "id": info.id().to_string(),
        "name": info.name(),
        "status": info.status().as_str(),
        "scopes": info.scopes(),
        "metadata": info.metadata(),
        "created_at_ms": ms(info.created_at()),
        "updated_at_ms": ms(info.updated_at()),
        "expires_at_ms": info.expires_at().map(ms),
        "last_used_at_ms": info.last_used_at().map(ms),
        "use_count": info.use_count(),
        "replaces": info.replaces().map(|id| id.to_string()),
        "replaced_by": info.replaced_by().map(|id| id.to_string()),
    })
}

fn audit_json(entry: &AuditEntry) -> Value {
    json!({
        "seq": entry.seq,
        "at_ms": ms(entry.at),
        "actor": entry.actor,
        "action": entry.action.as_str(),
        "key_id": entry.key_id.to_string(),
        "detail": entry.detail,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, stem] = args.as_slice() else {
        return Err(
            "usage: make_fixture <output directory> <name, e.g. store-main-1670dbb>".into(),
        );
    };
    let store_path = Path::new(dir).join(format!("{stem}.redb"));
    let json_path = Path::new(dir).join(format!("{stem}.json"));
    for path in [&store_path, &json_path] {
        if path.exists() {
            return Err(
                format!("{} exists; a fixture is never regenerated", path.display()).into(),
            );
        }
    }
    std::fs::create_dir_all(dir)?;
    let options = || {
        Options::new()
            .pepper(PEPPER.to_vec())
            .prefix(PREFIX)
            .actor(ACTOR)
            .flush_interval(Duration::ZERO)
    };
    let store = KeyStore::open(&store_path, options())?;
    let mut entries = Vec::new();

    // alpha: active, with scopes and metadata; 3 uses.
    let alpha = store.create(
        NewKey::new("alpha")
            .scopes(["chat:completions", "embeddings"])
            .metadata([("env", "prod"), ("team", "search")]),
    )?;
    entries.push(entry(
        "alpha",
        &alpha,
        vec![
            (vec![], Outcome::Valid),
            (vec!["embeddings"], Outcome::Valid),
            (vec!["chat:completions", "embeddings"], Outcome::Valid),
            (vec!["images"], Outcome::InsufficientScope),
        ],
    ));

    // beta: disabled, enabled, disabled again.
    let beta = store.create(NewKey::new("beta").scopes(["b:read"]))?;
    let beta_id = beta.info().id();
    store.disable(beta_id)?;
    store.enable(beta_id)?;
    store.disable(beta_id)?;
    entries.push(entry("beta", &beta, vec![(vec![], Outcome::Disabled)]));

    // gamma: revoked.
    let gamma = store.create(NewKey::new("gamma").scopes(["admin"]))?;
    store.revoke(gamma.info().id())?;
    entries.push(entry("gamma", &gamma, vec![(vec![], Outcome::Revoked)]));

    // delta: rotated with a grace of 500 years, so old and new both verify; 2 + 1 uses.
    let delta = store.create(
        NewKey::new("delta")
            .scopes(["read"])
            .metadata([("owner", "ops")]),
    )?;
    let delta_new = store.rotate(delta.info().id(), LONG_GRACE)?;
    let read = || (vec!["read"], Outcome::Valid);
    entries.push(entry("delta-old", &delta, vec![read(), read()]));
    entries.push(entry("delta-new", &delta_new, vec![read()]));

    // epsilon: expires in the year 9000; 1 use.
    let epsilon = store.create(NewKey::new("epsilon").expires_at(year_9000()))?;
    entries.push(entry("epsilon", &epsilon, vec![(vec![], Outcome::Valid)]));

    // eta: renamed, new scopes, metadata and expiry (every setter's audit action); 1 use.
    let eta = store.create(NewKey::new("eta-draft"))?;
    let eta_id = eta.info().id();
    store.rename(eta_id, "eta")?;
    store.set_scopes(eta_id, &["b:read", "x/y.z-1"])?;
    store.set_metadata(
        eta_id,
        BTreeMap::from([("note".to_owned(), "clé 🔑".to_owned())]),
    )?;
    store.set_expiry(eta_id, Some(year_8000()))?;
    entries.push(entry(
        "eta",
        &eta,
        vec![
            (vec!["x/y.z-1"], Outcome::Valid),
            (vec!["chat:completions"], Outcome::InsufficientScope),
        ],
    ));

    // theta: rotated with zero grace, so the old key is expired at once; the new one has 1 use.
    let theta = store.create(NewKey::new("theta"))?;
    let theta_new = store.rotate(theta.info().id(), Duration::ZERO)?;
    entries.push(entry("theta-old", &theta, vec![(vec![], Outcome::Expired)]));
    entries.push(entry(
        "theta-new",
        &theta_new,
        vec![(vec![], Outcome::Valid)],
    ));

    // zeta: deleted.
    let zeta = store.create(NewKey::new("zeta"))?;
    store.delete(zeta.info().id())?;
    let zeta_checks = vec![(vec![], Outcome::NotFound)];

    for e in &entries {
        for (required, outcome) in &e.checks {
            assert_eq!(
                store.verify(&e.key, required)?.outcome(),
                *outcome,
                "{}",
                e.label
            );
        }
    }
    for (required, outcome) in &zeta_checks {
        assert_eq!(store.verify(zeta.key(), required)?.outcome(), *outcome);
    }
    // Closing flushes the uses counted by the checks.
    store.close()?;

    // Everything below is read back through a new handle that never verifies (so it writes
    // nothing), as the test will read it.
    let store = KeyStore::open(&store_path, options().create_if_missing(false))?;
    let checks_json = |checks: &[(Vec<&str>, Outcome)]| -> Vec<Value> {
        checks
            .iter()
            .map(|(required, outcome)| json!({"required": required, "outcome": outcome.as_str()}))
            .collect()
    };
    let mut keys = Vec::new();
    for e in &entries {
        let id = keystead::parse_key(&e.key)?.id;
        let info = store.get(id)?.ok_or("a fixture key is missing")?;
        // What the fixture is meant to hold, so a mistake here cannot become "expected".
        let status = match e.label {
            "beta" => KeyStatus::Disabled,
            "gamma" => KeyStatus::Revoked,
            "theta-old" => KeyStatus::Expired,
            _ => KeyStatus::Active,
        };
        assert_eq!(info.status(), status, "{}", e.label);
        let valid = e
            .checks
            .iter()
            .filter(|(_, o)| *o == Outcome::Valid)
            .count();
        assert_eq!(info.use_count(), u64::try_from(valid)?, "{}", e.label);
        let usage: Vec<Value> = store
            .usage(id, UNIX_EPOCH, year_9000())?
            .iter()
            .map(|u| json!({"day_ms": ms(u.day), "count": u.count}))
            .collect();
        let mut key = info_json(&info);
        let object = key.as_object_mut().ok_or("an object")?;
        object.insert("label".into(), json!(e.label));
        object.insert("key".into(), json!(e.key));
        object.insert("checks".into(), json!(checks_json(&e.checks)));
        object.insert("usage".into(), json!(usage));
        keys.push(key);
    }
    assert!(store.get(zeta.info().id())?.is_none());
    let deleted = vec![json!({
        "label": "zeta",
        "id": zeta.info().id().to_string(),
        "key": zeta.key(),
        "checks": checks_json(&zeta_checks),
    })];
    let listed = store.list(&ListFilter::new())?;
    assert_eq!(listed.len(), entries.len());
    // Oldest first.
    let audit: Vec<Value> = store
        .audit(None, usize::MAX)?
        .iter()
        .rev()
        .map(audit_json)
        .collect();
    store.close()?;
    let fixture = json!({
        "about": "A throwaway test store written by core/examples/make_fixture.rs; the keys \
                  and pepper are test data, valid nowhere else. Read by core/tests/old_store.rs.",
        "written_by": stem,
        "pepper_hex": PEPPER.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "prefix": PREFIX,
        "actor": ACTOR,
        "keys": keys,
        "deleted": deleted,
        "audit": audit,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&fixture)? + "\n")?;
    let size = std::fs::metadata(&store_path)?.len();
    println!(
        "wrote {} ({size} bytes) and {}",
        store_path.display(),
        json_path.display()
    );
    Ok(())
}
