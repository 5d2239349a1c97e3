//! Following the other relays on the same PostgreSQL database.
//!
//! Every flush of every relay records how far the change sequence is
//! durable (`aftercase_flushes`) and notifies `aftercase_commits`. This
//! thread listens on a connection of its own; on each notification, and
//! at least once a second (a notification sent while the connection was
//! down is lost; the watermark is not), it reads the watermark and hands
//! it to [`AppState::observe_commits`], which drops stale copies, refreshes
//! head office's rows and wakes the stores' live connections.

use crate::pg_storage::{self, COMMITS_CHANNEL};
use crate::state::AppState;
use aftercase_sync::storage::StorageError;
use postgres::fallible_iterator::FallibleIterator;
use std::sync::Arc;
use std::time::Duration;

/// The longest a commit of another relay waits to be noticed when its
/// notification was lost.
const POLL: Duration = Duration::from_secs(1);

/// Starts the follower of the database at `url`; it runs until the relay
/// shuts down. `shown` names the database without its password, for logs.
/// Call from within the relay's runtime: summaries are derived again on
/// it when another relay publishes a policy.
pub fn spawn(state: Arc<AppState>, url: String, shown: String) {
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("follower".into())
        .spawn(move || run(&state, &runtime, &url, &shown));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the follower of other relays' commits");
    }
}

fn run(state: &Arc<AppState>, runtime: &tokio::runtime::Handle, url: &str, shown: &str) {
    let shutdown = state.shutdown_signal();
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        match follow(state, runtime, url, &shutdown) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "following other relays' commits on {shown}: reconnecting");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Listens and catches up until shutdown (`Ok`) or a database error.
fn follow(
    state: &Arc<AppState>,
    runtime: &tokio::runtime::Handle,
    url: &str,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), StorageError> {
    let mut client = pg_storage::connect(url)?;
    client
        .batch_execute(&format!("LISTEN {COMMITS_CHANNEL}"))
        .map_err(|e| StorageError::Backend {
            op: "listen",
            message: e.to_string(),
        })?;
    loop {
        // After LISTEN, so a commit made before it is read here and one
        // made after it is notified.
        let watermark = pg_storage::durable_watermark(&mut client)?;
        let seen = state.observe_commits(watermark)?;
        if seen.cases > 0 {
            tracing::debug!(
                cases = seen.cases,
                watermark,
                "took in other relays' commits"
            );
        }
        if seen.policy_changed {
            // Deadlines may have moved: derive the summaries again.
            runtime.spawn(crate::refresh::refresh(state.clone()));
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut notifications = client.notifications();
        let first = notifications
            .timeout_iter(POLL)
            .next()
            .map_err(|e| StorageError::Backend {
                op: "listen",
                message: e.to_string(),
            })?;
        // One catch-up covers every notification already queued (`iter`
        // does not wait).
        if first.is_some() {
            while let Ok(Some(_)) = notifications.iter().next() {}
        }
    }
}
