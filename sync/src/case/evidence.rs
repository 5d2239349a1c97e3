//! Evidence on a case (domain.md §1-§3): photos, videos, receipts,
//! invoices, chat screenshots, test reports, waybills and the customer's
//! signature, each named by the SHA-256 of its bytes, with its size, media
//! type, capture time and who took it. Entries are never edited; removing
//! one is a tombstone with a reason, so head office still sees that it
//! existed. The bytes themselves live outside the document (blob storage).

use super::edit::{invalid, put_entry, require_case, EditContext, EditError};
use super::schema::entry;
use super::{read, CaseKind};
use automerge::transaction::Transactable;
use automerge::{Automerge, AutomergeError, ReadDoc, ROOT};
use serde::{Deserialize, Serialize};

/// Root key of the evidence log.
pub const EVIDENCE: &str = "evidence";
/// Root key of the removals (tombstones).
pub const REMOVALS: &str = "evidence_removals";

/// The kinds of evidence.
pub const KINDS: &[&str] = &[
    "photo",
    "video",
    "receipt",
    "invoice",
    "chat",
    "test_report",
    "waybill",
    "signature",
];

/// Longest caption and removal reason, in characters.
pub const MAX_CAPTION: usize = 500;

/// One piece of evidence to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// One of [`KINDS`].
    pub kind: String,
    /// SHA-256 of the bytes, 64 lowercase hex characters.
    pub hash: String,
    /// Size of the bytes.
    pub size: u64,
    /// Media type sniffed from the bytes, e.g. `image/jpeg`.
    pub media_type: String,
    /// When it was captured (device time, ms).
    pub captured_at: i64,
    /// What it shows.
    pub caption: Option<String>,
}

/// A piece of evidence as shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceView {
    /// Entry id.
    pub id: String,
    /// photo, video, receipt, invoice, chat, test_report, waybill or signature.
    pub kind: String,
    /// SHA-256 of the bytes (hex).
    pub hash: String,
    /// Size in bytes.
    pub size: i64,
    /// Media type.
    pub media_type: String,
    /// Capture time, RFC 3339.
    pub captured_at: Option<String>,
    /// Caption.
    pub caption: Option<String>,
    /// Who recorded it, their role and device.
    pub author: Option<String>,
    /// See `author`.
    pub role: Option<String>,
    /// See `author`.
    pub device: Option<String>,
    /// Set once removed: why, and by whom.
    pub removed: Option<Removal>,
}

/// A tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Removal {
    /// Why.
    pub reason: String,
    /// Who.
    pub by: Option<String>,
}

/// Whether `s` is a SHA-256 in lowercase hex.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` looks like a media type (`type/subtype`, no parameters).
pub fn is_media_type(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
    };
    s.split_once('/').is_some_and(|(a, b)| ok(a) && ok(b))
}

/// Checks a piece of evidence before it is recorded (the relay checks the
/// same with its own limit); `max_bytes` is the policy's blob limit.
pub fn check(e: &Evidence, max_bytes: u64) -> Result<(), String> {
    if !KINDS.contains(&e.kind.as_str()) {
        return Err(format!(
            "evidence type \"{}\" is not one of {}",
            crate::protocol::clip(&e.kind, 32),
            KINDS.join(", ")
        ));
    }
    if !is_hash(&e.hash) {
        return Err("evidence hash must be a SHA-256 in lowercase hex".into());
    }
    if e.size == 0 || e.size > max_bytes {
        return Err(format!(
            "evidence of {} bytes: must be 1 to {max_bytes} bytes",
            e.size
        ));
    }
    if !is_media_type(&e.media_type) {
        return Err("evidence media type must look like image/jpeg".into());
    }
    if e.caption
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CAPTION)
    {
        return Err(format!("caption is longer than {MAX_CAPTION} characters"));
    }
    Ok(())
}

/// Records a piece of evidence.
pub fn attach(
    doc: &mut Automerge,
    id: crate::ids::CaseId,
    ctx: &EditContext,
    policy: &crate::policy::Policy,
    e: &Evidence,
) -> Result<(), EditError> {
    require_case(doc, id)?;
    check(e, policy.max_blob_bytes).map_err(|m| invalid("evidence", m))?;
    let size = i64::try_from(e.size).map_err(|_| invalid("evidence", "is too large"))?;
    doc.transact::<_, _, AutomergeError>(|tx| {
        let x = put_entry(tx, EVIDENCE, ctx, "evidence")?;
        tx.put(&x, "kind", e.kind.as_str())?;
        tx.put(&x, "hash", e.hash.as_str())?;
        tx.put(&x, "size", size)?;
        tx.put(&x, "media_type", e.media_type.as_str())?;
        tx.put(
            &x,
            "captured_at",
            automerge::ScalarValue::Timestamp(e.captured_at),
        )?;
        if let Some(c) = &e.caption {
            tx.put(&x, "caption", c.as_str())?;
        }
        let t = put_entry(tx, super::schema::root::TIMELINE, ctx, "evidence")?;
        tx.put(&t, entry::TEXT, format!("{} attached", e.kind))?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Removes a piece of evidence by its hash: a tombstone with a reason.
/// Only a supervisor or head office may.
pub fn remove(
    doc: &mut Automerge,
    id: crate::ids::CaseId,
    ctx: &EditContext,
    hash: &str,
    reason: &str,
) -> Result<(), EditError> {
    require_case(doc, id)?;
    if !matches!(
        ctx.role,
        crate::access::Role::Supervisor | crate::access::Role::HeadOffice
    ) {
        return Err(EditError::NotAllowed(
            "only a supervisor or head office can remove evidence".into(),
        ));
    }
    if reason.trim().is_empty() || reason.chars().count() > MAX_CAPTION {
        return Err(invalid(
            "reason",
            format!("must be 1 to {MAX_CAPTION} characters"),
        ));
    }
    if !list(&*doc)
        .iter()
        .any(|v| v.hash == hash && v.removed.is_none())
    {
        return Err(invalid("evidence", "this case holds no such evidence"));
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        let x = put_entry(tx, REMOVALS, ctx, "evidence_removal")?;
        tx.put(&x, "hash", hash)?;
        tx.put(&x, "reason", reason)?;
        let t = put_entry(tx, super::schema::root::TIMELINE, ctx, "evidence_removed")?;
        tx.put(&t, entry::TEXT, format!("evidence removed: {reason}"))?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Every piece of evidence of a case, oldest first, removed ones marked.
pub fn list<D: ReadDoc>(doc: &D) -> Vec<EvidenceView> {
    let removals: Vec<(String, Removal)> = read::entries(doc, &ROOT, REMOVALS)
        .into_iter()
        .filter_map(|(_, e)| {
            Some((
                read::string(doc, &e, "hash")?,
                Removal {
                    reason: read::string(doc, &e, "reason").unwrap_or_default(),
                    by: read::string(doc, &e, entry::AUTHOR),
                },
            ))
        })
        .collect();
    let mut out: Vec<(i64, EvidenceView)> = read::entries(doc, &ROOT, EVIDENCE)
        .into_iter()
        .filter_map(|(id, e)| {
            let hash = read::string(doc, &e, "hash")?;
            let at = read::int(doc, &e, entry::AT).unwrap_or(0);
            Some((
                at,
                EvidenceView {
                    kind: read::string(doc, &e, "kind")?,
                    size: read::int(doc, &e, "size").unwrap_or(0),
                    media_type: read::string(doc, &e, "media_type").unwrap_or_default(),
                    captured_at: read::int(doc, &e, "captured_at")
                        .map(|t| crate::ids::Millis(t).to_rfc3339()),
                    caption: read::string(doc, &e, "caption"),
                    author: read::string(doc, &e, entry::AUTHOR),
                    role: read::string(doc, &e, entry::ROLE),
                    device: read::string(doc, &e, entry::DEVICE),
                    removed: removals
                        .iter()
                        .find(|(h, _)| *h == hash)
                        .map(|(_, r)| r.clone()),
                    hash,
                    id,
                },
            ))
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    out.into_iter().map(|(_, v)| v).collect()
}

/// Whether the case holds live (not removed) evidence of `kind`.
pub fn has_live<D: ReadDoc>(doc: &D, kind: &str) -> bool {
    list(doc)
        .iter()
        .any(|v| v.kind == kind && v.removed.is_none())
}

/// The evidence a move needs (handbook: a damage claim is not
/// `evidence_collected` without photos, 拍照举证; acceptance may need the
/// customer's signature, by policy).
pub fn move_allowed<D: ReadDoc>(
    doc: &D,
    kind: CaseKind,
    to: &str,
    policy: &crate::policy::Policy,
) -> Result<(), String> {
    if kind == CaseKind::DamageClaim && to == "evidence_collected" && !has_live(doc, "photo") {
        return Err("a damage claim needs at least one photo before evidence_collected: attach one with `case attach ID FILE --type photo`".into());
    }
    if policy.signature_on_acceptance
        && matches!(kind, CaseKind::Repair | CaseKind::Installation)
        && to == "accepted"
        && !has_live(doc, "signature")
    {
        return Err("acceptance needs the customer's signature as evidence (policy signature_on_acceptance)".into());
    }
    Ok(())
}
