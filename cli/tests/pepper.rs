//! `keystead pepper generate`, and peppers shorter than 32 bytes refused.

use std::path::Path;

use assert_cmd::Command;

const BIN: &str = env!("CARGO_BIN_EXE_keystead");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn keystead(dir: &Path, args: &[&str], pepper: Option<&str>) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("KEYSTEAD_DB")
        .env_remove("KEYSTEAD_PEPPER")
        .args(args)
        .timeout(std::time::Duration::from_secs(60));
    if let Some(p) = pepper {
        cmd.env("KEYSTEAD_PEPPER", p);
    }
    let out = cmd.output().unwrap();
    let run = Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

/// Decodes standard padded base64, or `None`.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if text.len() % 4 != 0 {
        return None;
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 {
        return None;
    }
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in body.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    (bits == 0).then_some(out)
}

#[test]
fn pepper_generate_prints_32_random_bytes_in_base64_and_opens_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = keystead(dir.path(), &["pepper", "generate"], None);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let line = first.stdout.strip_suffix('\n').expect("one line");
    assert!(!line.contains('\n'));
    assert_eq!(line.len(), 44);
    let bytes = decode_base64(line).expect("base64");
    assert_eq!(bytes.len(), 32);
    assert!(first.stderr.contains("KEYSTEAD_PEPPER"), "{}", first.stderr);
    assert!(!first.stderr.contains(line), "the pepper is only on stdout");
    let second = keystead(dir.path(), &["pepper", "generate"], None);
    assert_ne!(second.stdout, first.stdout, "two runs, two peppers");
    let json = keystead(dir.path(), &["--json", "pepper", "generate"], None);
    assert_eq!(json.code, 0);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let pepper = value["pepper"].as_str().unwrap();
    assert_eq!(decode_base64(pepper).unwrap().len(), 32);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no store was created"
    );
}

#[test]
fn a_generated_pepper_works_as_keystead_pepper_and_a_short_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let generated = keystead(dir.path(), &["pepper", "generate"], None);
    let pepper = generated.stdout.trim_end();

    let short = keystead(dir.path(), &["init"], Some("correct horse"));
    assert_eq!(short.code, 2, "{}", short.stderr);
    assert!(
        short.stderr.contains("32 to 1024 bytes"),
        "{}",
        short.stderr
    );
    assert!(
        short.stderr.contains("keystead pepper generate"),
        "{}",
        short.stderr
    );
    assert!(!short.stderr.contains("correct horse"), "{}", short.stderr);
    assert!(!dir.path().join("keystead.redb").exists());
    // 31 bytes is still too short; the limit is on bytes, so the exact count matters.
    let almost = "x".repeat(31);
    assert_eq!(keystead(dir.path(), &["init"], Some(&almost)).code, 2);

    let init = keystead(dir.path(), &["init"], Some(pepper));
    assert_eq!(init.code, 0, "{}", init.stderr);
    let created = keystead(dir.path(), &["create", "--name", "k"], Some(pepper));
    assert_eq!(created.code, 0, "{}", created.stderr);
    let key = created.stdout.trim_end();
    let mut verify = Command::new(BIN);
    let out = verify
        .current_dir(dir.path())
        .env_remove("KEYSTEAD_DB")
        .env("KEYSTEAD_PEPPER", pepper)
        .arg("verify")
        .write_stdin(format!("{key}\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Without it, or with another generated one, the store does not open.
    assert_eq!(keystead(dir.path(), &["list"], None).code, 3);
    let other = keystead(dir.path(), &["pepper", "generate"], None);
    let wrong = keystead(dir.path(), &["list"], Some(other.stdout.trim_end()));
    assert_eq!(wrong.code, 3);
    assert!(wrong.stderr.contains("wrong pepper"), "{}", wrong.stderr);
}
