//! A `KeyStore` driven by an arbitrary sequence of admin operations and verifications, each
//! result checked against an in-memory model: verify outcomes, the errors of operations on
//! deleted, revoked or rotated keys, the returned key information, usage counts after a
//! flush, the number of audit entries; then, after a flush, every key again (`get`, a verify,
//! the full and the paged listing, the audit count).
//!
//! Inputs run on the in-memory backend (`memory:`, a fresh store per input), which proves the
//! core needs no file, except one input in `FILE_EVERY`: those run on a fresh store file and
//! are also closed, reopened and checked again, so persistence stays covered. The choice is a
//! CRC-32 of the whole input, so an input always runs on the same backend (a crash reproduces)
//! but a mutated input picks again: the fuzzer cannot drift to the file (a file input is about
//! twenty times slower and reaches redb's code, so with a choice it could keep, such as a
//! leading byte, file inputs took over half the corpus). Store files live in one temporary
//! directory per process (under $KEYSTEAD_FUZZ_DIR, else /dev/shm when there is one, else the
//! system temp dir), made when the first file input comes. At most `MAX_OPS` operations per
//! input.
#![no_main]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use keystead::{
    parse_key, Error, KeyId, KeyInfo, KeyStatus, KeyStore, ListFilter, NewKey, Options, Outcome,
    Verification,
};
use keystead_fuzz::{base62_fixed, format_key, format_key_with_id_text};
use libfuzzer_sys::fuzz_target;

const MAX_OPS: usize = 30;
/// One input in this many (by a CRC-32 of its bytes) runs on a store file, not `memory:`.
const FILE_EVERY: u32 = 32;
const SCOPES: [&str; 4] = ["a", "b:read", "chat:completions", "x/y.z-1"];
const BAD_SCOPE: &str = "bad scope";
/// A large rotation grace (about ten years): the old key keeps verifying.
const LARGE_GRACE: Duration = Duration::from_secs(10 * 365 * 86_400);

/// 2100-01-01T00:00:00Z: the "far future" expiry.
fn far() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(4_102_444_800)
}

#[derive(Debug, Arbitrary)]
enum How {
    /// The key as issued.
    Right,
    /// The key as issued, through `verify_header("Bearer <key>")`.
    Header,
    /// Same prefix and id, another secret (with a valid checksum).
    WrongSecret([u8; 32]),
    /// One character changed to an ASCII byte.
    Changed { at: u8, to: u8 },
    /// Spaces and tabs only.
    Blank,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Create { name: u8, scopes: u8, expires: bool },
    Verify { key: u8, how: How, required: u8 },
    Disable(u8),
    Enable(u8),
    Revoke(u8),
    Rotate { key: u8, zero_grace: bool },
    Delete(u8),
    Flush,
    SetScopes { key: u8, scopes: u8 },
    SetExpiry { key: u8, far: bool },
    Get(u8),
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Disabled,
    Revoked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Never,
    Far,
    /// Ended by a rotation with a large grace: in the future, but not `Far`.
    Grace,
    /// Ended by a rotation with zero grace: in the past.
    Past,
}

#[derive(Debug)]
struct ModelKey {
    id: KeyId,
    key: String,
    state: State,
    expiry: Expiry,
    scopes: BTreeSet<String>,
    replaces: Option<KeyId>,
    replaced_by: Option<KeyId>,
    deleted: bool,
    pending_uses: u64,
    flushed_uses: u64,
}

impl ModelKey {
    /// Revoked wins over expired, which wins over disabled.
    fn status(&self) -> KeyStatus {
        match self.state {
            State::Revoked => KeyStatus::Revoked,
            _ if self.expiry == Expiry::Past => KeyStatus::Expired,
            State::Disabled => KeyStatus::Disabled,
            State::Active => KeyStatus::Active,
        }
    }
}

struct Model {
    keys: Vec<ModelKey>,
    audit_entries: usize,
}

fn name_for(choice: u8) -> Option<String> {
    match choice % 16 {
        13 => None, // empty
        14 => None, // control character
        15 => None, // too long
        n => {
            Some(["k", "dev-server-integration", "clé 🔑", "  padded  "][usize::from(n % 4)].into())
        }
    }
}

fn invalid_name(choice: u8) -> String {
    match choice % 16 {
        13 => " \t ".into(),
        14 => "bell\u{7}".into(),
        _ => "x".repeat(129),
    }
}

/// Scope list for a mask: bits 0-3 pick from `SCOPES`, bit 4 repeats `a` (deduplicated by
/// the store), bits 5-7 all set add an invalid scope. Returns the list and its normal form
/// (`None` when invalid).
fn scopes_for(mask: u8) -> (Vec<&'static str>, Option<BTreeSet<String>>) {
    let mut list: Vec<&'static str> = SCOPES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect();
    list.reverse();
    if mask & 0x10 != 0 {
        list.push("a");
    }
    if mask & 0xe0 == 0xe0 {
        list.push(BAD_SCOPE);
        return (list, None);
    }
    let normal = list.iter().map(|s| (*s).to_owned()).collect();
    (list, Some(normal))
}

fn expect_not_found<T: Debug>(result: Result<T, Error>, id: KeyId, what: &str) {
    match result {
        Err(Error::KeyNotFound(got)) if got == id => {}
        other => panic!("{what} of deleted key {id}: expected KeyNotFound, got {other:?}"),
    }
}

fn expect_invalid_state<T: Debug>(
    result: Result<T, Error>,
    id: KeyId,
    want_state: &str,
    want_operation: &str,
) {
    match result {
        Err(Error::InvalidState {
            id: got,
            state,
            operation,
        }) if got == id && state == want_state && operation == want_operation => {}
        other => panic!(
            "expected InvalidState {{ {id}, {want_state}, {want_operation} }}, got {other:?}"
        ),
    }
}

fn expect_invalid_argument<T: Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Compares key information from the store with the model (`uses`: also the usage figures,
/// which a `Verification` may show as of an older view).
fn check_info(info: &KeyInfo, m: &ModelKey, uses: bool, what: &str) {
    assert_eq!(info.id(), m.id, "{what}: id");
    assert_eq!(
        info.status(),
        m.status(),
        "{what}: status of {m:?}\n{info:?}"
    );
    let scopes: Vec<String> = m.scopes.iter().cloned().collect();
    assert_eq!(info.scopes(), scopes.as_slice(), "{what}: scopes of {m:?}");
    assert_eq!(info.replaces(), m.replaces, "{what}: replaces of {m:?}");
    assert_eq!(
        info.replaced_by(),
        m.replaced_by,
        "{what}: replaced_by of {m:?}"
    );
    match m.expiry {
        Expiry::Never => assert_eq!(info.expires_at(), None, "{what}: expiry of {m:?}"),
        Expiry::Far => assert_eq!(info.expires_at(), Some(far()), "{what}: expiry of {m:?}"),
        Expiry::Grace => assert!(
            info.expires_at()
                .is_some_and(|at| at > SystemTime::now() && at < far()),
            "{what}: expiry of {m:?}\n{info:?}"
        ),
        Expiry::Past => assert!(
            info.expires_at().is_some_and(|at| at <= SystemTime::now()),
            "{what}: expiry of {m:?}\n{info:?}"
        ),
    }
    if uses {
        assert_eq!(
            info.use_count(),
            m.flushed_uses,
            "{what}: use count of {m:?}"
        );
        assert_eq!(
            info.last_used_at().is_some(),
            m.flushed_uses > 0,
            "{what}: last use of {m:?}"
        );
    }
}

fn expected_outcome(m: &ModelKey, required: &[&str]) -> Outcome {
    if m.deleted {
        return Outcome::NotFound;
    }
    match m.status() {
        KeyStatus::Revoked => Outcome::Revoked,
        KeyStatus::Expired => Outcome::Expired,
        KeyStatus::Disabled => Outcome::Disabled,
        _ if required.iter().all(|s| m.scopes.contains(*s)) => Outcome::Valid,
        _ => Outcome::InsufficientScope,
    }
}

fn check_verification(v: &Verification, expected: Outcome, m: &ModelKey, what: &str) {
    if trace() {
        eprintln!("  {what} -> {:?}", v.outcome());
    }
    assert_eq!(v.outcome(), expected, "{what}: outcome for {m:?}");
    // Full key info only for a valid key; the id whenever the secret matched.
    let matched = matches!(
        expected,
        Outcome::Valid
            | Outcome::Disabled
            | Outcome::Revoked
            | Outcome::Expired
            | Outcome::InsufficientScope
    );
    match v.key() {
        Some(info) if expected == Outcome::Valid => check_info(info, m, false, what),
        None if expected != Outcome::Valid => {}
        other => panic!("{what}: outcome {expected:?} with key info {other:?}"),
    }
    assert_eq!(
        v.key_id(),
        matched.then_some(m.id),
        "{what}: outcome {expected:?}: key id"
    );
}

fn created_key(created: &keystead::CreatedKey, m: &ModelKey) {
    let parts = parse_key(created.key()).expect("an issued key parses");
    assert_eq!(parts.prefix, "ks");
    assert_eq!(parts.id, created.info().id());
    check_info(created.info(), m, true, "created key");
}

fn list_matches(store: &KeyStore, model: &Model, what: &str) {
    let listed = store.list(&ListFilter::new()).expect("list");
    let mut live: Vec<&ModelKey> = model.keys.iter().filter(|m| !m.deleted).collect();
    live.sort_by_key(|m| m.id);
    assert_eq!(
        listed.iter().map(KeyInfo::id).collect::<Vec<_>>(),
        live.iter().map(|m| m.id).collect::<Vec<_>>(),
        "{what}: listed ids"
    );
    for (info, m) in listed.iter().zip(live) {
        check_info(info, m, true, what);
    }
    let audit = store.audit(None, usize::MAX).expect("audit");
    assert_eq!(audit.len(), model.audit_entries, "{what}: audit entries");
}

/// After a flush (and after reopening a file): every key of the model again, by `get` and by
/// a verify with no required scopes, and the listing in one go and in pages of three.
fn check_every_key(store: &KeyStore, model: &mut Model, what: &str) {
    list_matches(store, model, what);
    let mut paged = Vec::new();
    loop {
        let mut filter = ListFilter::new().limit(3);
        if let Some(&last) = paged.last() {
            filter = filter.after(last);
        }
        let page = store.list(&filter).expect("list a page");
        assert!(page.len() <= 3, "{what}: a page of {} keys", page.len());
        let full = page.len() == 3;
        paged.extend(page.iter().map(KeyInfo::id));
        if !full {
            break;
        }
    }
    let mut live: Vec<KeyId> = model
        .keys
        .iter()
        .filter(|m| !m.deleted)
        .map(|m| m.id)
        .collect();
    live.sort();
    assert_eq!(paged, live, "{what}: paged listing");
    for m in &mut model.keys {
        match store.get(m.id).expect("get") {
            None => assert!(m.deleted, "{what}: get: {m:?} is missing"),
            Some(info) => {
                assert!(
                    !m.deleted,
                    "{what}: get: deleted {m:?} is still there: {info:?}"
                );
                check_info(&info, m, true, what);
            }
        }
        let v = store.verify(&m.key, &[]).expect("verify");
        check_verification(&v, expected_outcome(m, &[]), m, what);
        if v.outcome() == Outcome::Valid {
            m.pending_uses += 1;
        }
    }
}

fn flush_model(model: &mut Model) {
    for m in &mut model.keys {
        if !m.deleted {
            m.flushed_uses += m.pending_uses;
        }
        m.pending_uses = 0;
    }
}

fn options() -> Options {
    Options::new().flush_interval(Duration::ZERO)
}

fn apply(store: &KeyStore, model: &mut Model, op: &Op) {
    let len = model.keys.len();
    let pick = |i: u8| usize::from(i) % len;
    match *op {
        Op::Create {
            name,
            scopes,
            expires,
        } => {
            let (list, normal) = scopes_for(scopes);
            let valid_name = name_for(name);
            let mut new = NewKey::new(valid_name.clone().unwrap_or_else(|| invalid_name(name)))
                .scopes(list.iter().copied());
            if expires {
                new = new.expires_at(far());
            }
            let result = store.create(new);
            let (Some(valid_name), Some(normal)) = (valid_name, normal) else {
                return expect_invalid_argument(result, "create");
            };
            let created = result.expect("create");
            assert_eq!(created.info().name(), valid_name);
            let m = ModelKey {
                id: created.info().id(),
                key: created.key().to_owned(),
                state: State::Active,
                expiry: if expires { Expiry::Far } else { Expiry::Never },
                scopes: normal,
                replaces: None,
                replaced_by: None,
                deleted: false,
                pending_uses: 0,
                flushed_uses: 0,
            };
            created_key(&created, &m);
            model.keys.push(m);
            model.audit_entries += 1;
        }
        Op::Verify {
            key,
            ref how,
            required,
        } => {
            let m = &mut model.keys[pick(key)];
            let required: Vec<&str> = SCOPES
                .iter()
                .enumerate()
                .filter(|(i, _)| required & (1 << i) != 0)
                .map(|(_, s)| *s)
                .collect();
            let right = expected_outcome(m, &required);
            let (v, expected, what) = match how {
                How::Right => (store.verify(&m.key, &required), right, "verify"),
                How::Header => (
                    store.verify_header(format!("Bearer {}", m.key), &required),
                    right,
                    "verify_header",
                ),
                How::WrongSecret(secret) => {
                    let id_text = m.id.to_string();
                    let wrong = format_key_with_id_text("ks", &id_text, secret);
                    if wrong == m.key {
                        return; // the fuzzer guessed the 256-bit secret
                    }
                    (
                        store.verify(&wrong, &required),
                        Outcome::NotFound,
                        "wrong secret",
                    )
                }
                &How::Changed { at, to } => {
                    let mut bytes = m.key.clone().into_bytes();
                    let at = usize::from(at) % bytes.len();
                    let to = to % 0x80;
                    let expected = if bytes[at] == to {
                        right
                    } else {
                        Outcome::Malformed
                    };
                    bytes[at] = to;
                    let changed = String::from_utf8(bytes).expect("ASCII");
                    (store.verify(&changed, &required), expected, "changed key")
                }
                How::Blank => (store.verify(" \t ", &required), Outcome::Missing, "blank"),
            };
            let v = v.unwrap_or_else(|e| panic!("{what}: {e}"));
            check_verification(&v, expected, m, what);
            if v.outcome() == Outcome::Valid {
                m.pending_uses += 1;
            }
        }
        Op::Disable(key) | Op::Enable(key) => {
            let (target, result, operation) = match op {
                Op::Disable(_) => (
                    State::Disabled,
                    store.disable(model.keys[pick(key)].id),
                    "disabled",
                ),
                _ => (
                    State::Active,
                    store.enable(model.keys[pick(key)].id),
                    "enabled",
                ),
            };
            let m = &mut model.keys[pick(key)];
            if m.deleted {
                return expect_not_found(result, m.id, operation);
            }
            if m.state == State::Revoked {
                return expect_invalid_state(result, m.id, "revoked", operation);
            }
            let info = result.unwrap_or_else(|e| panic!("{operation}: {e}"));
            if m.state != target {
                m.state = target;
                model.audit_entries += 1;
            }
            check_info(&info, m, true, operation);
        }
        Op::Revoke(key) => {
            let m = &mut model.keys[pick(key)];
            let result = store.revoke(m.id);
            if m.deleted {
                return expect_not_found(result, m.id, "revoke");
            }
            let info = result.expect("revoke");
            if m.state != State::Revoked {
                m.state = State::Revoked;
                model.audit_entries += 1;
            }
            check_info(&info, m, true, "revoke");
        }
        Op::Rotate { key, zero_grace } => {
            let index = pick(key);
            let m = &mut model.keys[index];
            let grace = if zero_grace {
                Duration::ZERO
            } else {
                LARGE_GRACE
            };
            let result = store.rotate(m.id, grace);
            if m.deleted {
                return expect_not_found(result, m.id, "rotate");
            }
            if m.state == State::Revoked {
                return expect_invalid_state(result, m.id, "revoked", "rotated");
            }
            if m.replaced_by.is_some() {
                return expect_invalid_state(result, m.id, "rotated", "rotated again");
            }
            let created = result.expect("rotate");
            m.replaced_by = Some(created.info().id());
            m.expiry = if zero_grace {
                Expiry::Past
            } else {
                Expiry::Grace
            };
            let new = ModelKey {
                id: created.info().id(),
                key: created.key().to_owned(),
                state: State::Active,
                expiry: Expiry::Never,
                scopes: m.scopes.clone(),
                replaces: Some(m.id),
                replaced_by: None,
                deleted: false,
                pending_uses: 0,
                flushed_uses: 0,
            };
            created_key(&created, &new);
            model.keys.push(new);
            model.audit_entries += 2;
        }
        Op::Delete(key) => {
            let m = &mut model.keys[pick(key)];
            let result = store.delete(m.id);
            if m.deleted {
                return expect_not_found(result, m.id, "delete");
            }
            result.expect("delete");
            m.deleted = true;
            m.pending_uses = 0;
            m.flushed_uses = 0;
            model.audit_entries += 1;
        }
        Op::Flush => {
            store.flush().expect("flush");
            flush_model(model);
        }
        Op::SetScopes { key, scopes } => {
            let m = &mut model.keys[pick(key)];
            let (list, normal) = scopes_for(scopes);
            let result = store.set_scopes(m.id, &list);
            let Some(normal) = normal else {
                return expect_invalid_argument(result, "set_scopes");
            };
            if m.deleted {
                return expect_not_found(result, m.id, "set_scopes");
            }
            let info = result.expect("set_scopes");
            if m.scopes != normal {
                m.scopes = normal;
                model.audit_entries += 1;
            }
            check_info(&info, m, true, "set_scopes");
        }
        Op::SetExpiry { key, far: to_far } => {
            let m = &mut model.keys[pick(key)];
            let result = store.set_expiry(m.id, to_far.then(far));
            if m.deleted {
                return expect_not_found(result, m.id, "set_expiry");
            }
            if m.state == State::Revoked {
                return expect_invalid_state(result, m.id, "revoked", "given a new expiry");
            }
            if m.replaced_by.is_some() {
                // A rotated key ends at its grace end (ten years) or in the past: `far` and
                // "never" would both extend it, which is refused.
                return expect_invalid_state(
                    result,
                    m.id,
                    "rotated",
                    "given a later expiry (its grace period can only be shortened)",
                );
            }
            let info = result.expect("set_expiry");
            let expiry = if to_far { Expiry::Far } else { Expiry::Never };
            if m.expiry != expiry {
                m.expiry = expiry;
                model.audit_entries += 1;
            }
            check_info(&info, m, true, "set_expiry");
        }
        Op::Get(key) => {
            let m = &model.keys[pick(key)];
            match store.get(m.id).expect("get") {
                None => assert!(m.deleted, "get: {m:?} is missing"),
                Some(info) => {
                    assert!(!m.deleted, "get: deleted {m:?} is still there: {info:?}");
                    check_info(&info, m, true, "get");
                }
            }
        }
        Op::List => list_matches(store, model, "list"),
    }
}

/// `KEYSTEAD_FUZZ_TRACE=1` prints every op and the final model (for reproducing a crash).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("KEYSTEAD_FUZZ_TRACE").is_some())
}

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        // libFuzzer ends the process with exit(), so this directory itself outlives it; the
        // scripts point KEYSTEAD_FUZZ_DIR at a directory they remove afterwards.
        let base = match std::env::var_os("KEYSTEAD_FUZZ_DIR") {
            Some(dir) => PathBuf::from(dir),
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        tempfile::Builder::new()
            .prefix("keystead-fuzz-")
            .tempdir_in(base)
            .expect("a scratch directory")
    })
    .path()
}

/// Removes the store file even when an assertion fails.
struct FileGuard(PathBuf);

impl Drop for FileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fuzz_target!(|data: &[u8]| {
    // Decoded as `fuzz_target!(|ops: Vec<Op>|)` would (and did before the backend choice).
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file = crc32fast::hash(data).is_multiple_of(FILE_EVERY).then(|| {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        FileGuard(scratch_dir().join(format!("{n}.redb")))
    });
    let store = match &file {
        Some(guard) => KeyStore::open(&guard.0, options()),
        None => KeyStore::open("memory:", options()),
    }
    .expect("open a new store");
    // A key that was never created: every operation on it is KeyNotFound, and its (well
    // formed, formatted here) key verifies as not_found.
    let ghost_id: u64 = 0x0123_4567_89ab_cdef;
    let ghost_key = format_key("ks", ghost_id, &[7; 32]);
    let ghost_parts = parse_key(&ghost_key).expect("a key formatted from the docs parses");
    assert_eq!(
        ghost_parts.id.to_string(),
        base62_fixed(&ghost_id.to_be_bytes(), 12).unwrap()
    );
    let mut model = Model {
        keys: vec![ModelKey {
            id: ghost_parts.id,
            key: ghost_key,
            state: State::Active,
            expiry: Expiry::Never,
            scopes: BTreeSet::new(),
            replaces: None,
            replaced_by: None,
            deleted: true,
            pending_uses: 0,
            flushed_uses: 0,
        }],
        audit_entries: 0,
    };

    let trace = trace();
    if trace {
        eprintln!(
            "backend: {}",
            if file.is_some() { "file" } else { "memory:" }
        );
    }
    for op in ops.iter().take(MAX_OPS) {
        if trace {
            eprintln!("op {op:?}");
        }
        apply(&store, &mut model, op);
    }
    if trace {
        eprintln!("end {:#?}", model.keys);
    }
    list_matches(&store, &model, "after the ops");

    // Written usage and every key as the store now reads them (a fresh read of each record,
    // not what the ops returned): what a reopen would show, for either backend.
    store.flush().expect("flush");
    flush_model(&mut model);
    check_every_key(&store, &mut model, "after a flush");

    // Close (which flushes the uses just counted); a file is reopened: the same keys, usage
    // and audit log. `memory:` has nothing to reopen (each open is a new store).
    store.close().expect("close");
    flush_model(&mut model);
    if let Some(guard) = &file {
        let store = KeyStore::open(&guard.0, options()).expect("reopen");
        check_every_key(&store, &mut model, "after reopening");
        drop(store);
    }
});
