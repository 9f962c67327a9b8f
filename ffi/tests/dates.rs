//! Far-future times through the FFI (issue 12, item 4): a typed `InvalidArgument`, never a
//! panic, and no key ever ends up with a time the generated bindings cannot represent.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{new_key, open_temp, quiet};
use keystead_ffi::KeysteadError;

const DAY: Duration = Duration::from_secs(86_400);

fn year_10000() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(253_402_300_800)
}

#[test]
fn far_future_times_are_invalid_arguments() {
    let (_dir, _path, store) = open_temp(quiet());
    let id = store.create(new_key("far")).unwrap().info.id;
    let err = store.rotate(id.clone(), DAY * 200_000_000).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store.rotate(id.clone(), Duration::MAX).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store
        .set_expiry(id.clone(), Some(year_10000()))
        .unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let mut far = new_key("far2");
    far.expires_at = Some(year_10000());
    let err = store.create(far).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store
        .usage(id.clone(), UNIX_EPOCH, year_10000())
        .unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = store.audit(Some(year_10000()), 10).unwrap_err();
    assert!(
        matches!(err, KeysteadError::InvalidArgument { .. }),
        "{err:?}"
    );
    let info = store.get(id).unwrap().unwrap();
    assert_eq!(info.expires_at, None);
    assert_eq!(info.replaced_by, None);
}
