//! `keystead --db postgres://…`: the admin commands on a PostgreSQL store, and the database
//! password never printed. Needs the server `scripts/test-postgres.sh` starts
//! (`KEYSTEAD_TEST_PG_URL`); without it the test fails, it does not skip.

use assert_cmd::Command;

const BIN: &str = env!("CARGO_BIN_EXE_keystead");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn keystead(db: &str, args: &[&str], stdin: &str) -> Run {
    let out = Command::new(BIN)
        .env("KEYSTEAD_DB", db)
        .env_remove("KEYSTEAD_PEPPER")
        .args(args)
        .write_stdin(stdin.to_owned())
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

/// A fresh schema in the test database, over plain TCP on loopback.
fn location() -> (String, String) {
    let url = std::env::var("KEYSTEAD_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "KEYSTEAD_TEST_PG_URL is not set: run through scripts/test-postgres.sh (the \
             README's test command does)"
        )
    });
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let schema = format!(
        "ks_cli_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut client = postgres_client(&url);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p.to_owned())
        .expect("the test URL has a password");
    (
        format!("{url}?sslmode=disable&options=-csearch_path%3D{schema}"),
        password,
    )
}

fn postgres_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

#[test]
fn the_admin_commands_work_on_a_database_and_never_print_its_password() {
    let (db, password) = location();
    let mut outputs = Vec::new();

    let run = keystead(&db, &["init"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Created store"), "{}", run.stdout);
    outputs.push(run);
    let run = keystead(&db, &["init"], "");
    assert!(run.stdout.contains("already exists"), "{}", run.stdout);
    outputs.push(run);

    let run = keystead(
        &db,
        &[
            "--json",
            "create",
            "--name",
            "dev-server-integration",
            "--scope",
            "chat:completions",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let created: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    outputs.push(run);

    let run = keystead(
        &db,
        &["verify", "--scope", "chat:completions"],
        &format!("Bearer {key}\n"),
    );
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    outputs.push(run);

    let run = keystead(&db, &["--json", "stats"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stats: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(stats["keys"]["total"], 1);
    assert!(stats["file_bytes"].is_null());
    outputs.push(run);

    let run = keystead(&db, &["check"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("intact"), "{}", run.stdout);
    outputs.push(run);

    let run = keystead(&db, &["revoke", &id], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    outputs.push(run);
    let run = keystead(&db, &["verify"], &format!("{key}\n"));
    assert_ne!(run.code, 0, "a revoked key does not verify");
    outputs.push(run);

    // A database that cannot be reached: the unavailable exit code, no password.
    let (head, tail) = db.split_once('@').unwrap();
    let (_, path) = tail.split_once('/').unwrap();
    let unreachable = format!("{head}@127.0.0.1:1/{path}");
    let run = keystead(&unreachable, &["list"], "");
    assert_ne!(run.code, 0);
    outputs.push(run);

    for run in &outputs {
        assert!(
            !run.stdout.contains(&password) && !run.stderr.contains(&password),
            "the database password was printed: {} {}",
            run.stdout,
            run.stderr
        );
    }
}

/// `usage ID` (the chart, every day) and `usage --top` on a PostgreSQL store: uses counted by
/// `verify` (today), plus uses on the two days before, added as a flush adds them.
#[test]
fn usage_charts_and_top_keys_work_on_a_database() {
    use keystead::backend::{Backend, Meta, PostgresBackend, PostgresOptions, UsageAdd};
    use keystead::KeyId;
    use std::time::{SystemTime, UNIX_EPOCH};

    let today = || {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        u32::try_from(secs / 86_400).unwrap()
    };
    let date = |day: u32| {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(u64::from(day) * 86_400);
        humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned()
    };
    // Repeated if the UTC day changes while it runs.
    for _ in 0..3 {
        let d = today();
        let (db, password) = location();
        let mut keys = Vec::new();
        for name in ["k0", "k1"] {
            let run = keystead(&db, &["--json", "create", "--name", name], "");
            assert_eq!(run.code, 0, "{}", run.stderr);
            let created: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
            keys.push((
                created["id"].as_str().unwrap().to_owned(),
                created["key"].as_str().unwrap().to_owned(),
            ));
        }
        let (k0, k1) = (&keys[0].0, &keys[1].0);
        for _ in 0..2 {
            let run = keystead(&db, &["verify"], &format!("{}\n", keys[0].1));
            assert_eq!(run.code, 0, "{}", run.stderr);
        }
        let backend = PostgresBackend::new(&db, PostgresOptions::new()).unwrap();
        backend.open(&Meta::new(), false).unwrap();
        let id = |text: &str| text.parse::<KeyId>().unwrap().as_u64();
        let mut batch = vec![
            UsageAdd {
                id: id(k0),
                day: d - 2,
                count: 4,
                last_used_ms: i64::from(d - 2) * 86_400_000,
            },
            UsageAdd {
                id: id(k1),
                day: d - 1,
                count: 8,
                last_used_ms: i64::from(d - 1) * 86_400_000 + 3_600_000,
            },
        ];
        batch.sort_by_key(|u| (u.id, u.day));
        backend.add_usage(&batch).unwrap();
        drop(backend);

        // 4, 0, 2: 4 fills the 67 columns the bar area has next to 1-digit counts; 2 is half
        // of it, 33.5 columns, rounded to 34.
        let chart = keystead(&db, &["usage", k0, "--days", "3", "--ascii"], "");
        assert_eq!(chart.code, 0, "{}", chart.stderr);
        let lines: Vec<&str> = chart.stdout.lines().collect();
        assert_eq!(lines.len(), 5, "{}", chart.stdout);
        assert_eq!(
            lines[0],
            format!(
                "Key {k0} \"k0\": 6 successful verifications in the last 3 UTC days ({} to {}).",
                date(d - 2),
                date(d)
            )
        );
        assert_eq!(lines[1], format!("{} {} 4", date(d - 2), "#".repeat(67)));
        assert_eq!(lines[2], format!("{} {} 0", date(d - 1), " ".repeat(67)));
        assert_eq!(
            lines[3],
            format!("{} {}{} 2", date(d), "#".repeat(34), " ".repeat(33))
        );
        assert!(
            lines[4].starts_with("All time: 6 uses, last used "),
            "{}",
            lines[4]
        );

        let run = keystead(&db, &["--json", "usage", k0, "--days", "3"], "");
        assert_eq!(run.code, 0, "{}", run.stderr);
        let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let counts: Vec<u64> = json["daily"]
            .as_array()
            .unwrap()
            .iter()
            .map(|day| day["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, vec![4, 0, 2]);

        let run = keystead(&db, &["--json", "usage", "--top", "5", "--since", "3d"], "");
        assert_eq!(run.code, 0, "{}", run.stderr);
        let top: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(top["total"], 14);
        assert_eq!(top["keys_used"], 2);
        let ranked: Vec<(&str, u64, f64)> = top["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["id"].as_str().unwrap(),
                    k["count"].as_u64().unwrap(),
                    k["share_percent"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ranked, vec![(k1.as_str(), 8, 57.1), (k0.as_str(), 6, 42.9)]);
        let text = keystead(&db, &["usage", "--top", "1", "--since", "24h"], "");
        assert_eq!(text.code, 0, "{}", text.stderr);
        assert!(
            text.stdout
                .contains("2 successful verifications by 1 key.\nRANK"),
            "{}",
            text.stdout
        );
        assert!(
            text.stdout
                .contains(&format!("1     {k0}  k0    2     100.0%")),
            "{}",
            text.stdout
        );
        // Refused before the database is asked.
        let run = keystead(&db, &["usage", k0, "--top", "1"], "");
        assert_eq!(run.code, 2);
        for run in [&chart, &text] {
            assert!(!run.stdout.contains(&password) && !run.stderr.contains(&password));
        }
        if today() == d {
            return;
        }
    }
    panic!("the UTC day kept changing under the test");
}
