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
//! writes (it bumps a counter in `aftercase_flushes`, a row per process) with
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

/// The channel a flush notifies: relays on the same database listen to it
/// to learn of each other's commits (a wake-up only; the watermark in
/// `aftercase_flushes` is the truth).
pub const COMMITS_CHANNEL: &str = "aftercase_commits";

/// A [`Storage`] in a PostgreSQL database.
pub struct PostgresStorage {
    client: Mutex<postgres::Client>,
    /// This process's row in `aftercase_flushes`: random, so relays sharing
    /// the database never write the same row (their flushes would queue
    /// on its lock).
    node: i64,
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
                 CREATE TABLE IF NOT EXISTS aftercase_flushes (
                     id bigint PRIMARY KEY,
                     n bigint NOT NULL,
                     durable bigint NOT NULL
                 )",
            )
            .map_err(backend("open"))?;
        Ok(PostgresStorage {
            client: Mutex::new(client),
            // Positive, and another relay's only with odds of 2^-62.
            node: (rand::random::<u64>() >> 2) as i64 + 1,
        })
    }

    /// Claims the database for this process, held as long as its connection
    /// lives (PostgreSQL releases it when the session ends, also when the
    /// process is killed). Relays claim it shared: any number serve one
    /// database together. `reindex` claims it alone (`exclusive`): it
    /// rewrites every case's rows, so it waits for no relay to be running,
    /// and no relay starts while it runs. The session of a process that
    /// just ended may take a moment to go, hence a few seconds of retries.
    pub fn claim(&self, exclusive: bool) -> Result<(), StorageError> {
        let (sql, refusal) = if exclusive {
            (
                "SELECT pg_try_advisory_lock($1)",
                "a relay (or another reindex) is using this database; stop it first",
            )
        } else {
            (
                "SELECT pg_try_advisory_lock_shared($1)",
                "a reindex is running on this database; start the relay when it has ended",
            )
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got: bool = self
                .client()
                .query_one(sql, &[&CLAIM_KEY])
                .map_err(backend("open"))?
                .get(0);
            if got {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(StorageError::Backend {
                    op: "open",
                    message: refusal.into(),
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
        // to its commit record (see the module's comment). The statements
        // of one simple query run as one transaction: the row records the
        // change sequence as this transaction saw it, and every commit
        // with that number or a lower one was visible to it, so committed
        // before it and durable with it (the watermark other relays follow),
        // and the notification goes out when it commits.
        self.client()
            .batch_execute(&format!(
                "SET synchronous_commit TO on;
                 INSERT INTO aftercase_flushes (id, n, durable)
                     VALUES ({node}, 1, {SEQUENCE_NOW})
                     ON CONFLICT (id) DO UPDATE
                     SET n = aftercase_flushes.n + 1, durable = EXCLUDED.durable;
                 SELECT pg_notify('{COMMITS_CHANNEL}', '')",
                node = self.node,
            ))
            .map_err(backend("flush"))
    }
}

/// The relay's change sequence (the 8 big-endian bytes under `rs`) as a
/// bigint, 0 before the first commit.
const SEQUENCE_NOW: &str = "coalesce((SELECT ('x' || encode(v, 'hex'))::bit(64)::bigint \
     FROM aftercase_kv WHERE k = '\\x7273'::bytea), 0)";

/// The highest change sequence number a flush of any relay on this
/// database has made durable (every lower number is durable too).
pub fn durable_watermark(client: &mut postgres::Client) -> Result<u64, StorageError> {
    let w: i64 = client
        .query_one(
            "SELECT coalesce(max(durable), 0) FROM aftercase_flushes",
            &[],
        )
        .map_err(backend("watermark"))?
        .get(0);
    Ok(u64::try_from(w).unwrap_or(0))
}

/// Connects to `url` as [`PostgresStorage::open`] does, for a second
/// connection of the same process (the follower's `LISTEN`).
pub fn connect(url: &str) -> Result<postgres::Client, StorageError> {
    postgres::Client::connect(url, postgres::NoTls).map_err(backend("open"))
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
