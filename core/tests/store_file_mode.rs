//! The mode of the store file: a store is never created through a symbolic link (so never with
//! the umask's mode at a place a link chooses), and an existing store that others may write is
//! refused with `Error::InsecurePermissions`.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::options;
use keystead::{Error, KeyStore, NewKey};

const CHILD_ENV: &str = "KEYSTEAD_STORE_FILE_MODE_CHILD";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The child: opens the store at `$CHILD_ENV` under the umask its shell set, and succeeds only
/// if the open was refused because the path is a symbolic link.
#[test]
fn symlink_child_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    match KeyStore::open(&path, options()) {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains("symbolic link"), "{message}");
        }
        other => panic!("open through a dangling link: {:?}", other.map(drop)),
    }
}

#[test]
fn a_store_is_not_created_through_a_dangling_symlink_whatever_the_umask() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for umask in ["000", "022"] {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o777);
        let target = dir.path().join("target.redb");
        let link = dir.path().join("keystead.redb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(&exe)
            .args([
                "--exact",
                "symlink_child_role",
                "--quiet",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &link)
            .status()
            .unwrap();
        let made = if target.exists() {
            format!("{:04o}", mode(&target))
        } else {
            String::new()
        };
        assert!(
            status.success(),
            "umask {umask}: not refused (target mode {made})"
        );
        assert!(
            !target.exists(),
            "umask {umask}: target created, mode {made}"
        );
        assert_eq!(entries(dir.path()), ["keystead.redb"], "umask {umask}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

#[test]
fn a_symlink_to_an_empty_file_is_not_made_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.redb");
    std::fs::write(&target, b"").unwrap();
    let link = dir.path().join("keystead.redb");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        KeyStore::open(&link, options()),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 0);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn an_existing_store_opens_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.redb");
    let store = KeyStore::open(&target, options()).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    store.close().unwrap();
    let link = dir.path().join("keystead.redb");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let store = KeyStore::open(&link, options()).unwrap();
    assert!(store.verify(created.key(), &[]).unwrap().is_valid());
}

fn digest(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn an_existing_store_writable_by_others_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    let store = KeyStore::open(&path, options()).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    store.close().unwrap();
    for bad in [0o666, 0o620, 0o602, 0o660, 0o622, 0o777] {
        chmod(&path, bad);
        let before = digest(&path);
        match KeyStore::open(&path, options()) {
            Err(Error::InsecurePermissions { mode }) => assert_eq!(mode, bad),
            other => panic!("mode {bad:04o}: {:?}", other.map(drop)),
        }
        let message = KeyStore::open(&path, options()).unwrap_err().to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains(&format!("{bad:04o}")), "{message}");
        assert_eq!(digest(&path), before, "mode {bad:04o}: the file changed");
        assert_eq!(mode(&path), bad, "the mode is the operator's to fix");
    }
    // Readable by others is not refused (the CLI warns about it).
    for readable in [0o644, 0o640, 0o604, 0o600] {
        chmod(&path, readable);
        let store =
            KeyStore::open(&path, options()).unwrap_or_else(|e| panic!("mode {readable:04o}: {e}"));
        assert!(store.verify(created.key(), &[]).unwrap().is_valid());
        assert!(KeyStore::check_integrity(&path).unwrap());
    }
}
