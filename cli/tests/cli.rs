//! End-to-end tests of the `keystead` binary, each in its own temporary directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keystead");
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The fields of a key in every JSON output, in the order the spec lists them.
const KEY_FIELDS: [&str; 12] = [
    "id",
    "name",
    "status",
    "scopes",
    "metadata",
    "created_at",
    "updated_at",
    "expires_at",
    "last_used_at",
    "use_count",
    "replaces",
    "replaced_by",
];

/// A temporary directory with a store path in it; commands run there with a clean environment.
struct Sandbox {
    dir: tempfile::TempDir,
}

/// What a finished command printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().expect("exited normally, not by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn db(&self) -> PathBuf {
        self.path().join("keystead.redb")
    }

    /// `keystead` in the sandbox, without `--db` (so it uses ./keystead.redb).
    fn bare(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.path())
            .env_remove("KEYSTEAD_DB")
            .env_remove("KEYSTEAD_PEPPER")
            .env("USER", "tester")
            .timeout(std::time::Duration::from_secs(60));
        cmd
    }

    /// `keystead --db <sandbox>/keystead.redb ARGS...`.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[])
    }

    fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut cmd = self.bare();
        cmd.arg("--db").arg(self.db()).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(input) = stdin {
            cmd.write_stdin(input);
        }
        let run = Run::from(cmd.output().unwrap());
        assert!(
            !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
            "{args:?} panicked: {}",
            run.stderr
        );
        run
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
        run.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{all:?}: {e}: {text}"))
    }

    /// Creates a key and returns it (stdout, which must be the key alone).
    fn create(&self, args: &[&str]) -> String {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        assert_eq!(run.code, 0, "{all:?}: {}", run.stderr);
        let key = run.stdout.strip_suffix('\n').expect("key then newline");
        assert!(
            is_key_shape(key),
            "stdout is not a key alone: {:?}",
            run.stdout
        );
        assert!(
            run.stderr.contains(id_of(key)),
            "stderr names the id: {}",
            run.stderr
        );
        assert!(run.stderr.contains("will not be shown again"));
        assert!(!run.stderr.contains(key), "the key leaked to stderr");
        key.to_owned()
    }

    /// Verifies `input` (a key or header value, newline added) and returns the run.
    fn verify(&self, input: &str, scopes: &[&str]) -> Run {
        let mut args = vec!["verify"];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        self.run_with(&args, Some(&format!("{input}\n")), &[])
    }
}

/// `ks_` plus 61 base62 characters.
fn is_key_shape(key: &str) -> bool {
    key.len() == 64 && key.starts_with("ks_") && key[3..].bytes().all(|b| ALPHABET.contains(&b))
}

/// The public id: the 12 characters after the prefix and `_`.
fn id_of(key: &str) -> &str {
    let body = &key[key.len() - 61..];
    &body[..12]
}

/// The 43-character secret part.
fn secret_of(key: &str) -> &str {
    let body = &key[key.len() - 61..];
    &body[12..55]
}

/// The 6-character base62 CRC-32 of `covered`, as in tests/vectors/generate.py.
fn with_checksum(covered: &str) -> String {
    let mut value = u64::from(crc32fast::hash(covered.as_bytes()));
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    format!("{covered}{}", std::str::from_utf8(&digits).unwrap())
}

/// The same key with one character of its secret changed (the checksum no longer matches).
fn flip_one_char(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let i = key.len() - 20;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

fn assert_key_fields(value: &Value) {
    let object = value.as_object().expect("a JSON object");
    let expected: BTreeSet<&str> = KEY_FIELDS.into_iter().collect();
    let got: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "{value}");
    assert!(object["scopes"].is_array());
    assert!(object["metadata"].is_object());
    assert!(object["use_count"].is_u64());
    for field in ["created_at", "updated_at", "expires_at", "last_used_at"] {
        match &object[field] {
            Value::Null => assert!(field != "created_at" && field != "updated_at"),
            Value::String(t) => {
                assert!(t.ends_with('Z'), "{field} is UTC: {t}");
                humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("{field} {t}: {e}"));
            }
            other => panic!("{field} is {other}"),
        }
    }
    for field in ["replaces", "replaced_by"] {
        assert!(object[field].is_null() || object[field].is_string());
    }
}

#[test]
fn whole_lifecycle() {
    let s = Sandbox::new();
    assert!(s.ok(&["init"]).contains("Created store"));
    assert!(
        s.ok(&["init"]).contains("already exists"),
        "init is idempotent"
    );

    let key = s.create(&["--name", "svc", "--scope", "chat:completions"]);
    let id = id_of(&key).to_owned();

    let ok = s.verify(&key, &["chat:completions"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.starts_with("valid"), "{}", ok.stdout);
    assert!(ok.stdout.contains(&id) && ok.stdout.contains("\"svc\""));
    let header = s.verify(&format!("Bearer {key}"), &["chat:completions"]);
    assert_eq!((header.code, header.stdout.starts_with("valid")), (0, true));
    // CRLF, as a header copied from a Windows tool would end.
    let crlf = s.run_with(&["verify"], Some(&format!("Bearer {key}\r\n")), &[]);
    assert_eq!(crlf.code, 0, "{}", crlf.stdout);

    let flipped = s.verify(&flip_one_char(&key), &[]);
    assert_eq!(flipped.code, 1);
    assert!(
        flipped.stdout.starts_with("malformed"),
        "{}",
        flipped.stdout
    );

    // Well-formed, right id, wrong secret: a valid checksum over a different secret.
    let forged = with_checksum(&format!("ks_{id}{}", "0".repeat(42) + "1"));
    assert_ne!(forged, key);
    let wrong = s.verify(&forged, &[]);
    assert_eq!(wrong.code, 1);
    assert_eq!(
        wrong.stdout, "not_found\n",
        "no key details for a wrong secret"
    );

    let scoped = s.verify(&key, &["embeddings"]);
    assert_eq!(scoped.code, 1);
    assert!(scoped.stdout.starts_with("insufficient_scope"));

    let missing = s.verify("", &[]);
    assert_eq!((missing.code, missing.stdout.as_str()), (1, "missing\n"));

    assert!(s.ok(&["disable", &id]).contains("disabled"));
    let disabled = s.verify(&key, &[]);
    assert_eq!(disabled.code, 1);
    assert!(
        disabled.stdout.starts_with("disabled"),
        "{}",
        disabled.stdout
    );

    s.ok(&["enable", &id]);
    assert_eq!(s.verify(&key, &[]).code, 0);

    let rotate = s.run(&["rotate", &id, "--grace", "1h"]);
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    let new_key = rotate.stdout.trim_end().to_owned();
    assert!(is_key_shape(&new_key), "{:?}", rotate.stdout);
    let new_id = id_of(&new_key).to_owned();
    assert!(rotate.stderr.contains(&new_id) && rotate.stderr.contains("not be shown again"));
    assert_ne!(new_id, id);
    assert_eq!(
        s.verify(&key, &["chat:completions"]).code,
        0,
        "old key in grace"
    );
    assert_eq!(s.verify(&new_key, &["chat:completions"]).code, 0, "new key");

    let old_shown = s.ok(&["show", &id]);
    assert!(
        old_shown.contains(&format!("replaced by: {new_id}")),
        "{old_shown}"
    );
    assert!(s
        .ok(&["show", &new_id])
        .contains(&format!("replaces:    {id}")));
    let old_json = s.json(&["show", &id]);
    assert_eq!(old_json["replaced_by"], new_id.as_str());
    assert!(
        old_json["expires_at"].is_string(),
        "grace end is the expiry"
    );
    assert_eq!(s.json(&["show", &new_id])["replaces"], id.as_str());
    // The old key was rotated once; a second rotation is refused.
    assert_eq!(s.run(&["rotate", &id]).code, 2);

    assert!(s.ok(&["revoke", &new_id]).contains("revoked"));
    let revoked = s.verify(&new_key, &[]);
    assert_eq!(revoked.code, 1);
    assert!(revoked.stdout.starts_with("revoked"), "{}", revoked.stdout);
    // Named by its id only: no name or other details of a refused key.
    assert_eq!(revoked.stdout, format!("revoked: key {new_id}\n"));
    // Revoked is final.
    let enable = s.run(&["enable", &new_id]);
    assert_eq!(enable.code, 2);
    assert!(enable.stderr.starts_with("keystead: "), "{}", enable.stderr);
    assert!(enable.stderr.contains("revoked"));

    // The table lists both keys with their status.
    let table = s.ok(&["list"]);
    assert!(table.starts_with("ID "), "{table}");
    for column in ["NAME", "STATUS", "SCOPES", "EXPIRES", "LAST USED", "USES"] {
        assert!(table.contains(column), "{table}");
    }
    assert!(table.contains("revoked") && table.contains("active"));
    let revoked_only = s.json(&["list", "--status", "revoked"]);
    assert_eq!(revoked_only.as_array().unwrap().len(), 1);
    assert_eq!(revoked_only[0]["id"], new_id.as_str());

    // Audit, newest first.
    let audit = s.ok(&["audit", "--limit", "3"]);
    let actions: Vec<&str> = audit
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(actions, ["revoke", "create", "rotate"], "{audit}");

    // Delete removes it.
    s.ok(&["delete", &new_id]);
    assert_eq!(s.run(&["show", &new_id]).code, 2);
}

#[test]
fn admin_changes_scopes_metadata_expiry_and_name() {
    let s = Sandbox::new();
    let key = s.create(&[
        "--name",
        "batch",
        "--meta",
        "owner=data",
        "--expires-in",
        "90d",
    ]);
    let id = id_of(&key);

    s.ok(&["rename", id, "batch job"]);
    assert_eq!(s.json(&["show", id])["name"], "batch job");

    s.ok(&["scopes", id, "embeddings", "chat:completions"]);
    let shown = s.json(&["show", id]);
    assert_eq!(
        shown["scopes"],
        serde_json::json!(["chat:completions", "embeddings"])
    );
    assert_eq!(s.verify(&key, &["embeddings"]).code, 0);
    s.ok(&["scopes", id, "--clear"]);
    assert_eq!(s.json(&["show", id])["scopes"], serde_json::json!([]));
    assert_eq!(s.run(&["scopes", id]).code, 2, "scopes or --clear");

    s.ok(&["meta", id, "team=ml", "env=prod"]);
    assert_eq!(
        s.json(&["show", id])["metadata"],
        serde_json::json!({"env": "prod", "team": "ml"})
    );
    assert_eq!(s.run(&["meta", id, "a=1", "a=2"]).code, 2);

    let in_30 = s.json(&["expire", id, "--in", "30d"]);
    assert!(in_30["expires_at"].is_string());
    let at = s.json(&["expire", id, "--at", "2099-01-02T03:04:05Z"]);
    assert_eq!(at["expires_at"], "2099-01-02T03:04:05Z");
    let offset = s.json(&["expire", id, "--at", "2099-01-02T05:04:05+02:00"]);
    assert_eq!(offset["expires_at"], "2099-01-02T03:04:05Z");
    let never = s.json(&["expire", id, "--never"]);
    assert!(never["expires_at"].is_null());
    assert_eq!(s.run(&["expire", id]).code, 2, "one of --in, --at, --never");
    assert_eq!(s.run(&["expire", id, "--in", "1d", "--never"]).code, 2);

    let soon = s.create(&["--name", "soon", "--expires-in", "2d"]);
    let within = s.json(&["list", "--expiring-within", "7d"]);
    let ids: Vec<&str> = within
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id_of(&soon)]);
    assert_eq!(
        s.json(&["list", "--name-prefix", "batch"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(s.ok(&["list", "--scope", "nothing"]).contains("No keys"));

    // A full key is refused where an id is expected (it names the id, not the secret).
    let run = s.run(&["show", &key]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(id), "{}", run.stderr);
    assert!(!run.stderr.contains(secret_of(&key)), "{}", run.stderr);
}

#[test]
fn json_outputs_have_the_stable_fields() {
    let s = Sandbox::new();
    let run = s.run(&[
        "--json",
        "create",
        "--name",
        "dev",
        "--scope",
        "chat:completions",
        "--meta",
        "owner=platform-team",
        "--expires-in",
        "90d",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut created: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(run.stdout.lines().count(), 1);
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(is_key_shape(&key));
    assert!(!run.stderr.contains(&key));
    created.as_object_mut().unwrap().remove("key");
    assert_key_fields(&created);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id, id_of(&key));
    assert_eq!(created["status"], "active");
    assert_eq!(created["metadata"]["owner"], "platform-team");
    assert!(created["expires_at"].is_string());
    assert!(created["last_used_at"].is_null() && created["replaces"].is_null());

    let shown = s.json(&["show", &id]);
    assert_key_fields(&shown);
    assert_eq!(shown, created);

    // verify: valid, then malformed, then insufficient scope.
    let valid = s.run_with(
        &["--json", "verify", "--scope", "chat:completions"],
        Some(&format!("Bearer {key}\n")),
        &[],
    );
    assert_eq!(valid.code, 0);
    let v: Value = serde_json::from_str(&valid.stdout).unwrap();
    let fields: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "code",
            "ok",
            "http_status",
            "www_authenticate",
            "key",
            "key_id"
        ])
    );
    assert_eq!(v["code"], "valid");
    assert_eq!(v["ok"], true);
    assert_eq!(v["http_status"], 200);
    assert!(v["www_authenticate"].is_null());
    assert_key_fields(&v["key"]);
    assert_eq!(v["key"]["id"], id.as_str());
    assert_eq!(v["key_id"], id.as_str());

    let bad = s.run_with(&["--json", "verify"], Some("ks_nope\n"), &[]);
    assert_eq!(bad.code, 1);
    let b: Value = serde_json::from_str(&bad.stdout).unwrap();
    assert_eq!(b["code"], "malformed");
    assert_eq!(b["ok"], false);
    assert_eq!(b["http_status"], 400);
    assert_eq!(b["www_authenticate"], "Bearer error=\"invalid_request\"");
    assert!(b["key"].is_null());
    assert!(b["key_id"].is_null());

    let scope = s.run_with(&["--json", "verify", "--scope", "images"], Some(&key), &[]);
    assert_eq!(scope.code, 1);
    let sc: Value = serde_json::from_str(&scope.stdout).unwrap();
    assert_eq!(sc["code"], "insufficient_scope");
    assert_eq!(sc["http_status"], 403);
    assert_eq!(
        sc["www_authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"images\""
    );
    // A refused key is named by its id only (issue 12 item 9).
    assert!(sc["key"].is_null(), "{sc}");
    assert_eq!(sc["key_id"], id.as_str());

    // Usage: the valid verification above, plus one more.
    assert_eq!(s.verify(&key, &[]).code, 0);
    let usage = s.json(&["usage", &id, "--days", "7"]);
    assert_eq!(usage["id"], id.as_str());
    assert_eq!(usage["days"], 7);
    assert_eq!(usage["total"], 2);
    assert_eq!(usage["use_count"], 2);
    assert!(usage["last_used_at"].is_string());
    assert!(usage["from"].is_string() && usage["to"].is_string());
    // Every day of the range, oldest first, days without uses as zeros (cli/tests/usage.rs).
    let daily = usage["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 7);
    assert_eq!(daily[6]["count"], 2);
    assert!(daily[..6].iter().all(|d| d["count"] == 0));
    assert!(daily[6]["day"].as_str().unwrap().ends_with("T00:00:00Z"));
    let text = s.ok(&["usage", &id]);
    assert!(text.contains("2 successful verifications"), "{text}");

    let listed = s.json(&["list"]);
    let keys = listed.as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_key_fields(&keys[0]);
    assert_eq!(keys[0]["use_count"], 2);

    s.ok(&["disable", &id]);
    let audit = s.json(&["audit", "--limit", "50"]);
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        let fields: BTreeSet<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from(["seq", "at", "actor", "action", "key_id", "detail"])
        );
        assert_eq!(entry["key_id"], id.as_str());
        assert_eq!(entry["actor"], "cli:tester");
        humantime::parse_rfc3339(entry["at"].as_str().unwrap()).unwrap();
    }
    assert_eq!(entries[0]["action"], "disable", "newest first");
    assert_eq!(entries[1]["action"], "create");
    assert_eq!(
        s.json(&["audit", "--limit", "1"]).as_array().unwrap().len(),
        1
    );

    let init = s.json(&["init"]);
    assert_eq!(init["created"], false);
    assert_eq!(init["prefix"], "ks");
}

#[test]
fn bad_input_exits_2_with_a_message_naming_it() {
    let s = Sandbox::new();
    let key = s.create(&["--name", "x"]);
    let id = id_of(&key);
    let cases: &[(&[&str], &str)] = &[
        (&["create", "--name", "y", "--expires-in", "10x"], "10x"),
        (&["create", "--name", "y", "--expires-in", "0d"], "0d"),
        (&["create", "--name", "y", "--expires-in", ""], "empty"),
        (
            &["create", "--name", "y", "--expires-in", "99999999999999d"],
            "99999999999999d",
        ),
        (&["create", "--name", "y", "--meta", "novalue"], "novalue"),
        (&["create", "--name", "y", "--meta", "=v"], "=v"),
        (
            &["create", "--name", "y", "--meta", "k=1", "--meta", "k=2"],
            "`k`",
        ),
        (
            &[
                "create",
                "--name",
                "y",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
            "2001-01-01T00:00:00Z",
        ),
        (&["create", "--name", "y", "--expires-at", "soon"], "soon"),
        (&["create", "--name", "y", "--name", "z"], "--name"),
        (
            &[
                "create",
                "--name",
                "y",
                "--expires-in",
                "1d",
                "--expires-at",
                "2099-01-01",
            ],
            "--expires-at",
        ),
        (&["create", "--name", ""], "name"),
        (
            &["create", "--name", "y", "--scope", "has space"],
            "has space",
        ),
        (&["create"], "--name"),
        (
            &["expire", id, "--at", "2001-01-01T00:00:00Z"],
            "in the past",
        ),
        (&["expire", id, "--in=-1d"], "-1d"),
        (&["show", "nosuchkey"], "nosuchkey"),
        (&["show", "000000000000"], "no key with id 000000000000"),
        (&["disable", "000000000000"], "000000000000"),
        (&["rotate", id, "--grace", "0s"], "0s"),
        (&["usage", id, "--days", "0"], "0"),
        (&["audit", "--limit", "0"], "0"),
        (&["list", "--status", "sleeping"], "sleeping"),
        (&["init", "--prefix", "hub"], "hub"),
        (&["init", "--prefix", "Not-Valid"], "Not-Valid"),
        (&["nosuchcommand"], "nosuchcommand"),
        (&["show"], "<ID>"),
        (&["list", "--bogus"], "--bogus"),
    ];
    for (args, needle) in cases {
        let run = s.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("keystead: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(needle),
            "{args:?} should name {needle}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?} printed {}", run.stdout);
    }
    let bad_scope = s.run_with(&["verify", "--scope", "bad scope"], Some(&key), &[]);
    assert_eq!(bad_scope.code, 2, "{}", bad_scope.stderr);

    // A mistyped key given as an id is not echoed back.
    let typo = flip_one_char(&key);
    let run = s.run(&["show", &typo]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains(&typo) && !run.stderr.contains(secret_of(&key)));
}

#[test]
fn a_rejected_create_leaves_no_store_behind() {
    let s = Sandbox::new();
    for args in [
        &["create", "--name", ""][..],
        &["create", "--name", "x", "--scope", "a b"],
    ] {
        let run = s.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(!s.db().exists(), "{args:?} left a store file");
    }
    assert_eq!(std::fs::read_dir(s.path()).unwrap().count(), 0);
}

#[test]
fn operational_failures_exit_3() {
    let s = Sandbox::new();

    // Missing store: a clear error, and no file appears.
    let cases: [&[&str]; 4] = [
        &["show", "000000000000"],
        &["list"],
        &["audit"],
        &["disable", "000000000000"],
    ];
    for args in cases {
        let run = s.run(args);
        assert_eq!(run.code, 3, "{args:?}");
        assert!(run.stderr.contains("no store at"), "{}", run.stderr);
        assert!(!s.db().exists(), "{args:?} created a store");
    }
    let verify = s.run_with(&["verify"], Some("ks_x\n"), &[]);
    assert_eq!(verify.code, 3);
    assert!(!s.db().exists());
    assert_eq!(std::fs::read_dir(s.path()).unwrap().count(), 0);

    // Wrong or absent pepper.
    let pepper = [("KEYSTEAD_PEPPER", "correct horse battery staple, 32+ bytes")];
    let init = s.run_with(&["init"], None, &pepper);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let wrong = s.run_with(
        &["list"],
        None,
        &[("KEYSTEAD_PEPPER", "battery staple correct horse, 32+ bytes")],
    );
    assert_eq!(wrong.code, 3);
    assert!(wrong.stderr.contains("pepper"), "{}", wrong.stderr);
    assert_eq!(s.run(&["list"]).code, 3, "no pepper for a peppered store");
    assert_eq!(s.run_with(&["list"], None, &pepper).code, 0);

    // A file that is not a store is left alone.
    let garbage = s.path().join("garbage.redb");
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let cases: [&[&str]; 3] = [&["list"], &["create", "--name", "x"], &["init"]];
    for args in cases {
        let mut cmd = s.bare();
        let run = Run::from(cmd.arg("--db").arg(&garbage).args(args).output().unwrap());
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("keystead: "), "{}", run.stderr);
    }
    assert_eq!(std::fs::read(&garbage).unwrap(), bytes);

    // An empty file is not silently turned into a store.
    let empty = s.path().join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    let run = Run::from(
        s.bare()
            .arg("--db")
            .arg(&empty)
            .arg("list")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 3);
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);

    // A directory.
    let run = Run::from(
        s.bare()
            .arg("--db")
            .arg(s.path())
            .arg("list")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 3);
}

#[test]
fn store_location_and_prefix() {
    let s = Sandbox::new();
    // No --db: ./keystead.redb, created by `create` with the default prefix.
    let run = Run::from(s.bare().args(["create", "--name", "dev"]).output().unwrap());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(is_key_shape(run.stdout.trim_end()));
    assert!(s.db().exists());

    // $KEYSTEAD_DB, and --db over it.
    let other = s.path().join("other.redb");
    let run = Run::from(
        s.bare()
            .env("KEYSTEAD_DB", &other)
            .args(["init", "--prefix", "hub"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(other.exists());
    let key = Run::from(
        s.bare()
            .env("KEYSTEAD_DB", &other)
            .args(["create", "--name", "x"])
            .output()
            .unwrap(),
    )
    .stdout;
    assert!(
        key.starts_with("hub_") && key.trim_end().len() == 65,
        "{key}"
    );
    let listed = Run::from(
        s.bare()
            .env("KEYSTEAD_DB", &other)
            .arg("--db")
            .arg(s.db())
            .args(["--json", "list"])
            .output()
            .unwrap(),
    );
    let names: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(names[0]["name"], "dev", "--db wins over $KEYSTEAD_DB");

    // init on the hub store: same prefix is fine, another is an error.
    let again = Run::from(
        s.bare()
            .arg("--db")
            .arg(&other)
            .args(["init", "--prefix", "hub"])
            .output()
            .unwrap(),
    );
    assert_eq!(again.code, 0);
    let clash = Run::from(
        s.bare()
            .arg("--db")
            .arg(&other)
            .arg("init")
            .output()
            .unwrap(),
    );
    assert_eq!(clash.code, 2);
    assert!(clash.stderr.contains("hub"), "{}", clash.stderr);
}

#[test]
fn keys_never_reach_the_store_file() {
    let s = Sandbox::new();
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push(s.create(&["--name", &format!("key-{i}"), "--scope", "a"]));
    }
    let rotated = s.ok(&["rotate", id_of(&keys[0])]).trim_end().to_owned();
    keys.push(rotated);
    for key in &keys {
        assert_eq!(s.verify(key, &["a"]).code, 0);
    }
    s.ok(&["revoke", id_of(&keys[1])]);
    let bytes = std::fs::read(s.db()).unwrap();
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    for key in &keys {
        assert!(!contains(key), "a key is in the store file");
        assert!(!contains(secret_of(key)), "a secret is in the store file");
    }
    // Nor in any listing or audit output.
    let everything = format!(
        "{}{}{}",
        s.ok(&["list"]),
        s.ok(&["--json", "list"]),
        s.ok(&["audit"])
    );
    for key in &keys {
        assert!(!everything.contains(secret_of(key)));
    }
}

#[test]
fn check_reports_an_intact_store_and_exits_3_on_damage() {
    let s = Sandbox::new();
    s.create(&["--name", "a"]);
    s.create(&["--name", "b"]);
    let run = s.run(&["check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("Store ") && run.stdout.contains("is intact (2 keys)"),
        "{}",
        run.stdout
    );
    let json = s.json(&["check"]);
    assert_eq!(json["intact"], true);
    assert_eq!(json["keys"], 2);

    // Every page after the first overwritten: damage, exit 3, a message, not a crash report.
    let bytes = std::fs::read(s.db()).unwrap();
    let mut damaged = bytes.clone();
    damaged[4096..].fill(0xaa);
    std::fs::write(s.db(), &damaged).unwrap();
    let run = s.run(&["check"]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.starts_with("keystead: "), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    // A file that is not a store, and no store at all (which stays absent).
    std::fs::write(s.db(), vec![0x5a_u8; 10_000]).unwrap();
    assert_eq!(s.run(&["check"]).code, 3);
    std::fs::remove_file(s.db()).unwrap();
    let run = s.run(&["check"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("no store at"), "{}", run.stderr);
    assert!(!s.db().exists());
}

#[test]
fn import_creates_every_key_of_a_json_lines_file_in_order() {
    let s = Sandbox::new();
    let file = s.path().join("users.jsonl");
    std::fs::write(
        &file,
        "{\"name\":\"alice\",\"scopes\":[\"read\",\"write\"],\"metadata\":{\"team\":\"a\"}}\n\
         \n\
         {\"name\":\"bob\",\"expires_in\":\"30d\",\"scopes\":null}\n\
         {\"name\":\"carol\",\"expires_at\":\"2099-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let run = s.run(&["import", file.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("Imported 3 keys"), "{}", run.stderr);
    assert!(!contains_key_shape(&run.stderr), "{}", run.stderr);
    // JSON Lines: one object per key, in input order, with exactly id, name and key.
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = lines.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    for line in &lines {
        let fields: BTreeSet<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, BTreeSet::from(["id", "name", "key"]), "{line}");
        let key = line["key"].as_str().unwrap();
        assert!(is_key_shape(key), "{key}");
        assert_eq!(line["id"], id_of(key));
    }
    let alice = lines[0]["key"].as_str().unwrap();
    assert_eq!(s.verify(alice, &["write"]).code, 0);
    assert_eq!(s.verify(lines[1]["key"].as_str().unwrap(), &[]).code, 0);
    assert_eq!(s.verify(lines[2]["key"].as_str().unwrap(), &[]).code, 0);
    let bob = s.json(&["show", lines[1]["id"].as_str().unwrap()]);
    assert!(bob["expires_at"].is_string(), "{bob}");
    let alice = s.json(&["show", lines[0]["id"].as_str().unwrap()]);
    assert_eq!(alice["metadata"]["team"], "a");

    // From stdin with `-`; piped stderr gets no progress line.
    let run = s.run_with(&["import", "-"], Some("{\"name\":\"dave\"}\n"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(!run.stderr.contains('\r'), "{:?}", run.stderr);
    assert_eq!(s.json(&["list"]).as_array().unwrap().len(), 4);
}

#[test]
fn import_with_a_bad_line_creates_nothing_and_names_the_line() {
    let s = Sandbox::new();
    let key = "ks_".to_owned() + &"A".repeat(61);
    let bad_lines = [
        ("{\"name\":\"y\",\"scopes\":[\"a b\"]}", "line 3"),
        ("{\"name\":\"y\",\"scopes\":\"a\"}", "line 3"),
        ("{\"nme\":\"y\"}", "line 3"),
        ("{\"name\":\"y\"", "line 3"),
        ("[\"y\"]", "line 3"),
        ("{\"name\":\"y\",\"expires_in\":\"1w\"}", "line 3"),
        ("{\"name\":\"y\",\"expires_at\":\"2001-01-01\"}", "line 3"),
        // A key where a name belongs is refused and never echoed.
        (&format!("{{\"name\":\"{key}\"}}") as &str, "line 3"),
        (
            &format!("{{\"name\":\"y\",\"metadata\":{{\"k\":\"{key}\"}}}}"),
            "line 3",
        ),
        (&format!("{{\"{key}\":1}}"), "line 3"),
    ];
    for (bad, line) in bad_lines {
        let input = format!("{{\"name\":\"a\"}}\n{{\"name\":\"b\"}}\n{bad}\n{{\"name\":\"c\"}}\n");
        let run = s.run_with(&["import", "-"], Some(&input), &[]);
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains(line), "{bad}: {}", run.stderr);
        assert!(!run.stderr.contains(&key[3..20]), "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(!s.db().exists(), "{bad}: a store was created");
    }
    // Into an existing store: nothing is added either.
    s.create(&["--name", "existing"]);
    let run = s.run_with(
        &["import", "-"],
        Some("{\"name\":\"a\"}\n{\"name\":\"\"}\n"),
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    assert_eq!(s.json(&["list"]).as_array().unwrap().len(), 1);
    // A missing file is exit 3.
    assert_eq!(s.run(&["import", "no-such-file.jsonl"]).code, 3);
}

/// Whether `text` holds `ks_` and 61 base62 characters.
fn contains_key_shape(text: &str) -> bool {
    text.match_indices("ks_").any(|(i, _)| {
        text.len() >= i + 64
            && text.as_bytes()[i + 3..i + 64]
                .iter()
                .all(u8::is_ascii_alphanumeric)
    })
}

#[test]
fn verify_reads_a_header_value_or_a_bare_key() {
    let s = Sandbox::new();
    let key = s.create(&["--name", "k"]);
    let cases = [
        (key.clone(), "valid"),
        (format!("Bearer {key}"), "valid"),
        (format!("bearer   {key}"), "valid"),
        // Optional whitespace around a header value, as RFC 9110 allows.
        (format!("\tBearer {key} "), "valid"),
        ("Basic dXNlcjpwYXNz".to_owned(), "missing"),
        (String::new(), "missing"),
        ("Bearer".to_owned(), "malformed"),
        (format!("Bearer {key} extra"), "malformed"),
        (format!("Bearer,{key}"), "malformed"),
        (flip_one_char(&key), "malformed"),
    ];
    for (input, code) in cases {
        let run = s.verify(&input, &[]);
        assert!(
            run.stdout.starts_with(code),
            "{input:?}: {} {}",
            run.stdout,
            run.stderr
        );
        assert_eq!(run.code, i32::from(code != "valid"), "{input:?}");
    }
}

#[test]
fn stats_counts_keys_by_status_and_sizes_the_file() {
    let s = Sandbox::new();
    assert_eq!(s.run(&["stats"]).code, 3, "no store: exit 3");
    assert!(!s.db().exists());
    let a = s.create(&["--name", "a"]);
    let b = s.create(&["--name", "b"]);
    s.create(&["--name", "c"]);
    s.ok(&["disable", id_of(&a)]);
    s.ok(&["revoke", id_of(&b)]);
    let json = s.json(&["stats"]);
    assert_eq!(json["keys"]["total"], 3, "{json}");
    assert_eq!(json["keys"]["active"], 1, "{json}");
    assert_eq!(json["keys"]["disabled"], 1, "{json}");
    assert_eq!(json["keys"]["revoked"], 1, "{json}");
    assert_eq!(json["keys"]["expired"], 0, "{json}");
    let size = std::fs::metadata(s.db()).unwrap().len();
    assert_eq!(json["file_bytes"], size, "{json}");
    assert_eq!(json["bytes_per_key"], size / 3, "{json}");
    assert!(json["last_change_at"].is_string(), "{json}");
    let text = s.ok(&["stats"]);
    assert!(
        text.contains("3 keys (1 active, 1 disabled, 1 revoked, 0 expired)"),
        "{text}"
    );
}

/// On a terminal (a pseudo-terminal from util-linux `script`), a large import shows a progress
/// line on stderr, and clears it; piped, there is none (see the test above).
#[test]
fn import_shows_progress_on_a_terminal_for_a_large_file() {
    let s = Sandbox::new();
    let file = s.path().join("large.jsonl");
    let pad = "x".repeat(1000);
    let line = |i: usize| {
        format!("{{\"name\":\"k{i}\",\"metadata\":{{\"a\":\"{pad}\",\"b\":\"{pad}\",\"c\":\"{pad}\"}}}}\n")
    };
    let text: String = (0..90).map(line).collect();
    assert!(text.len() >= 256 * 1024);
    std::fs::write(&file, text).unwrap();
    let command = format!(
        "'{BIN}' --db '{}' import '{}'",
        s.db().display(),
        file.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(s.path())
        .env_remove("KEYSTEAD_DB")
        .env_remove("KEYSTEAD_PEPPER")
        .output()
        .expect("util-linux `script` runs");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("\rkeystead import: read "), "{shown}");
    assert!(shown.contains("Imported 90 keys"), "{shown}");
}
