//! The operator's commands that check and copy a relay's data:
//! `aftercase-relay verify` and `aftercase-relay backup`.

use crate::backend::Database;
use crate::cli::{ask, operator_token};
use aftercase_sync::relay::soundness::VerifyReport;
use aftercase_sync::storage::{Batch, SledStorage, Storage};
use aftercase_sync::UserId;
use std::path::Path;

/// Who the operator's commands act as, in the audit of what they change.
fn operator() -> anyhow::Result<UserId> {
    Ok(UserId::new("operator")?)
}

/// `aftercase-relay verify`.
pub fn verify(
    data_dir: &Path,
    relay: &str,
    offline: bool,
    database: Option<&str>,
) -> anyhow::Result<()> {
    let report: VerifyReport = if offline {
        let database = Database::choose(database, data_dir)?;
        if let Database::Sled(db) = &database {
            anyhow::ensure!(db.exists(), "no relay data in {}", data_dir.display());
        }
        let storage = database.open(64 << 20, true).map_err(|e| {
            anyhow::anyhow!("{e} (is the relay still running? then leave out --offline)")
        })?;
        let mut r = aftercase_sync::relay::Relay::open(
            storage,
            std::num::NonZeroUsize::new(64).unwrap_or(std::num::NonZeroUsize::MIN),
        )?;
        let mut report = r.verify()?;
        r.flush()?;
        if let Some(w) = crate::watermark::read(data_dir) {
            if r.seq() < w {
                report.storage_lost = Some(crate::watermark::lost_message(r.seq(), w));
            }
        }
        report
    } else {
        let token = operator_token(data_dir, operator()?, "aftercase-relay-verify")?;
        let url = format!("{}/v1/verify", relay.trim_end_matches('/'));
        let bytes = ask(
            relay,
            reqwest::blocking::Client::new()
                .post(&url)
                .bearer_auth(token),
        )?;
        serde_json::from_slice(&bytes)?
    };
    if let Some(lost) = &report.storage_lost {
        println!("STORAGE LOST CHANGES: {lost}");
    }
    for d in &report.damaged {
        println!("DAMAGED case {}: {} (quarantined)", d.case, d.reason);
    }
    if !report.read_model_fixed.is_empty() {
        println!(
            "read model rows rewritten from their documents: {}",
            report.read_model_fixed.len()
        );
    }
    if report.is_sound() {
        println!("{} case(s) checked: every one loads", report.cases);
        Ok(())
    } else if report.damaged.is_empty() {
        anyhow::bail!(
            "{} case(s) load, but the storage lost acknowledged changes (see above)",
            report.cases
        )
    } else {
        anyhow::bail!(
            "{} of {} case(s) are damaged: their tablets are refused them until they are restored from a backup (see README, \"Backup and restore\"); the rest syncs",
            report.damaged.len(),
            report.cases
        )
    }
}

/// Copies a directory tree (files only; what `backup` takes of the
/// evidence and revocations).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<usize> {
    if !from.exists() {
        return Ok(0);
    }
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            n += copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Takes one length-prefixed part off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8]) -> anyhow::Result<&'a [u8]> {
    anyhow::ensure!(rest.len() >= 4, "the backup stream ends inside a length");
    let (len, tail) = rest.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    anyhow::ensure!(tail.len() >= len, "the backup stream ends inside a value");
    let (part, tail) = tail.split_at(len);
    *rest = tail;
    Ok(part)
}

/// Splits the body of `GET /v1/backup` into keys and values.
fn pairs(body: &[u8]) -> anyhow::Result<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        out.push((k, v));
    }
    Ok(out)
}

/// `aftercase-relay backup DIR`.
pub fn backup(dir: &Path, data_dir: &Path, relay: &str) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: back up into a new directory",
            dir.display()
        );
    }
    let token = operator_token(data_dir, operator()?, "aftercase-relay-backup")?;
    let url = format!("{}/v1/backup", relay.trim_end_matches('/'));
    let body = ask(
        relay,
        reqwest::blocking::Client::new()
            .get(&url)
            .bearer_auth(token),
    )?;
    let all = pairs(&body)?;
    std::fs::create_dir_all(dir)?;
    aftercase_sync::storage::perms::restrict_dir(dir)?;
    let storage = SledStorage::open(&dir.join("db"))?;
    for chunk in all.chunks(1000) {
        let mut b = Batch::new();
        for (k, v) in chunk {
            b.put(k.to_vec(), v.to_vec());
        }
        storage.apply(b)?;
    }
    storage.flush()?;
    drop(storage);
    // Evidence files once sealed never change: those complete now include
    // every one the cases above could name as stored.
    let files = copy_tree(
        &data_dir.join("blobs").join("complete"),
        &dir.join("blobs").join("complete"),
    )?;
    let secret = data_dir.join(crate::secret::FILE);
    if secret.exists() {
        std::fs::copy(&secret, dir.join(crate::secret::FILE))?;
    }
    copy_tree(
        &data_dir.join(crate::revoke::DIR),
        &dir.join(crate::revoke::DIR),
    )?;
    std::fs::write(
        dir.join(crate::watermark::RESTORED),
        "the first relay to serve this copy moves its change sequence on and removes this file\n",
    )?;
    aftercase_sync::storage::perms::restrict_tree(dir)?;
    println!(
        "backup of {} key(s) and {files} evidence file(s) written to {}; restore by serving it: aftercase-relay serve --data-dir {}",
        all.len(),
        dir.display(),
        dir.display()
    );
    Ok(())
}
