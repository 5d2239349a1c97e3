//! The durable watermark: the highest change sequence the relay knew to be
//! durable, kept in a small file beside the storage (`<data-dir>/durable-seq`)
//! and written every [`EVERY`] while it advances.
//!
//! Why: sled checks every message of its log, and a message that fails its
//! check (one flipped byte) ends the log when sled opens: that write and
//! every later one are gone, silently. A relay whose storage opens at a
//! sequence below the watermark has lost acknowledged changes. It says so
//! (log, `/healthz`, `verify`), and resumes its sequence past anything a
//! device may have been told ([`MARGIN`]), so no number is handed out
//! twice and no device skips a new change. Devices still hold what was
//! lost, and hand it back as soon as they change those cases again; a
//! backup restores the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The watermark's file in the data directory.
pub const FILE: &str = "durable-seq";

/// How often the watermark is written while it advances.
pub const EVERY: Duration = Duration::from_secs(2);

/// How far past the watermark a relay that lost data resumes its
/// sequence: far more than the changes of one [`EVERY`] at any load this
/// relay takes.
pub const MARGIN: u64 = aftercase_sync::relay::RESUME_MARGIN;

/// The file `aftercase-relay backup` leaves in a copy: the first relay to
/// serve it moves its sequence on by [`RESTORE_JUMP`] and removes it.
pub const RESTORED: &str = "restored-from-backup";

/// How far a relay serving a restored copy moves its sequence: tablets
/// that synced after the backup was taken were told numbers past the
/// copy's, and no number may be handed out twice (2^40: 200 years of
/// 150 changes a second).
pub const RESTORE_JUMP: u64 = 1 << 40;

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The watermark last written, if any.
pub fn read(data_dir: &Path) -> Option<u64> {
    std::fs::read_to_string(path(data_dir))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes the watermark durably (temporary file, fsync, rename).
pub fn write(data_dir: &Path, seq: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = data_dir.join(format!(".{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(data_dir))?;
    #[cfg(unix)]
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

/// What the relay says when its storage opened below the watermark.
pub fn lost_message(stored: u64, watermark: u64) -> String {
    format!(
        "the relay's storage ends at change sequence {stored}, but sequence {watermark} was durable before: acknowledged changes were lost (a damaged storage file is cut short when it is opened); devices hand back what they still hold when they next change those cases, and a backup restores the rest"
    )
}

/// Writes the watermark every [`EVERY`] while the durable sequence
/// advances, for the life of the relay.
pub fn spawn(state: Arc<crate::state::AppState>, data_dir: PathBuf) {
    actix_web::rt::spawn(async move {
        let mut written = read(&data_dir).unwrap_or(0);
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let durable = state.health.durable();
            if durable <= written {
                continue;
            }
            let dir = data_dir.clone();
            match actix_web::web::block(move || write(&dir, durable)).await {
                Ok(Ok(())) => written = durable,
                Ok(Err(e)) => tracing::warn!(error = %e, "could not write the durable watermark"),
                Err(e) => tracing::warn!(error = %e, "could not write the durable watermark"),
            }
        }
    });
}
