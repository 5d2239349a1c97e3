//! `GET /v1/audit`: the audit feed across cases, oldest first: who, from
//! which device, when the relay received it, and what the upload did in
//! one line without customer data. Read straight from storage, never
//! under the relay's lock.

use super::cases::{principal, scope_for, MAX_PAGE, PAGE};
use super::csv_out::{self, Format};
use super::params::Params;
use super::query::AuditQuery;
use crate::error::{clip, ApiError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::relay::feed::{self, Cursor, FeedRecord};
use aftercase_sync::relay::readmodel::Scope;
use aftercase_sync::{Millis, StoreId};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Parameters this endpoint accepts besides `format`.
pub(crate) const PARAMS: &[&str] = &["since", "after", "store", "limit"];

const COLUMNS: &[&str] = &[
    "received_at",
    "case_id",
    "case_no",
    "store_id",
    "kind",
    "user",
    "device",
    "claimed_at",
    "changes",
    "effect",
];

/// One record of the audit feed as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// When the relay received the upload, RFC 3339.
    pub received_at: String,
    /// The case it changed.
    pub case_id: String,
    /// That case's number.
    #[schema(required = true)]
    pub case_no: Option<String>,
    /// The store that owns the case.
    pub store_id: String,
    /// The case's kind.
    pub kind: String,
    /// Who sent it.
    pub user: String,
    /// From which device.
    pub device: String,
    /// The latest device time the upload claimed, RFC 3339.
    #[schema(required = true)]
    pub claimed_at: Option<String>,
    /// How many changes it held.
    pub changes: u32,
    /// What it did, in one line without customer data.
    pub effect: String,
}

/// A page of the audit feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The records, oldest first.
    pub entries: Vec<AuditEntry>,
    /// `after=` for the next page; null on the last.
    #[schema(required = true)]
    pub next: Option<String>,
}

fn entry(r: &FeedRecord) -> AuditEntry {
    AuditEntry {
        received_at: Millis(r.received_at).to_rfc3339(),
        case_id: r.case.to_string(),
        case_no: r.case_no.clone(),
        store_id: r.store.clone(),
        kind: r.kind.clone(),
        user: r.user.clone(),
        device: r.device.clone(),
        claimed_at: r.claimed_at.map(|c| Millis(c).to_rfc3339()),
        changes: r.changes,
        effect: r.effect.clone(),
    }
}

fn csv(r: &FeedRecord) -> Vec<String> {
    vec![
        Millis(r.received_at).to_rfc3339(),
        r.case.to_string(),
        r.case_no.clone().unwrap_or_default(),
        r.store.clone(),
        r.kind.clone(),
        r.user.clone(),
        r.device.clone(),
        r.claimed_at
            .map(|c| Millis(c).to_rfc3339())
            .unwrap_or_default(),
        r.changes.to_string(),
        r.effect.clone(),
    ]
}

/// The audit feed.
///
/// `GET /v1/audit?since=&after=&store=&limit=`: `since` is a time,
/// `after` the `next` of the previous page.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the feed, or the page as CSV.", content(
            (AuditPage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's feed asked for by a store's token.", body = ErrorBody),
    )
)]
pub async fn audit(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let params = Params::parse(&req, PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let store = params.store()?;
    let scope = scope_for(&p, store.as_ref().map(StoreId::as_str))?;
    let store = store.or_else(|| scope.store().and_then(|s| StoreId::new(s.to_string()).ok()));
    let after = match (params.get("after"), params.time("since")?) {
        (Some(a), _) => Some(Cursor::decode(a).ok_or_else(|| {
            ApiError::BadRequest(format!("after: \"{}\" is not a feed cursor", clip(a)))
        })?),
        (None, Some(t)) => Some(feed::since(t)),
        (None, None) => None,
    };
    let limit = params.number("limit", 1..=MAX_PAGE)?.unwrap_or(PAGE);
    let st: Arc<AppState> = state.clone().into_inner();
    let (records, next) = web::block(move || -> Result<_, ApiError> {
        let mut out = Vec::new();
        let mut cursor = after;
        // A technician sees the records of cases they may see: read on
        // past the ones filtered out, a page at a time.
        loop {
            let page = feed::read(st.storage(), store.as_ref(), cursor, limit)?;
            let full = page.len() == limit;
            for r in page {
                cursor = Some(Cursor {
                    at: r.received_at,
                    seq: r.seq,
                });
                let visible = match &scope {
                    Scope::Technician { .. } => {
                        st.read_model().get(r.case).is_some_and(|s| scope.admits(s))
                    }
                    _ => true,
                };
                if visible {
                    out.push(r);
                    if out.len() == limit {
                        return Ok((out, cursor));
                    }
                }
            }
            if !full {
                return Ok((out, None));
            }
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let next = next.filter(|_| records.len() == limit);
    match format {
        Format::Csv => csv_out::whole("audit", COLUMNS, records.iter().map(csv).collect()),
        Format::Json => Ok(HttpResponse::Ok().json(AuditPage {
            entries: records.iter().map(entry).collect(),
            next: next.map(|c| c.encode()),
        })),
    }
}
