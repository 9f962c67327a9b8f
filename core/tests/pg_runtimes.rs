#![cfg(feature = "postgres")]
//! The PostgreSQL store in every host runtime (issue 14): from inside tokio tasks (the
//! client crate's own blocking calls panic there; the store's run on driver threads of its
//! own), from `spawn_blocking`, from a current-thread runtime (as a Node addon's or an async
//! framework's), and from plain threads concurrently. Each place opens, creates, verifies,
//! revokes and lists; nothing may panic.

mod common;

use std::sync::Arc;

use keystead::{KeyStatus, KeyStore, ListFilter, NewKey, Options, Outcome};

/// Options with the background flusher on (the default), so it runs alongside.
fn options() -> Options {
    Options::new()
}

/// Open, create, verify (from this handle and a fresh one: a cold lookup), revoke, list,
/// flush and close, all from the calling context.
fn lifecycle(location: &str, name: &str) {
    let store = KeyStore::open(location, options()).unwrap();
    let created = store.create(NewKey::new(name).scopes(["a:b"])).unwrap();
    let id = created.info().id();
    assert_eq!(
        store.verify(created.key(), &["a:b"]).unwrap().outcome(),
        Outcome::Valid
    );
    let other = KeyStore::open(location, options()).unwrap();
    assert_eq!(
        other.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Valid
    );
    assert_eq!(store.revoke(id).unwrap().status(), KeyStatus::Revoked);
    assert_eq!(
        store.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    let listed = store.list(&ListFilter::new().name_prefix(name)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id(), id);
    assert_eq!(listed[0].status(), KeyStatus::Revoked);
    store.flush().unwrap();
    other.close().unwrap();
    store.close().unwrap();
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn from_tokio_tasks_on_a_multi_thread_runtime() {
    // The location is made outside the runtime: the test helper uses the blocking client.
    let location = common::pg_plain_location();
    multi_thread_runtime().block_on(async move {
        let task = {
            let location = location.clone();
            tokio::spawn(async move { lifecycle(&location, "task") })
        };
        task.await.unwrap();

        // One store shared by several tasks at once; opened and dropped inside a task.
        let store = {
            let location = location.clone();
            tokio::spawn(async move { Arc::new(KeyStore::open(&location, options()).unwrap()) })
                .await
                .unwrap()
        };
        let tasks: Vec<_> = (0..4)
            .map(|n| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let created = store.create(NewKey::new(format!("shared-{n}"))).unwrap();
                    assert!(store.verify(created.key(), &[]).unwrap().is_valid());
                    tokio::task::yield_now().await;
                    store.revoke(created.info().id()).unwrap();
                    assert_eq!(
                        store.verify(created.key(), &[]).unwrap().outcome(),
                        Outcome::Revoked
                    );
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let revoked = tokio::spawn(async move {
            let listed = store
                .list(&ListFilter::new().status(KeyStatus::Revoked))
                .unwrap();
            drop(store);
            listed
        })
        .await
        .unwrap();
        // 1 from `lifecycle` + 4 shared (the schema is this test's own).
        assert_eq!(revoked.len(), 5);
    });
}

#[test]
fn from_spawn_blocking() {
    let location = common::pg_plain_location();
    multi_thread_runtime().block_on(async move {
        tokio::task::spawn_blocking(move || lifecycle(&location, "blocking"))
            .await
            .unwrap();
    });
}

#[test]
fn from_a_current_thread_runtime() {
    let location = common::pg_plain_location();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        lifecycle(&location, "current");
        let handle = tokio::spawn(async { 1 });
        assert_eq!(handle.await.unwrap(), 1);
    });
}

#[test]
fn from_eight_plain_threads_at_once() {
    let location = common::pg_plain_location();
    let store = Arc::new(KeyStore::open(&location, options()).unwrap());
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let created = store.create(NewKey::new(format!("thread-{n}"))).unwrap();
                assert_eq!(
                    store.verify(created.key(), &[]).unwrap().outcome(),
                    Outcome::Valid
                );
                store.revoke(created.info().id()).unwrap();
                assert_eq!(
                    store.verify(created.key(), &[]).unwrap().outcome(),
                    Outcome::Revoked
                );
                created.info().id()
            })
        })
        .collect();
    let mut ids: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    ids.sort();
    let mut listed: Vec<_> = store
        .list(&ListFilter::new())
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k.status(), KeyStatus::Revoked);
            k.id()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, ids);
}
