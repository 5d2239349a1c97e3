//! One acceptance suite for every storage backend: the in-memory store of
//! the simulation, sled (the embedded default) and PostgreSQL (a private
//! cluster started by the test; `scripts/install-postgres.sh` installs it).
//! Random operation sequences are checked against a model map: single
//! writes, batches that touch a key more than once, flushes, reopening the
//! store, and scans with bounds and limits.

use aftercase_server::pg_storage::PostgresStorage;
use aftercase_sync::storage::{Batch, MemoryStorage, SledStorage, Storage};
use aftercase_tests::postgres::PgCluster;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone)]
enum Op {
    /// One batch of (key, Some(value) to put | None to delete), in order.
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Flush,
    Reopen,
    Get(Vec<u8>),
    Scan(Vec<u8>, Vec<u8>, usize),
}

/// Keys from a small alphabet with the extreme bytes, so prefixes, shared
/// starts and the byte order of 0x00 and 0xff are all exercised.
fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1), Just(b'a'), Just(0xff)],
        0..4,
    )
}

fn op() -> impl Strategy<Value = Op> {
    let write = (
        key(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
    );
    prop_oneof![
        6 => proptest::collection::vec(write, 1..5).prop_map(Op::Batch),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        2 => key().prop_map(Op::Get),
        2 => (key(), key(), 0usize..6).prop_map(|(a, b, n)| Op::Scan(a, b, n)),
    ]
}

/// Runs random operation sequences on stores made by `fresh` (an empty
/// store and a way to open it again) and checks each against the model.
fn acceptance<S: Storage>(cases: u32, fresh: impl Fn() -> (S, Box<dyn Fn() -> S>)) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ops = proptest::collection::vec(op(), 1..40);
    runner
        .run(&ops, |ops| {
            let (store, reopen) = fresh();
            let mut store = Some(store);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for op in ops {
                let s = store.as_ref().expect("open");
                match op {
                    Op::Batch(writes) => {
                        let mut b = Batch::new();
                        for (k, v) in writes {
                            match v {
                                Some(v) => {
                                    b.put(k.clone(), v.clone());
                                    model.insert(k, v);
                                }
                                None => {
                                    b.delete(k.clone());
                                    model.remove(&k);
                                }
                            }
                        }
                        s.apply(b).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                    Op::Flush => s.flush().map_err(|e| TestCaseError::fail(e.to_string()))?,
                    Op::Reopen => {
                        // Closed cleanly: everything applied is still there.
                        drop(store.take());
                        store = Some(reopen());
                    }
                    Op::Get(k) => {
                        let got = s.get(&k).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(got.as_ref(), model.get(&k), "get {:?}", k);
                    }
                    Op::Scan(a, b, n) => {
                        let got = s
                            .scan(&a, &b, n)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let want: Vec<_> = model
                            .iter()
                            .filter(|(k, _)| **k >= a && **k < b)
                            .take(n)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        prop_assert_eq!(got, want, "scan {:?}..{:?} limit {}", a, b, n);
                    }
                }
            }
            let all = store
                .as_ref()
                .expect("open")
                .scan_prefix(&[])
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let want: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(all, want);
            Ok(())
        })
        .expect("the store behaves like the model");
}

#[test]
fn the_memory_store_passes_the_acceptance_suite() {
    acceptance(128, || {
        let s = MemoryStorage::new();
        let again = s.clone();
        (s, Box::new(move || again.clone()))
    });
}

#[test]
fn sled_passes_the_acceptance_suite() {
    acceptance(24, || {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let s = SledStorage::open(&path).expect("open sled");
        (
            s,
            Box::new(move || {
                let _keep = &dir;
                SledStorage::open(&path).expect("reopen sled")
            }),
        )
    });
}

#[test]
fn postgres_passes_the_acceptance_suite() {
    let cluster = PgCluster::start().expect("a private PostgreSQL cluster");
    let n = AtomicUsize::new(0);
    acceptance(24, || {
        let url = cluster
            .database(&format!("case{}", n.fetch_add(1, Ordering::Relaxed)))
            .expect("createdb");
        let s = PostgresStorage::open(&url).expect("open");
        (
            s,
            Box::new(move || PostgresStorage::open(&url).expect("reopen")),
        )
    });
}

/// What a flush reported durable survives the database server stopping as
/// in a crash (`pg_ctl stop -m immediate`, recovered from the WAL).
#[test]
fn flushed_postgres_writes_survive_a_crash_of_the_server() {
    let cluster = PgCluster::start().expect("a private PostgreSQL cluster");
    let url = cluster.database("crash").expect("createdb");
    let s = PostgresStorage::open(&url).expect("open");
    for i in 0u32..200 {
        let mut b = Batch::new();
        b.put(i.to_be_bytes().to_vec(), vec![7; 100]);
        s.apply(b).expect("apply");
    }
    s.flush().expect("flush");
    drop(s);
    cluster.crash_and_restart().expect("restart");
    let s = PostgresStorage::open(&url).expect("reopen");
    let all = s.scan_prefix(&[]).expect("scan");
    assert_eq!(all.len(), 200, "every flushed write is there");
    assert!(all.iter().all(|(_, v)| v == &vec![7; 100]));
    let err = PostgresStorage::open(&cluster.url("no_such_database"))
        .err()
        .expect("a missing database is an error");
    assert!(
        err.to_string().contains("open") && err.to_string().contains("no_such_database"),
        "the error names the operation and the database: {err}"
    );
}
