//! The CLI and the store file's mode: a store others may write is refused (exit 3, naming
//! `chmod 600`), one others may read is used with a warning on stderr, and no store is created
//! through a dangling symbolic link.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use assert_cmd::Command;

const BIN: &str = env!("CARGO_BIN_EXE_keystead");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn keystead(db: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .env_remove("KEYSTEAD_DB")
        .env_remove("KEYSTEAD_PEPPER")
        .arg("--db")
        .arg(db)
        .args(args)
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

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_store_others_may_write_is_refused_and_one_they_may_read_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keystead.redb");
    let init = keystead(&db, &["init"]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    assert!(!init.stderr.contains("warning"), "{}", init.stderr);
    let listed = keystead(&db, &["list"]);
    assert_eq!(listed.code, 0);
    assert_eq!(listed.stderr, "", "a 0600 store gets no warning");

    for writable in [0o666, 0o620, 0o602] {
        chmod(&db, writable);
        let before = std::fs::read(&db).unwrap();
        let run = keystead(&db, &["create", "--name", "k"]);
        assert_eq!(run.code, 3, "mode {writable:04o}: {}", run.stderr);
        assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{writable:04o}")),
            "{}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "no key was printed");
        assert_eq!(std::fs::read(&db).unwrap(), before, "the file changed");
    }

    for readable in [0o644, 0o640, 0o604] {
        chmod(&db, readable);
        let run = keystead(&db, &["list"]);
        assert_eq!(run.code, 0, "mode {readable:04o}: {}", run.stderr);
        assert!(run.stderr.contains("warning"), "{}", run.stderr);
        assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{readable:04o}")),
            "{}",
            run.stderr
        );
        assert_eq!(run.stdout, "No keys.\n", "stdout is unchanged");
    }
}

#[test]
fn no_store_is_created_through_a_dangling_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere.redb");
    let link = dir.path().join("keystead.redb");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for args in [&["init"][..], &["create", "--name", "k"][..]] {
        let run = keystead(&link, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
        assert!(!target.exists(), "{args:?} created the link's target");
    }
}
