//! Knowing the stored data is sound: a case whose stored bytes no longer
//! load is quarantined (named in the log once, refused to devices case by
//! case with `unavailable`, so the rest of its store keeps syncing), and
//! [`Relay::verify`] checks every stored case against the read model.
//!
//! Quarantine records (`rQ` case: the reason) survive restarts, so a
//! damaged case is not loaded again and again; restoring the data from a
//! backup (which holds none) lifts them.

use super::*;
use crate::protocol::Refusal;

/// What [`Relay::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    /// Cases checked.
    pub cases: usize,
    /// Cases whose stored bytes do not load, with why (now quarantined).
    pub damaged: Vec<DamagedCase>,
    /// Cases whose read-model row is missing or differs from what the
    /// document says (the row is rewritten from the document).
    pub read_model_fixed: Vec<String>,
    /// Set when the storage lost acknowledged changes (found by the shell:
    /// it opened below the relay's durable watermark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_lost: Option<String>,
}

impl VerifyReport {
    /// Whether everything checked is sound.
    pub fn is_sound(&self) -> bool {
        self.damaged.is_empty() && self.storage_lost.is_none()
    }
}

/// One case whose stored bytes do not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DamagedCase {
    /// The case id.
    pub case: String,
    /// Why it does not load.
    pub reason: String,
}

fn quarantine_key(case: CaseId) -> Vec<u8> {
    [keys::QUARANTINE, case.as_bytes()].concat()
}

/// The refusal a device gets for a quarantined case.
pub(super) fn unavailable(case: CaseId) -> Refusal {
    Refusal::new(
        RefusalCode::Unavailable,
        format!("the relay's stored copy of case {case} is damaged; head office restores it from a backup, and the store's other cases sync meanwhile"),
    )
}

impl<S: Storage> Relay<S> {
    /// Loads the quarantine records (at open).
    pub(super) fn load_quarantine(&mut self) -> Result<(), StorageError> {
        for (k, v) in self.storage.scan_prefix(keys::QUARANTINE)? {
            if let Some(case) = k
                .get(keys::QUARANTINE.len()..)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(CaseId::from_bytes)
            {
                self.quarantined
                    .insert(case, String::from_utf8_lossy(&v).into_owned());
            }
        }
        Ok(())
    }

    /// Quarantines `case`: its stored bytes do not load (`reason`).
    /// Logged once; recorded so a restart does not load it again.
    pub(super) fn quarantine(&mut self, case: CaseId, reason: &str) {
        if self.quarantined.contains_key(&case) {
            return;
        }
        tracing::error!(case = %case, error = %reason, "a stored case is damaged and quarantined: its devices are refused it (unavailable) until it is restored from a backup; the rest of the store keeps syncing");
        self.quarantined.insert(case, reason.to_string());
        self.cache.pop(&case);
        let mut b = Batch::new();
        b.put(quarantine_key(case), reason.as_bytes().to_vec());
        // Best effort: the record only spares later loads.
        if let Err(e) = self.storage.apply(b) {
            tracing::warn!(case = %case, error = %e, "could not record the quarantine");
        }
    }

    /// Whether `case` is quarantined.
    pub fn is_quarantined(&self, case: CaseId) -> bool {
        self.quarantined.contains_key(&case)
    }

    /// The quarantined cases, with why.
    pub fn quarantined(&self) -> &std::collections::BTreeMap<CaseId, String> {
        &self.quarantined
    }

    /// Checks that every stored case loads and that its read-model row is
    /// what its document says. A case that does not load is quarantined; a
    /// missing or different row is rewritten (as `reindex` would). Holds
    /// the relay for the whole pass (about 1 ms per case).
    pub fn verify(&mut self) -> Result<VerifyReport, StorageError> {
        let cases = self.list(&CaseFilter::default())?;
        let mut report = VerifyReport {
            cases: cases.len(),
            ..VerifyReport::default()
        };
        for (case, _) in cases {
            if let Err(e) = docs::load_doc(&self.storage, case) {
                let reason = e.to_string();
                self.quarantine(case, &reason);
                report.damaged.push(DamagedCase {
                    case: case.to_string(),
                    reason,
                });
                continue;
            }
            let Some(fresh) = self.derive_summary(case)? else {
                continue;
            };
            let stored = self.summary(case).ok().flatten();
            let same = stored.as_ref().is_some_and(|s| {
                // A row derived under an older policy is refreshed in the
                // background, not wrong.
                s.policy_version != fresh.policy_version || *s == fresh
            });
            if !same {
                let mut b = Batch::new();
                b.put(keys::summary(case), queries::summary_bytes(&fresh)?);
                self.storage.apply(b)?;
                report.read_model_fixed.push(case.to_string());
            }
        }
        Ok(report)
    }
}
