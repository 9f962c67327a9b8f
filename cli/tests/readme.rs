//! The README's CLI walkthrough is real: its shell block runs against the built binary.

use std::path::Path;
use std::process::Command;

const START: &str = "<!-- cli-walkthrough:start -->";
const END: &str = "<!-- cli-walkthrough:end -->";

/// The first ```sh block between the walkthrough markers of README.md.
fn walkthrough() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md is readable");
    let start = text
        .find(START)
        .expect("README has the walkthrough start marker")
        + START.len();
    let end = start
        + text[start..]
            .find(END)
            .expect("README has the walkthrough end marker");
    let region = &text[start..end];
    let open = region
        .find("```sh\n")
        .expect("a ```sh block in the walkthrough")
        + 6;
    let close = open
        + region[open..]
            .find("\n```")
            .expect("the ```sh block is closed");
    region[open..close].to_owned()
}

/// Whether `text` holds something shaped like a key: `ks_` and 61 base62 characters.
fn contains_key(text: &str) -> bool {
    text.match_indices("ks_").any(|(i, _)| {
        let body = &text.as_bytes()[i + 3..];
        body.len() >= 61 && body[..61].iter().all(u8::is_ascii_alphanumeric)
    })
}

#[test]
fn readme_walkthrough_runs() {
    let script = walkthrough();
    assert!(
        script.contains("keystead create") && script.contains("keystead verify"),
        "the walkthrough shows creating and verifying a key:\n{script}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_keystead")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("KEYSTEAD_DB")
        .env_remove("KEYSTEAD_PEPPER")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walkthrough failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    // The store is where the walkthrough says.
    assert!(dir.path().join("keystead.redb").is_file());
    // create and rotate talked on stderr, and keys never reached the terminal.
    assert_eq!(
        stderr.matches("will not be shown again").count(),
        2,
        "{stderr}"
    );
    assert!(
        !contains_key(&stdout) && !contains_key(&stderr),
        "{stdout}{stderr}"
    );

    let lines: Vec<&str> = stdout.lines().collect();
    let valid: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("valid: key "))
        .collect();
    assert_eq!(
        valid.len(),
        2,
        "the key and its replacement verify:\n{stdout}"
    );
    assert!(valid[0].ends_with("\"dev-server-integration\""));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ID ") && l.contains("NAME")),
        "list prints a table:\n{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("revoked: key ")),
        "{stdout}"
    );
    assert!(stdout.contains("exit status 1: refused"), "{stdout}");
    let audit_start = lines
        .iter()
        .position(|l| l.starts_with("SEQ "))
        .expect("the audit table");
    let actions: Vec<&str> = lines[audit_start + 1..]
        .iter()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(
        actions,
        ["revoke", "create", "rotate", "create"],
        "{stdout}"
    );
}
