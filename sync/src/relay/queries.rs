//! Reads of stored cases: owner records, views, read-model rows, audit
//! records, clock fixes, listings.

use super::*;

/// Who made a change and when the relay accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The authenticated user.
    pub user: UserId,
    /// The authenticated device.
    pub device: DeviceId,
    /// Relay time of receipt.
    pub received_at: Millis,
    /// The latest time the upload's entries claim (device clock), so the
    /// device's skew against the relay stays on record. `None` for records
    /// written before it was kept, and for uploads without entries.
    pub claimed_at: Option<Millis>,
}

/// The record as first written (without `claimed_at`).
#[derive(Deserialize)]
struct AuditRecordV1 {
    user: UserId,
    device: DeviceId,
    received_at: Millis,
}

impl AuditRecord {
    pub(super) fn decode(bytes: &[u8]) -> Result<AuditRecord, postcard::Error> {
        postcard::from_bytes(bytes).or_else(|e| {
            postcard::from_bytes::<AuditRecordV1>(bytes)
                .map(|v| AuditRecord {
                    user: v.user,
                    device: v.device,
                    received_at: v.received_at,
                    claimed_at: None,
                })
                .map_err(|_| e)
        })
    }

    /// How far the device clock was ahead of the relay (negative: behind),
    /// in milliseconds, if the upload claimed a time.
    pub fn skew_ms(&self) -> Option<i64> {
        self.claimed_at.map(|c| c.0 - self.received_at.0)
    }
}

/// An entry (or, with an empty `log`, a root time such as `created_at`)
/// whose claimed time the relay did not believe, and the time it judged it
/// at instead (its receipt). Head office's view shows the case
/// with these times, so timers count from the earliest trustworthy time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockFix {
    /// The log (root key).
    pub log: String,
    /// The entry id.
    pub entry: String,
    /// The trusted time.
    pub at: i64,
}

/// Relay-side filter for listing cases.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only this owning store.
    pub store: Option<StoreId>,
    /// Only this kind.
    pub kind: Option<CaseKind>,
}

/// The read model as stored: every case's summary, read straight from
/// storage (the relay's lock is not needed). Summaries that are missing or
/// derived under an older policy or schema are listed by
/// [`readmodel::ReadModel::stale`] for the shell to derive again.
pub fn load_read_model<S: Storage>(storage: &S) -> Result<readmodel::ReadModel, StorageError> {
    let mut model = readmodel::ReadModel::new();
    let mut start = keys::SUMMARY.to_vec();
    let end = [keys::SUMMARY, &[0xff; 17][..]].concat();
    loop {
        let page = storage.scan(&start, &end, 4096)?;
        let Some((last, _)) = page.last() else { break };
        start = [last.as_slice(), &[0][..]].concat();
        for (k, v) in &page {
            let id: [u8; 16] = k
                .get(2..18)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("case summary", "bad key"))?;
            let s: CaseSummary =
                serde_json::from_slice(v).map_err(|e| corrupt("case summary", e))?;
            model.upsert(CaseId::from_bytes(id), s);
        }
    }
    Ok(model)
}

pub(super) fn summary_bytes(s: &CaseSummary) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(s).map_err(|e| corrupt("case summary", e))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<S: Storage> Relay<S> {
    /// The owner record of a case.
    pub fn meta(&self, case: CaseId) -> Result<Option<CaseMeta>, StorageError> {
        meta_in(&self.storage, case)
    }

    /// The case as plain data, with the owning store from relay metadata.
    pub fn case_view(&mut self, case: CaseId) -> Result<Option<CaseView>, StorageError> {
        let Some(meta) = self.meta(case)? else {
            return Ok(None);
        };
        let policy = self.policy.clone();
        let fixes = self.clock_fixes(case)?;
        let key = self.case_key(case)?;
        Ok(self
            .doc(case)?
            .map(|d| view_with_fixes(d, case, &meta, &fixes, &policy, key.as_ref())))
    }

    /// The case's summary in the read model.
    pub fn summary(&self, case: CaseId) -> Result<Option<CaseSummary>, StorageError> {
        self.storage
            .get(&keys::summary(case))?
            .map(|b| serde_json::from_slice(&b).map_err(|e| corrupt("case summary", e)))
            .transpose()
    }

    /// Derives the summary of `case` from its stored document, as a commit
    /// would (`None` for an unknown case).
    pub fn derive_summary(&mut self, case: CaseId) -> Result<Option<CaseSummary>, StorageError> {
        let Some(meta) = self.meta(case)? else {
            return Ok(None);
        };
        // Who sent the latest change is a fact of the commit, not of the
        // document: kept from the stored summary, else the latest audit
        // record.
        let last = match self.summary(case)? {
            Some(s) => (s.last_user, s.last_device),
            None => self
                .audit(case)?
                .pop()
                .map(|(_, r)| (r.user.to_string(), r.device.to_string()))
                .unwrap_or_default(),
        };
        let fixes = self.clock_fixes(case)?;
        let policy = self.policy.clone();
        let salt = self.salt.clone();
        let key = self.case_key(case)?;
        let Some(doc) = self.doc(case)? else {
            return Ok(None);
        };
        let fixed = (!fixes.is_empty()).then(|| {
            let mut f = doc.fork();
            judge::apply_clock_fixes(&mut f, &fixes);
            f
        });
        let seen = fixed.as_ref().unwrap_or(doc);
        let mut view = CaseView::without_timeline(seen, &case.to_string(), &policy);
        crate::case::seal::reveal_customer(&mut view.customer, key.as_ref(), case);
        Ok(Some(CaseSummary::derive(
            &view,
            seen,
            &meta,
            (&last.0, &last.1),
            policy.version,
            &salt,
        )))
    }

    /// The case's summary, derived afresh (and stored) when it is missing or
    /// was computed under an older policy, whose deadlines may differ.
    pub fn current_summary(&mut self, case: CaseId) -> Result<Option<CaseSummary>, StorageError> {
        match self.summary(case)? {
            Some(s)
                if s.policy_version == self.policy.version
                    && s.schema == summary::SUMMARY_SCHEMA =>
            {
                Ok(Some(s))
            }
            _ => {
                let fresh = self.derive_summary(case)?;
                if let Some(s) = &fresh {
                    let mut b = Batch::new();
                    b.put(keys::summary(case), summary_bytes(s)?);
                    self.storage.apply(b)?;
                }
                Ok(fresh)
            }
        }
    }

    /// Rebuilds the read model from the documents; returns how many cases
    /// it holds. For an upgrade, or a read model suspected wrong.
    pub fn reindex(&mut self) -> Result<usize, StorageError> {
        let cases = self.list(&CaseFilter::default())?;
        let mut n = 0;
        for (case, _) in cases {
            if let Some(summary) = self.derive_summary(case)? {
                let mut b = Batch::new();
                b.put(keys::summary(case), summary_bytes(&summary)?);
                self.storage.apply(b)?;
                n += 1;
            }
        }
        self.storage.flush()?;
        Ok(n)
    }

    /// The entries the case's logs hold, as last counted (`None` for a case
    /// stored before the count was kept).
    pub(super) fn entry_count(&self, case: CaseId) -> Result<Option<usize>, StorageError> {
        self.storage
            .get(&keys::entries(case))?
            .map(|b| {
                <[u8; 8]>::try_from(b.as_slice())
                    .map(|a| u64::from_be_bytes(a) as usize)
                    .map_err(|_| corrupt("entry count", "not 8 bytes"))
            })
            .transpose()
    }

    /// Entries of `case` whose claimed times the relay did not believe.
    pub fn clock_fixes(&self, case: CaseId) -> Result<Vec<ClockFix>, StorageError> {
        clock_fixes_in(&self.storage, case)
    }

    /// The standard Automerge binary of a case.
    pub fn doc_bytes(&mut self, case: CaseId) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.doc(case)?.map(|d| d.save()))
    }

    /// Every accepted change of a case with who sent it and when.
    pub fn audit(&self, case: CaseId) -> Result<Vec<(String, AuditRecord)>, StorageError> {
        audit_in(&self.storage, case)
    }

    /// Cases matching `filter`, most recently changed last.
    pub fn list(&self, filter: &CaseFilter) -> Result<Vec<(CaseId, CaseMeta)>, StorageError> {
        let prefix = match &filter.store {
            Some(s) => keys::store_prefix(s),
            None => keys::ALL.to_vec(),
        };
        let mut out = Vec::new();
        for (_, v) in self.storage.scan_prefix(&prefix)? {
            let Some((case, _)) = keys::parse_index_value(&v) else {
                return Err(corrupt("case index", "bad entry"));
            };
            if let Some(meta) = self.meta(case)? {
                if filter.kind.is_none_or(|k| k.as_str() == meta.kind) {
                    out.push((case, meta));
                }
            }
        }
        Ok(out)
    }
}

/// The relay's metadata for a case, read from `storage`.
pub(super) fn meta_in<S: Storage>(
    storage: &S,
    case: CaseId,
) -> Result<Option<CaseMeta>, StorageError> {
    storage
        .get(&keys::meta(case))?
        .map(|b| decode_meta(&b))
        .transpose()
}

/// An owner record as stored.
pub(super) fn decode_meta(bytes: &[u8]) -> Result<CaseMeta, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| corrupt("case meta", e))
}

/// The case's clock fixes, read from `storage`.
pub(super) fn clock_fixes_in<S: Storage>(
    storage: &S,
    case: CaseId,
) -> Result<Vec<ClockFix>, StorageError> {
    storage
        .get(&keys::clock(case))?
        .map(|b| postcard::from_bytes(&b).map_err(|e| corrupt("clock fixes", e)))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The case's audit records, oldest first, read from `storage`.
pub(super) fn audit_in<S: Storage>(
    storage: &S,
    case: CaseId,
) -> Result<Vec<(String, AuditRecord)>, StorageError> {
    let mut out = Vec::new();
    for (k, v) in storage.scan_prefix(&keys::audit_prefix(case))? {
        let hash = k.get(18..).map(hex).unwrap_or_default();
        let rec = AuditRecord::decode(&v).map_err(|e| corrupt("audit", e))?;
        out.push((hash, rec));
    }
    out.sort_by(|a, b| (a.1.received_at, &a.0).cmp(&(b.1.received_at, &b.0)));
    Ok(out)
}

/// The view of a case's document with the trusted times of `fixes` and
/// the owning store from `meta`.
pub(super) fn view_with_fixes(
    doc: &Automerge,
    case: CaseId,
    meta: &CaseMeta,
    fixes: &[ClockFix],
    policy: &crate::policy::Policy,
    key: Option<&crate::case::seal::CaseKey>,
) -> CaseView {
    let mut v = if fixes.is_empty() {
        CaseView::from_doc_with(doc, &case.to_string(), policy)
    } else {
        // A local copy with the trusted times; never stored.
        let mut fixed = doc.fork();
        judge::apply_clock_fixes(&mut fixed, fixes);
        CaseView::from_doc_with(&fixed, &case.to_string(), policy)
    };
    v.store_id = Some(meta.store.to_string());
    crate::case::seal::reveal_customer(&mut v.customer, key, case);
    v
}
