//! One acceptance suite for every storage backend: the in-memory store of
//! the simulation, sled (the embedded default) and PostgreSQL (a private
//! cluster started by the test; `scripts/install-postgres.sh` installs it).
//! Random operation sequences are checked against a model map: single
//! writes, batches that touch a key more than once, conditional batches
//! (kept or refused whole), sequenced batches, flushes, reopening the
//! store, and scans with bounds and limits. Then the promises several
//! writers rely on: sequenced writes are never seen with a gap, and of two
//! racing conditional writes on one key exactly one wins.

use aftercase_server::pg_storage::PostgresStorage;
use aftercase_sync::storage::{Batch, MemoryStorage, SledStorage, Storage, StorageError};
use aftercase_tests::postgres::PgCluster;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

#[derive(Debug, Clone)]
enum Op {
    /// One batch of (key, Some(value) to put | None to delete), in order,
    /// with perhaps an expectation on a key: its true value (`true`) or
    /// one it does not hold (`false`).
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>, Option<(Vec<u8>, bool)>),
    /// The same writes applied under the counter [`COUNTER`].
    Sequenced(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Flush,
    Reopen,
    Get(Vec<u8>),
    Scan(Vec<u8>, Vec<u8>, usize),
}

/// Keys from a small alphabet with the extreme bytes, so prefixes, shared
/// starts and the byte order of 0x00 and 0xff are all exercised.
fn key() -> impl Strategy<Value = Vec<u8>> + Clone {
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1), Just(b'a'), Just(0xff)],
        0..4,
    )
}

/// The counter of [`Op::Sequenced`]: outside [`key`]'s alphabet.
const COUNTER: &[u8] = b"n";

/// A value no write makes (they are at most 5 bytes).
const NEVER: &[u8] = b"never written";

fn op() -> impl Strategy<Value = Op> {
    let write = (
        key(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
    );
    prop_oneof![
        6 => (
            proptest::collection::vec(write.clone(), 1..5),
            proptest::option::of((key(), any::<bool>()))
        )
            .prop_map(|(w, e)| Op::Batch(w, e)),
        2 => proptest::collection::vec(write, 0..3).prop_map(Op::Sequenced),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        2 => key().prop_map(Op::Get),
        2 => (key(), key(), 0usize..6).prop_map(|(a, b, n)| Op::Scan(a, b, n)),
    ]
}

/// Adds `writes` to `b`; returns the model as it is once `b` is applied.
fn with_writes(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    b: &mut Batch,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut after = model.clone();
    for (k, v) in writes {
        match v {
            Some(v) => {
                b.put(k.clone(), v.clone());
                after.insert(k, v);
            }
            None => {
                b.delete(k.clone());
                after.remove(&k);
            }
        }
    }
    after
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
                    Op::Batch(writes, expect) => {
                        let mut b = Batch::new();
                        let mut holds = true;
                        if let Some((k, truthful)) = expect {
                            let now = model.get(&k).cloned();
                            holds = truthful;
                            b.expect(k, if truthful { now } else { Some(NEVER.to_vec()) });
                        }
                        let after = with_writes(&model, &mut b, writes);
                        match s.apply(b) {
                            Ok(()) if holds => model = after,
                            Err(StorageError::Conflict { .. }) if !holds => {}
                            other => {
                                return Err(TestCaseError::fail(format!(
                                    "expectation {}: {other:?}",
                                    if holds { "held" } else { "did not hold" }
                                )))
                            }
                        }
                    }
                    Op::Sequenced(writes) => {
                        let want = model
                            .get(COUNTER)
                            .map(|v| u64::from_be_bytes(v.as_slice().try_into().expect("8 bytes")))
                            .unwrap_or(0)
                            + 1;
                        let mut after = model.clone();
                        let n = s
                            .apply_sequenced(COUNTER, &mut |n| {
                                let mut b = Batch::new();
                                after = with_writes(&model, &mut b, writes.clone());
                                after.insert(COUNTER.to_vec(), n.to_be_bytes().to_vec());
                                Ok(b)
                            })
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(n, want);
                        model = after;
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

/// Writers on their own handles (for PostgreSQL, their own connections)
/// take numbers from one counter while a reader scans the feed they write,
/// keyed by number: the reader never sees a number without every lower one,
/// and in the end every number is there once.
/// `each` writes per writer: enough for the reader to look in between.
fn sequenced_writers_leave_no_gap<S: Storage>(each: u64, open: impl Fn() -> S + Sync) {
    const WRITERS: u64 = 4;
    let total = WRITERS * each;
    let feed_key = |n: u64| [b"f/".as_slice(), &n.to_be_bytes()].concat();
    let finished = AtomicUsize::new(0);
    let scans = std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (s, finished) = (open(), &finished);
            scope.spawn(move || {
                for _ in 0..each {
                    s.apply_sequenced(b"fs", &mut |n| {
                        let mut b = Batch::new();
                        b.put(feed_key(n), w.to_be_bytes());
                        Ok(b)
                    })
                    .expect("sequenced apply");
                }
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        let (reader, finished) = (open(), &finished);
        let watching = scope.spawn(move || {
            let mut scans = 0;
            loop {
                let all_done = finished.load(Ordering::SeqCst) == WRITERS as usize;
                let seen = reader.scan_prefix(b"f/").expect("scan");
                scans += 1;
                for (i, (k, _)) in seen.iter().enumerate() {
                    assert_eq!(
                        k,
                        &feed_key(i as u64 + 1),
                        "scan {scans}: a gap before the {}th entry",
                        i + 1
                    );
                }
                if all_done {
                    assert_eq!(
                        seen.len() as u64,
                        total,
                        "{total} writes took {} numbers: some were taken twice",
                        seen.len()
                    );
                    return scans;
                }
                std::thread::yield_now();
            }
        });
        watching.join().expect("reader")
    });
    assert!(scans > 1, "the reader looked while the writers wrote");
    let s = open();
    let counter = s.get(b"fs").expect("get").expect("the counter");
    assert_eq!(counter, total.to_be_bytes().to_vec());
}

/// Two handles race, round after round, to write a key only if it is
/// still absent: exactly one wins each round, the other is told of the
/// conflict, and nothing of the loser's batch is written.
fn one_of_two_racing_conditional_writes_wins<S: Storage>(open: impl Fn() -> S + Sync) {
    let (a, b) = (open(), open());
    for round in 0..30 {
        let key = format!("m/{round}").into_bytes();
        let side = |who: u8| format!("w/{round}/{}", char::from(who)).into_bytes();
        let barrier = Barrier::new(2);
        let results: Vec<Result<(), StorageError>> = std::thread::scope(|scope| {
            let runs: Vec<_> = [(&a, b'a'), (&b, b'b')]
                .into_iter()
                .map(|(s, who)| {
                    let (key, barrier, side) = (&key, &barrier, &side);
                    scope.spawn(move || {
                        let mut batch = Batch::new();
                        batch.expect(key.clone(), None);
                        batch.put(key.clone(), vec![who]);
                        batch.put(side(who), vec![who]);
                        barrier.wait();
                        s.apply(batch)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("writer"))
                .collect()
        });
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StorageError::Conflict { .. }))),
            "round {round}: {results:?}"
        );
        let holder = a.get(&key).expect("get").expect("the winner's write")[0];
        for who in [b'a', b'b'] {
            assert_eq!(
                b.get(&side(who)).expect("get").is_some(),
                who == holder,
                "round {round}: only the winner's batch is written"
            );
        }
    }
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
fn the_memory_store_keeps_order_and_refuses_conflicts_across_threads() {
    let s = MemoryStorage::new();
    sequenced_writers_leave_no_gap(2_000, || s.clone());
    one_of_two_racing_conditional_writes_wins(|| s.clone());
}

#[test]
fn sled_keeps_order_and_refuses_conflicts_across_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStorage::open(&dir.path().join("db")).expect("open sled");
    sequenced_writers_leave_no_gap(2_000, || s.clone());
    one_of_two_racing_conditional_writes_wins(|| s.clone());
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

/// The same over several connections, as several relays on one database
/// would be.
#[test]
fn postgres_keeps_order_and_refuses_conflicts_across_connections() {
    let cluster = PgCluster::start().expect("a private PostgreSQL cluster");
    let url = cluster.database("race").expect("createdb");
    let open = || PostgresStorage::open(&url).expect("open");
    sequenced_writers_leave_no_gap(40, open);
    one_of_two_racing_conditional_writes_wins(open);
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
