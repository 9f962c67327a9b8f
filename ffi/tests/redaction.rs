//! The plaintext key and the pepper never show up in Debug or Display output.

mod common;

use common::{new_key, open_temp, quiet};
use keystead_ffi::{CreatedKey, KeyStore, OpenOptions};

#[test]
fn created_key_debug_and_display_never_show_the_key() {
    let (_dir, _path, store) = open_temp(quiet());
    let created: CreatedKey = store.create(new_key("dev-server-integration")).unwrap();
    let secret_part = &created.key[3 + 12..]; // after `ks_` and the public id
    for shown in [
        format!("{created:?}"),
        format!("{created:#?}"),
        format!("{created}"),
    ] {
        assert!(!shown.contains(&created.key), "{shown}");
        assert!(!shown.contains(secret_part), "{shown}");
        assert!(shown.contains(&created.info.id), "{shown}");
    }
    assert!(format!("{created:?}").contains("<redacted>"));
    assert!(format!("{created}").contains("dev-server-integration"));

    let rotated = store.rotate(created.info.id.clone(), 0).unwrap();
    assert!(!format!("{rotated:?}{rotated}").contains(&rotated.key));

    // Nor does the store's Debug, or a verification of the key.
    let check = store.verify(created.key.clone(), vec![]).unwrap();
    assert!(!format!("{check:?}{store:?}").contains(secret_part));
    store.close().unwrap();
}

#[test]
fn open_options_debug_hides_the_pepper() {
    let options = OpenOptions {
        pepper: Some(b"super-secret-pepper".to_vec()),
        actor: Some("admin".into()),
        ..quiet()
    };
    let shown = format!("{options:?}");
    assert!(!shown.contains("super-secret-pepper"), "{shown}");
    // Nor as the byte values Vec<u8>'s Debug would print.
    assert!(!shown.contains("115, 117, 112"), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains("admin"),
        "{shown}"
    );
}

#[test]
fn error_messages_never_contain_the_presented_key() {
    let (_dir, path, store) = open_temp(quiet());
    let created = store.create(new_key("k")).unwrap();
    store.close().unwrap();
    let error = store.verify(created.key.clone(), vec![]).unwrap_err();
    assert!(!format!("{error}{error:?}").contains(&created.key));
    drop(KeyStore::open(path, quiet()).unwrap());
}
