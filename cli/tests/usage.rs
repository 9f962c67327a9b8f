//! `keystead usage ID` (the per-day bar chart, `--json` with every day) and
//! `keystead usage --top N --since D` (the busiest keys) on a store file.
//!
//! The CLI reads ranges that end today, so the fixed dataset is placed relative to today's UTC
//! day: uses are added through the store's backend (`Backend::add_usage`, what a verifying
//! process's flush does) on chosen days, with days without uses between them. A run that
//! straddles midnight UTC is repeated.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use keystead::backend::{Backend, FileBackend, FileOptions, Meta, UsageAdd};
use keystead::KeyId;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_keystead");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `keystead --db DB ARGS` with `LANG` set to `locale` (the other locale variables unset;
/// all unset if `None`).
fn keystead(db: &Path, args: &[&str], locale: Option<&str>) -> Run {
    match locale {
        Some(locale) => keystead_env(db, args, &[("LANG", locale)]),
        None => keystead_env(db, args, &[]),
    }
}

/// `keystead --db DB ARGS` with only these locale variables set.
fn keystead_env(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("KEYSTEAD_DB")
        .env_remove("KEYSTEAD_PEPPER")
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .env_remove("LANG")
        .timeout(Duration::from_secs(60));
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let run = Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    run
}

fn ok(db: &Path, args: &[&str], locale: Option<&str>) -> String {
    let run = keystead(db, args, locale);
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    run.stdout
}

fn json_of(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(db, &all, None)).unwrap()
}

fn today() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    u32::try_from(secs / 86_400).unwrap()
}

fn midnight(day: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(day) * 86_400)
}

/// `2026-01-31`.
fn date(day: u32) -> String {
    humantime::format_rfc3339_seconds(midnight(day)).to_string()[..10].to_owned()
}

/// The time of the last use the fixture records on `day`: 01:00 UTC.
fn last_use(day: u32) -> String {
    humantime::format_rfc3339_seconds(midnight(day) + Duration::from_secs(3600)).to_string()
}

/// Runs `test` with today's UTC day, again if the day changed while it ran.
fn on_one_day(test: impl Fn(u32) -> bool) {
    for _ in 0..3 {
        let day = today();
        let done = test(day);
        if done && today() == day {
            return;
        }
    }
    panic!("the UTC day kept changing under the test");
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    /// Keys "k0", "k1", "k2", "k3" in id order.
    ids: Vec<String>,
}

/// Four keys, named in id order, with uses on days relative to `today`:
///
/// | key | today-6 | today-4 | today-3 | today-1 | today |
/// |-----|---------|---------|---------|---------|-------|
/// | k0  |         |         | 3       | 12      | 6     |
/// | k1  |         | 21      |         |         |       |
/// | k2  | 40      |         |         |         | 21    |
/// | k3  |         |         |         |         |       |
fn fixture(today: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keystead.redb");
    let mut ids: Vec<String> = (0..4)
        .map(|i| {
            let created = json_of(&db, &["create", "--name", &format!("tmp{i}")]);
            created["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort_by_key(|id| id.parse::<KeyId>().unwrap().as_u64());
    for (i, id) in ids.iter().enumerate() {
        ok(&db, &["rename", id, &format!("k{i}")], None);
    }
    let backend = FileBackend::new(&db, FileOptions::new());
    backend.open(&Meta::new(), false).unwrap();
    let uses = [
        (0, today - 3, 3),
        (0, today - 1, 12),
        (0, today, 6),
        (1, today - 4, 21),
        (2, today - 6, 40),
        (2, today, 21),
    ];
    let mut batch: Vec<UsageAdd> = uses
        .iter()
        .map(|&(key, day, count)| UsageAdd {
            id: ids[key].parse::<KeyId>().unwrap().as_u64(),
            day,
            count,
            last_used_ms: i64::from(day) * 86_400_000 + 3_600_000,
        })
        .collect();
    batch.sort_by_key(|u| (u.id, u.day));
    backend.add_usage(&batch).unwrap();
    drop(backend);
    Fixture { _dir: dir, db, ids }
}

#[test]
fn the_chart_shows_every_day_scaled_to_the_busiest_with_exact_counts() {
    on_one_day(|d| {
        let f = fixture(d);
        let k0 = &f.ids[0];
        let head = format!(
            "Key {k0} \"k0\": 21 successful verifications in the last 5 UTC days ({} to {}).\n",
            date(d - 4),
            date(d)
        );
        let tail = format!("All time: 21 uses, last used {}.\n", last_use(d));
        // 10 (date) + 1 + 66 (bar) + 1 + 2 (count) = 80 columns. 12 fills the bar; 6 is half
        // of it (33 cells); 3 is a quarter (16.5 cells: 17 `#`, or 16 full blocks and a half).
        let row = |day: u32, bar: &str, count: u64| {
            let pad = 66 - bar.chars().count();
            format!("{} {bar}{} {count:>2}\n", date(day), " ".repeat(pad))
        };
        let ascii = [
            row(d - 4, "", 0),
            row(d - 3, &"#".repeat(17), 3),
            row(d - 2, "", 0),
            row(d - 1, &"#".repeat(66), 12),
            row(d, &"#".repeat(33), 6),
        ]
        .concat();
        let unicode = [
            row(d - 4, "", 0),
            row(d - 3, &format!("{}▌", "█".repeat(16)), 3),
            row(d - 2, "", 0),
            row(d - 1, &"█".repeat(66), 12),
            row(d, &"█".repeat(33), 6),
        ]
        .concat();
        let args = ["usage", k0, "--days", "5"];
        // No locale set, or a non-UTF-8 one: ASCII.
        assert_eq!(ok(&f.db, &args, None), format!("{head}{ascii}{tail}"));
        assert_eq!(
            ok(&f.db, &args, Some("en_US.ISO-8859-1")),
            format!("{head}{ascii}{tail}")
        );
        // A UTF-8 locale: block elements; `--ascii` overrides it.
        let drawn = ok(&f.db, &args, Some("C.UTF-8"));
        assert_eq!(drawn, format!("{head}{unicode}{tail}"));
        let mut forced = args.to_vec();
        forced.push("--ascii");
        assert_eq!(
            ok(&f.db, &forced, Some("C.UTF-8")),
            format!("{head}{ascii}{tail}")
        );
        // LC_ALL, then LC_CTYPE, then LANG: the first one set and not empty decides.
        for (env, want) in [
            (&[("LC_ALL", "C"), ("LANG", "C.UTF-8")][..], &ascii),
            (&[("LC_CTYPE", "C"), ("LANG", "C.UTF-8")][..], &ascii),
            (
                &[("LC_ALL", ""), ("LC_CTYPE", "en_US.utf8"), ("LANG", "C")][..],
                &unicode,
            ),
        ] {
            let run = keystead_env(&f.db, &args, env);
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert_eq!(run.stdout, format!("{head}{want}{tail}"), "{env:?}");
        }
        for line in drawn.lines().chain(ascii.lines()) {
            if line.starts_with(|c: char| c.is_ascii_digit()) {
                assert_eq!(line.chars().count(), 80, "{line:?}");
            }
        }

        // A key without uses: every day a zero, no bar.
        let quiet = ok(&f.db, &["usage", &f.ids[3], "--days", "2"], None);
        let zero = |day: u32| format!("{} {} 0\n", date(day), " ".repeat(67));
        assert_eq!(
            quiet,
            format!(
                "Key {} \"k3\": 0 successful verifications in the last 2 UTC days ({} to {}).\n{}{}All time: 0 uses, last used never.\n",
                f.ids[3],
                date(d - 1),
                date(d),
                zero(d - 1),
                zero(d)
            )
        );
        true
    });
}

#[test]
fn usage_json_lists_every_day_of_the_range_zeros_included() {
    on_one_day(|d| {
        let f = fixture(d);
        let k0 = &f.ids[0];
        let got = json_of(&f.db, &["usage", k0, "--days", "5"]);
        let day = |day: u32, count: u64| json!({ "day": format!("{}T00:00:00Z", date(day)), "count": count });
        assert_eq!(
            got,
            json!({
                "id": k0,
                "name": "k0",
                "days": 5,
                "from": date(d - 4),
                "to": date(d),
                "total": 21,
                "daily": [day(d - 4, 0), day(d - 3, 3), day(d - 2, 0), day(d - 1, 12), day(d, 6)],
                "use_count": 21,
                "last_used_at": last_use(d),
            })
        );
        // The default is 30 days, oldest first.
        let month = json_of(&f.db, &["usage", k0]);
        let daily = month["daily"].as_array().unwrap();
        assert_eq!(daily.len(), 30);
        assert_eq!(daily[0], day(d - 29, 0));
        assert_eq!(daily[29], day(d, 6));
        true
    });
}

#[test]
fn top_ranks_the_busiest_keys_of_the_window() {
    on_one_day(|d| {
        let f = fixture(d);
        let (k0, k1, k2) = (&f.ids[0], &f.ids[1], &f.ids[2]);
        // Ids sort the same as text and as numbers (docs/cli.md: ties go by id).
        assert!(k0 < k1 && k1 < k2);
        // The last 7 UTC days (today-6 ..= today): k2 61, k0 21, k1 21 (tie: k0 has the lower
        // id); 103 in all.
        let text = ok(&f.db, &["usage", "--top", "5", "--since", "7d"], None);
        let expected = format!(
            "Busiest keys over the last 7 UTC days ({} to {}): 103 successful verifications by 3 keys.\n\
             RANK  ID            NAME  USES  SHARE  LAST USED\n\
             1     {k2}  k2    61    59.2%  {}\n\
             2     {k0}  k0    21    20.4%  {}\n\
             3     {k1}  k1    21    20.4%  {}\n",
            date(d - 6),
            date(d),
            last_use(d),
            last_use(d),
            last_use(d - 4),
        );
        assert_eq!(text, expected);
        // 7d is the default window.
        assert_eq!(ok(&f.db, &["usage", "--top", "5"], None), expected);

        // 24h is today only: k2 21, k0 6. --top 1 cuts the list, not the totals.
        let json = json_of(&f.db, &["usage", "--top", "1", "--since", "24h"]);
        assert_eq!(
            json,
            json!({
                "since": "24h",
                "days": 1,
                "from": date(d),
                "to": date(d),
                "total": 27,
                "keys_used": 2,
                "top": [{
                    "rank": 1,
                    "id": k2,
                    "name": "k2",
                    "count": 21,
                    "share_percent": 77.8,
                    "last_used_at": last_use(d),
                }],
            })
        );
        // 36h rounds up to 2 days: today and yesterday.
        let two = json_of(&f.db, &["usage", "--top", "3", "--since", "36h"]);
        assert_eq!(two["days"], 2);
        assert_eq!(two["total"], 39);
        let ranked: Vec<(&str, u64)> = two["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["name"].as_str().unwrap(), k["count"].as_u64().unwrap()))
            .collect();
        assert_eq!(ranked, vec![("k2", 21), ("k0", 18)]);

        // A deleted key's usage goes with it.
        ok(&f.db, &["delete", k2], None);
        let after = json_of(&f.db, &["usage", "--top", "5", "--since", "30d"]);
        assert_eq!(after["total"], 42);
        assert_eq!(after["keys_used"], 2);
        assert_eq!(after["top"][0]["id"], k0.as_str());
        assert_eq!(after["top"][0]["share_percent"], 50.0);

        // A window without uses.
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("keystead.redb");
        ok(&empty, &["init"], None);
        let none = ok(&empty, &["usage", "--top", "3", "--since", "30d"], None);
        assert_eq!(
            none,
            format!(
                "Busiest keys over the last 30 UTC days ({} to {}): 0 successful verifications by 0 keys.\n",
                date(d - 29),
                date(d)
            )
        );
        true
    });
}

#[test]
fn bad_combinations_and_values_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keystead.redb");
    let created = json_of(&db, &["create", "--name", "x"]);
    let id = created["id"].as_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["usage", id, "--top", "3"], "cannot be used with"),
        (&["usage", "--top", "0"], "0 is not in 1..="),
        (&["usage", "--top", "-1"], "-1"),
        (&["usage", "--top", "many"], "many"),
        (
            &["usage", "--top", "3", "--since", "7x"],
            "unknown unit `x`",
        ),
        (&["usage", "--top", "3", "--since", "0d"], "is zero"),
        (&["usage", "--top", "3", "--since", "d"], "has no number"),
        (&["usage", "--top", "3", "--since", "7"], "has no unit"),
        (
            &["usage", "--top", "3", "--since", "36601d"],
            "longer than 36600 days",
        ),
        (&["usage", id, "--since", "7d"], "--since 7d needs --top N"),
        (
            &["usage", "--top", "3", "--days", "7"],
            "cannot be used with",
        ),
        (&["usage"], "needs a key id"),
        (&["usage", id, "--days", "0"], "0"),
    ];
    for (args, needle) in cases {
        let run = keystead(&db, args, None);
        assert_eq!(run.code, 2, "{args:?}: {} {}", run.stdout, run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.starts_with("keystead: ") && run.stderr.contains(needle),
            "{args:?}: {}",
            run.stderr
        );
    }
}
