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
    let schema = format!("ks_cli_{}", std::process::id());
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
