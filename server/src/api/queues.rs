//! Head office's work queues, read from the read model: open conflicts,
//! offers awaiting approval, deadlines already missed and deadlines
//! falling due soon. Each is scoped like the case list.

use super::cases::{principal, read, scope_for, stream_cases, MAX_PAGE, PAGE};
use super::csv_out::{self, Format};
use super::params::Params;
use super::rows;
use crate::error::{clip, ApiError};
use crate::state::{now_millis, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::case::CaseKind;
use aftercase_sync::relay::readmodel::{Query, Scope};
use aftercase_sync::{CaseId, Millis, StoreId};
use serde_json::json;

const PARAMS: &[&str] = &["store", "kind", "after", "limit"];
const DUE_PARAMS: &[&str] = &["store", "after", "limit", "within_hours"];

/// Scope of a queue: the caller's, narrowed to `store` when head office
/// asks for one.
fn queue_scope(req: &HttpRequest, state: &AppState, params: &Params) -> Result<Scope, ApiError> {
    let p = principal(req, state)?;
    let store = params
        .get("store")
        .map(|v| {
            StoreId::new(v.to_string())
                .map(|s| s.to_string())
                .map_err(|_| {
                    ApiError::BadRequest(format!("store: \"{}\" is not a store id", clip(v)))
                })
        })
        .transpose()?;
    let scope = scope_for(&p, store.as_deref())?;
    Ok(match (scope, store) {
        (Scope::Chain, Some(s)) => Scope::Store(s),
        (scope, _) => scope,
    })
}

/// A queue that is a case list with one filter set.
async fn flagged(
    req: HttpRequest,
    state: web::Data<AppState>,
    set: impl FnOnce(&mut Query),
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req, PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let scope = queue_scope(&req, &state, &params)?;
    let mut q = Query {
        kind: params
            .parsed::<CaseKind>("kind", "a case kind")?
            .map(|k| k.as_str().to_string()),
        ..Query::default()
    };
    set(&mut q);
    let after = params.parsed::<CaseId>("after", "a case id")?;
    let limit = params.number("limit", 1..=MAX_PAGE)?;
    let now = now_millis().0;
    if format == Format::Csv && limit.is_none() && after.is_none() {
        return Ok(stream_cases(state.into_inner(), scope, q, now));
    }
    let page = read(&state, move |m| {
        m.query(&scope, &q, now, after, limit.unwrap_or(PAGE))
    })
    .await?;
    match format {
        Format::Csv => csv_out::whole(
            "queue",
            rows::COLUMNS,
            page.rows
                .iter()
                .map(|(id, s)| rows::csv(*id, s, now))
                .collect(),
        ),
        Format::Json => Ok(HttpResponse::Ok().json(json!({
            "cases": page.rows.iter().map(|(id, s)| rows::json(*id, s, now)).collect::<Vec<_>>(),
            "next": page.next.map(|n| n.to_string()),
        }))),
    }
}

/// `GET /v1/queues/conflicts`: cases with an open workflow or money
/// conflict, waiting for a supervisor.
pub async fn conflicts(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    flagged(req, state, |q| q.has_conflict = Some(true)).await
}

/// `GET /v1/queues/approvals`: cases with compensation offers awaiting a
/// supervisor's or head office's approval.
pub async fn approvals(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    flagged(req, state, |q| q.awaiting_approval = Some(true)).await
}

/// A due-queue cursor: `due_ms.case_id`.
fn due_cursor(v: &str) -> Option<(i64, CaseId)> {
    let (d, id) = v.split_once('.')?;
    Some((d.parse().ok()?, id.parse().ok()?))
}

/// Cases whose earliest open deadline is in `[from, to)`, earliest first.
async fn due(
    req: HttpRequest,
    state: web::Data<AppState>,
    window: impl FnOnce(i64, i64) -> (i64, i64),
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req, DUE_PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let scope = queue_scope(&req, &state, &params)?;
    let after = params
        .get("after")
        .map(|v| {
            due_cursor(v).ok_or_else(|| {
                ApiError::BadRequest(format!("after: \"{}\" is not a queue cursor", clip(v)))
            })
        })
        .transpose()?;
    let within = params.number("within_hours", 1..=24 * 30)?.unwrap_or(24) as i64;
    let limit = params
        .number("limit", 1..=MAX_PAGE)?
        .unwrap_or(match format {
            Format::Csv => MAX_PAGE,
            Format::Json => PAGE,
        });
    let now = now_millis().0;
    let (from, to) = window(now, within * 3_600_000);
    let page = read(&state, move |m| {
        m.due_between(&scope, from, to, after, limit)
    })
    .await?;
    match format {
        Format::Csv => {
            let mut cols = vec!["due_at", "due"];
            cols.extend_from_slice(rows::COLUMNS);
            csv_out::whole(
                "queue",
                &cols,
                page.rows
                    .iter()
                    .map(|(d, id, s)| {
                        let mut r = vec![Millis(*d).to_rfc3339(), due_names(s, *d).join(" ")];
                        r.extend(rows::csv(*id, s, now));
                        r
                    })
                    .collect(),
            )
        }
        Format::Json => Ok(HttpResponse::Ok().json(json!({
            "cases": page.rows.iter().map(|(d, id, s)| {
                let mut v = rows::json(*id, s, now);
                v["due_at"] = json!(Millis(*d).to_rfc3339());
                v["due"] = json!(due_names(s, *d));
                v
            }).collect::<Vec<_>>(),
            "next": page.next.map(|(d, id)| format!("{d}.{id}")),
        }))),
    }
}

/// The deadlines of `s` due at `at`.
fn due_names(s: &aftercase_sync::relay::summary::CaseSummary, at: i64) -> Vec<String> {
    s.open_timers
        .iter()
        .filter(|(_, d)| *d == at)
        .map(|(n, _)| n.clone())
        .collect()
}

/// `GET /v1/queues/overdue`: cases with an open deadline already past,
/// the longest overdue first.
pub async fn overdue(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    due(req, state, |now, _| (i64::MIN, now)).await
}

/// `GET /v1/queues/due-soon`: cases whose next deadline falls within
/// `within_hours` (24 unless given), soonest first.
pub async fn due_soon(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    due(req, state, |now, within| (now, now.saturating_add(within))).await
}
