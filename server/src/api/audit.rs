//! `GET /v1/audit`: the audit feed across cases, oldest first: who, from
//! which device, when the relay received it, and what the upload did in
//! one line without customer data. Read straight from storage, never
//! under the relay's lock.

use super::cases::{principal, scope_for, MAX_PAGE, PAGE};
use super::csv_out::{self, Format};
use super::params::Params;
use crate::error::{clip, ApiError};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::relay::feed::{self, Cursor, FeedRecord};
use aftercase_sync::relay::readmodel::Scope;
use aftercase_sync::{Millis, StoreId};
use std::sync::Arc;

const PARAMS: &[&str] = &["since", "after", "store", "limit"];

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

fn json(r: &FeedRecord) -> serde_json::Value {
    serde_json::json!({
        "received_at": Millis(r.received_at).to_rfc3339(),
        "case_id": r.case.to_string(),
        "case_no": r.case_no,
        "store_id": r.store,
        "kind": r.kind,
        "user": r.user,
        "device": r.device,
        "claimed_at": r.claimed_at.map(|c| Millis(c).to_rfc3339()),
        "changes": r.changes,
        "effect": r.effect,
    })
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

/// `GET /v1/audit?since=&after=&store=&limit=`: `since` is a time,
/// `after` the `next` of the previous page.
pub async fn audit(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let params = Params::parse(&req, PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let store = params
        .get("store")
        .map(|v| {
            StoreId::new(v.to_string()).map_err(|_| {
                ApiError::BadRequest(format!("store: \"{}\" is not a store id", clip(v)))
            })
        })
        .transpose()?;
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
        Format::Json => Ok(HttpResponse::Ok().json(serde_json::json!({
            "entries": records.iter().map(json).collect::<Vec<_>>(),
            "next": next.map(|c| c.encode()),
        }))),
    }
}
