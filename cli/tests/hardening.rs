//! Issue 12 hardening of the CLI: keys never echoed (clap's errors included), full keys
//! refused as names, metadata and ids, a rotated key's grace never extended, an unusable
//! `$USER` refused before it can corrupt the audit log, invisible characters refused.

use std::path::PathBuf;

use assert_cmd::Command;

const BIN: &str = env!("CARGO_BIN_EXE_keystead");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("keystead.redb")
    }

    fn run_as(&self, user: &str, args: &[&str]) -> Run {
        let out = Command::new(BIN)
            .current_dir(self.dir.path())
            .env_remove("KEYSTEAD_DB")
            .env_remove("KEYSTEAD_PEPPER")
            .env("USER", user)
            .arg("--db")
            .arg(self.db())
            .args(args)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        let run = Run {
            code: out.status.code().expect("exited normally"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        run
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_as("tester", args)
    }

    fn create(&self, name: &str) -> String {
        let run = self.run(&["create", "--name", name]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout.trim_end().to_owned()
    }
}

fn id_of(key: &str) -> &str {
    &key[key.len() - 61..key.len() - 49]
}

/// The part of a key after its id: the secret and the checksum.
fn secret_of(key: &str) -> &str {
    &key[key.len() - 49..]
}

fn assert_not_echoed(run: &Run, key: &str, what: &str) {
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(secret_of(key)),
            "{what}: the key's secret is echoed: {text}"
        );
    }
}

#[test]
fn a_key_given_as_a_stray_argument_is_redacted_from_clap_errors() {
    let s = Sandbox::new();
    let key = s.create("k");
    let run = s.run(&["verify", &key]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_not_echoed(&run, &key, "verify KEY");
    assert!(run.stderr.contains("[redacted]"), "{}", run.stderr);
    let run = s.run(&["list", "--status", &key]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_not_echoed(&run, &key, "list --status KEY");
    let run = s.run(&["show", id_of(&key), &key]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_not_echoed(&run, &key, "show ID KEY");
}

#[test]
fn a_full_key_is_refused_as_a_name_or_metadata_without_being_echoed() {
    let s = Sandbox::new();
    let key = s.create("k");
    let id = id_of(&key);
    for args in [
        vec!["create", "--name", &key],
        vec!["create", "--name", "x", "--meta", &format!("note={key}")],
        vec!["rename", id, &key],
        vec!["meta", id, &format!("note=see {key}")],
        vec!["scopes", id, &key],
    ] {
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{:?}: {}", args[0], run.stderr);
        assert_not_echoed(&run, &key, args[0]);
    }
    let list = s.run(&["list", "--json"]);
    assert!(!list.stdout.contains(secret_of(&key)));
}

#[test]
fn id_arguments_refuse_a_full_key_and_name_only_its_id() {
    let s = Sandbox::new();
    let key = s.create("k");
    for command in ["show", "revoke", "disable", "delete", "usage"] {
        let run = s.run(&[command, &key]);
        assert_eq!(run.code, 2, "{command}: {}", run.stderr);
        assert_not_echoed(&run, &key, command);
        assert!(
            run.stderr.contains(id_of(&key)),
            "{command}: {}",
            run.stderr
        );
    }
    // Nothing was changed through the key.
    let show = s.run(&["show", id_of(&key)]);
    assert!(show.stdout.contains("active"), "{}", show.stdout);
}

#[test]
fn expire_never_on_a_rotated_key_is_refused() {
    let s = Sandbox::new();
    let old = s.create("svc");
    let rotated = s.run(&["rotate", id_of(&old), "--grace", "1h"]);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let new = rotated.stdout.trim_end().to_owned();
    for when in [&["--never"][..], &["--in", "30d"][..]] {
        let mut args = vec!["expire", id_of(&old)];
        args.extend_from_slice(when);
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{when:?}: {}", run.stderr);
        assert!(run.stderr.contains("rotated"), "{}", run.stderr);
    }
    // Shortening is fine, and the new key is unaffected.
    assert_eq!(s.run(&["expire", id_of(&old), "--in", "1m"]).code, 0);
    assert_eq!(s.run(&["expire", id_of(&new), "--never"]).code, 0);
}

#[test]
fn an_unusable_user_is_refused_and_the_audit_log_stays_readable() {
    let s = Sandbox::new();
    s.create("before");
    // 65,530 `a`s and `é`: once cut inside the `é`, making every later `audit` fail.
    let long = format!("{}é", "a".repeat(65_530));
    for user in [long.as_str(), "ad\u{202E}nimda", "z\u{200B}w"] {
        let run = s.run_as(user, &["create", "--name", "after"]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("$USER"), "{}", run.stderr);
    }
    let audit = s.run(&["audit"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    assert!(audit.stdout.contains("cli:tester"), "{}", audit.stdout);
    assert_eq!(audit.stdout.lines().count(), 2, "{}", audit.stdout);
}

#[test]
fn invisible_and_bidi_characters_are_refused_in_names_and_metadata() {
    let s = Sandbox::new();
    let id = id_of(&s.create("k")).to_owned();
    for args in [
        vec!["create", "--name", "pay\u{200E}ments"],
        vec!["create", "--name", "x\u{202E}txt.exe"],
        vec!["rename", &id, "a\u{200B}b"],
        vec!["meta", &id, "owner=\u{1b}[31mred"],
        vec!["meta", &id, "owner=a\u{202E}b"],
    ] {
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        // The message escapes or leaves out the character, never prints it raw.
        for c in ['\u{200E}', '\u{202E}', '\u{200B}', '\u{1b}'] {
            assert!(!run.stderr.contains(c), "{args:?}: {}", run.stderr);
        }
    }
}

#[test]
fn a_grace_ending_after_9999_is_refused() {
    let s = Sandbox::new();
    let old = s.create("svc");
    let run = s.run(&["rotate", id_of(&old), "--grace", "200000000d"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("9999"), "{}", run.stderr);
    let show = s.run(&["show", id_of(&old)]);
    assert!(show.stdout.contains("active"), "{}", show.stdout);
    assert!(!show.stdout.contains("+5"), "{}", show.stdout);
}
