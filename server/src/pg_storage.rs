//! The relay's storage in PostgreSQL: the same ordered key-value contract
//! as sled ([`Storage`]), in one table.
//!
//! This is the first step of the PostgreSQL backend: every key the relay
//! writes lives in `aftercase_kv (k bytea primary key, v bytea)`, so the
//! relay's code and its key layout are unchanged and the backends share one
//! acceptance suite (`tests/tests/storage_backends.rs`). `bytea` compares
//! byte by byte, so range scans see keys in the order sled gives them.
//!
//! Durability follows the contract's two steps. [`Storage::apply`] commits
//! its batch in one transaction with `synchronous_commit` off: visible to
//! every reader at once and all-or-nothing after a crash, but its WAL may
//! not be on disk yet. [`Storage::flush`] commits a transaction that
//! writes (it bumps a counter in `aftercase_flush`) with
//! `synchronous_commit` on; PostgreSQL makes it durable by flushing the WAL
//! up to its commit record, which includes every commit made before it. So
//! one flush covers any number of applied batches, as sled's flush does. A
//! transaction that only takes an id (`txid_current()`) is not enough:
//! PostgreSQL commits a transaction that wrote no WAL asynchronously, and the
//! crash test lost 12 of 200 flushed writes that way.

use aftercase_sync::storage::{
    counter_value, Batch, BatchOp, Entries, Expect, Storage, StorageError,
};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The advisory lock [`PostgresStorage::claim`] takes ("Aftercas" in
/// ASCII): any fixed number other programs on the database do not use.
const CLAIM_KEY: i64 = 0x4166_7465_7263_6173;

/// A [`Storage`] in a PostgreSQL database.
pub struct PostgresStorage {
    client: Mutex<postgres::Client>,
}

/// The server's own message when it sent one (`postgres::Error` displays
/// only "db error"), else the client's with its cause.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn backend(op: &'static str) -> impl Fn(postgres::Error) -> StorageError {
    move |e| StorageError::Backend {
        op,
        message: describe(&e),
    }
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user@host:port/database`) and creates
    /// the table if it is missing.
    pub fn open(url: &str) -> Result<PostgresStorage, StorageError> {
        let mut client =
            postgres::Client::connect(url, postgres::NoTls).map_err(backend("open"))?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS aftercase_kv (
                     k bytea PRIMARY KEY,
                     v bytea NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS aftercase_flush (
                     id int PRIMARY KEY,
                     n bigint NOT NULL
                 );
                 INSERT INTO aftercase_flush VALUES (1, 0) ON CONFLICT DO NOTHING",
            )
            .map_err(backend("open"))?;
        Ok(PostgresStorage {
            client: Mutex::new(client),
        })
    }

    /// Claims the database for this process: a session-level advisory lock
    /// held as long as the connection lives, so a second relay (or a
    /// `reindex` while the relay runs) is refused instead of interleaving
    /// its sequence numbers and cache with this one's. PostgreSQL releases
    /// the lock when the session ends, also when the process is killed;
    /// the session of a process that just ended may take a moment to go,
    /// hence a few seconds of retries.
    pub fn claim(&self) -> Result<(), StorageError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got: bool = self
                .client()
                .query_one("SELECT pg_try_advisory_lock($1)", &[&CLAIM_KEY])
                .map_err(backend("open"))?
                .get(0);
            if got {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(StorageError::Backend {
                    op: "open",
                    message: "another relay (or reindex) is using this database; \
                              stop it first"
                        .into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn client(&self) -> MutexGuard<'_, postgres::Client> {
        // A panic while holding the lock leaves the client as it was: every
        // statement is its own transaction or rolled back on drop.
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for PostgresStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let row = self
            .client()
            .query_opt("SELECT v FROM aftercase_kv WHERE k = $1", &[&key])
            .map_err(backend("get"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .query(
                "SELECT k, v FROM aftercase_kv WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3",
                &[&start, &end, &limit],
            )
            .map_err(backend("scan"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        if batch.is_empty() && batch.expectations().is_empty() {
            return Ok(());
        }
        let mut client = self.client();
        let mut tx = client.transaction().map_err(backend("apply"))?;
        tx.batch_execute("SET LOCAL synchronous_commit TO off")
            .map_err(backend("apply"))?;
        write(&mut tx, batch)?;
        tx.commit().map_err(backend("apply"))
    }

    fn apply_sequenced(
        &self,
        counter: &[u8],
        build: &mut dyn FnMut(u64) -> Result<Batch, StorageError>,
    ) -> Result<u64, StorageError> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(backend("apply"))?;
        tx.batch_execute("SET LOCAL synchronous_commit TO off")
            .map_err(backend("apply"))?;
        // The counter's row lock is held to the commit, and PostgreSQL makes
        // a commit visible before it releases its locks: the next writer
        // reads this number only once these writes are visible, so numbers
        // become visible in order (what a sequence does not promise).
        tx.execute(
            "INSERT INTO aftercase_kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING",
            &[&counter, &0u64.to_be_bytes().as_slice()],
        )
        .map_err(backend("apply"))?;
        let stored: Vec<u8> = tx
            .query_one(
                "SELECT v FROM aftercase_kv WHERE k = $1 FOR UPDATE",
                &[&counter],
            )
            .map_err(backend("apply"))?
            .get(0);
        let n = counter_value(counter, Some(&stored))? + 1;
        let mut batch = build(n)?;
        batch.put(counter, n.to_be_bytes());
        write(&mut tx, batch)?;
        tx.commit().map_err(backend("apply"))?;
        Ok(n)
    }

    fn flush(&self) -> Result<(), StorageError> {
        // A write committed synchronously waits until the WAL is flushed up
        // to its commit record (see the module's comment).
        self.client()
            .batch_execute(
                "SET synchronous_commit TO on;
                 UPDATE aftercase_flush SET n = n + 1 WHERE id = 1",
            )
            .map_err(backend("flush"))
    }
}

/// Checks `batch`'s expectations and writes it in `tx`.
fn write(tx: &mut postgres::Transaction<'_>, batch: Batch) -> Result<(), StorageError> {
    let (ops, expects) = batch.into_parts();
    check(tx, &expects)?;
    // Later operations on a key win; one statement may not touch a row
    // twice, so the batch is reduced to each key's last operation.
    let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for op in ops {
        match op {
            BatchOp::Put(k, v) => last.insert(k, Some(v)),
            BatchOp::Delete(k) => last.insert(k, None),
        };
    }
    let (mut put_keys, mut put_values, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in last {
        match v {
            Some(v) => {
                put_keys.push(k);
                put_values.push(v);
            }
            None => deleted.push(k),
        }
    }
    if !deleted.is_empty() {
        tx.execute("DELETE FROM aftercase_kv WHERE k = ANY($1)", &[&deleted])
            .map_err(backend("apply"))?;
    }
    if !put_keys.is_empty() {
        tx.execute(
            "INSERT INTO aftercase_kv (k, v)
             SELECT * FROM unnest($1::bytea[], $2::bytea[])
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            &[&put_keys, &put_values],
        )
        .map_err(backend("apply"))?;
    }
    Ok(())
}

/// Fails with a conflict unless every expectation holds, and keeps it
/// holding until `tx` ends. A row that exists is locked (`FOR UPDATE`); a
/// key expected absent has no row to lock, so every expected key is also
/// locked by a transaction-level advisory lock on its hash, taken in key
/// order (no deadlock between two checkers): two conditional batches on
/// one key, from any processes, take turns, and the second sees the
/// first's write.
fn check(tx: &mut postgres::Transaction<'_>, expects: &[Expect]) -> Result<(), StorageError> {
    if expects.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<&[u8]> = expects.iter().map(|e| e.key.as_slice()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in &keys {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 0))",
            &[key],
        )
        .map_err(backend("apply"))?;
    }
    let rows = tx
        .query(
            "SELECT k, v FROM aftercase_kv WHERE k = ANY($1) FOR UPDATE",
            &[&keys],
        )
        .map_err(backend("apply"))?;
    let now: BTreeMap<Vec<u8>, Vec<u8>> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    for e in expects {
        if now.get(&e.key) != e.value.as_ref() {
            return Err(StorageError::conflict(&e.key));
        }
    }
    Ok(())
}
