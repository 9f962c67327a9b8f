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

/// The fenced code blocks of a Markdown file, with the info string (`sh`, or empty) of each.
fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Shell words and operators of one (joined) command line: quotes are removed, `|`, `;`, `&`,
/// `(`, `)`, `<` and `>` are tokens of their own, and a comment ends the line.
fn shell_tokens(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '"'));
            }
            '#' if !in_word => break,
            c if c.is_whitespace() || "|;&()<>".contains(c) => {
                if in_word {
                    tokens.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if !c.is_whitespace() {
                    tokens.push(c.to_string());
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        tokens.push(word);
    }
    tokens
}

/// Every `keystead ...` invocation in the shell blocks of `text` (and `cargo run -p
/// keystead-cli -- ...`), as its arguments; a shell variable stands in as a key id.
fn invocations(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (info, body) in code_blocks(text) {
        if info != "sh" {
            continue;
        }
        for line in body.replace("\\\n", " ").lines() {
            let tokens = shell_tokens(line);
            for (i, token) in tokens.iter().enumerate() {
                let start = match token.as_str() {
                    "keystead" => i + 1,
                    "keystead-cli" if tokens.get(i + 1).map(String::as_str) == Some("--") => i + 2,
                    _ => continue,
                };
                let args: Vec<String> = tokens[start..]
                    .iter()
                    .take_while(|t| !(t.len() == 1 && "|;&()<>".contains(t.as_str())))
                    .map(|t| {
                        if t.contains('$') {
                            "000000000000".to_owned()
                        } else {
                            t.clone()
                        }
                    })
                    .collect();
                found.push(args);
            }
        }
    }
    found
}

fn keystead(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keystead"))
        .args(args)
        .current_dir(dir)
        .env_remove("KEYSTEAD_DB")
        .env_remove("KEYSTEAD_PEPPER")
        .output()
        .expect("keystead runs")
}

/// Every command line in README.md's and docs/cli.md's shell blocks still parses: the command
/// and each option before `--help` are known to the argument parser (values included), which
/// then prints the command's help. (The README walkthrough also runs for real, above.)
#[test]
fn every_documented_command_line_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for file in ["README.md", "docs/cli.md"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for args in invocations(&text) {
            let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
            argv.push("--help");
            let out = keystead(&argv, dir.path());
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("Usage: keystead"),
                "{file}: `keystead {}` does not parse:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} command lines found");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "--help created a file"
    );
}

/// The synopsis at the top of docs/cli.md names every command there is, and each of its
/// options exists on the command it is listed with.
#[test]
fn the_cli_synopsis_matches_the_commands() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("docs/cli.md")).unwrap();
    let (_, synopsis) = code_blocks(&text)
        .into_iter()
        .next()
        .expect("docs/cli.md starts with a synopsis block");
    let dir = tempfile::tempdir().unwrap();
    let mut documented = Vec::new();
    for line in synopsis.lines().skip(1) {
        // `  rotate ID [--grace 24h]      what it does`: the usage is before the first gap.
        let usage = line.trim().split("  ").next().unwrap_or_default();
        let path: Vec<&str> = usage
            .split_whitespace()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .collect();
        assert!(!path.is_empty(), "no command in synopsis line {line:?}");
        let mut argv = path.clone();
        argv.push("--help");
        let out = keystead(&argv, dir.path());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{line:?}: not a command");
        for flag in usage
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--"))
        {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "{line:?}: `keystead {}` has no {flag}",
                path.join(" ")
            );
        }
        // Further commands on the same line: `rename ID NAME | disable ID | ...`.
        for part in usage.split(" | ").skip(1) {
            if let Some(word) = part.split_whitespace().next() {
                if word.chars().all(|c| c.is_ascii_lowercase()) {
                    assert!(
                        keystead(&[word, "--help"], dir.path()).status.success(),
                        "{word}"
                    );
                    documented.push(word.to_owned());
                }
            }
        }
        documented.push(path[0].to_owned());
    }
    let out = keystead(&["--help"], dir.path());
    let help = String::from_utf8_lossy(&out.stdout);
    let commands = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help");
    for name in commands {
        assert!(
            documented.iter().any(|d| d == name),
            "`keystead {name}` is not in docs/cli.md's synopsis"
        );
    }
}
