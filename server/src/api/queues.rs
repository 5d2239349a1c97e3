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

const DEVICE_PARAMS: &[&str] = &["store", "stale_hours"];

const DEVICE_COLUMNS: &[&str] = &[
    "store_id",
    "device",
    "user",
    "role",
    "app_version",
    "first_seen",
    "last_seen",
    "last_sync",
    "hours_since_sync",
    "pending",
    "oldest_unsynced_hours",
    "reported_at",
];

/// One device as JSON values, ages judged at relay time `now`.
fn device_row(d: &aftercase_sync::relay::fleet::DeviceRecord, now: i64) -> Vec<serde_json::Value> {
    let hours = |ms: i64| ((ms as f64 / 3_600_000.0) * 10.0).round() / 10.0;
    // The device measured the age when it reported; it has grown since.
    let oldest = d
        .oldest_unsynced_secs
        .filter(|_| d.pending > 0)
        .map(|s| hours(s as i64 * 1000 + (now - d.reported_at.0).max(0)));
    vec![
        json!(d.store.as_str()),
        json!(d.device.as_str()),
        json!(d.user.as_str()),
        json!(d.role.as_str()),
        json!(d.app_version),
        json!(d.first_seen.to_rfc3339()),
        json!(d.last_seen.to_rfc3339()),
        json!(d.last_sync.map(|t| t.to_rfc3339())),
        json!(d.last_sync.map(|t| hours(now - t.0))),
        json!(d.pending),
        json!(oldest),
        json!(d.reported_at.to_rfc3339()),
    ]
}

/// `GET /v1/queues/devices`: every tablet the relay has heard from, the
/// longest without a sync first (never synced before all): last seen,
/// last successful sync, the unsynced cases it reported and how old the
/// oldest is, its app version. `stale_hours` keeps only devices that have
/// not synced for that long. Head office sees every store, a store its
/// own devices, a technician their own.
pub async fn devices(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req, DEVICE_PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let p = principal(&req, &state)?;
    let scope = queue_scope(&req, &state, &params)?;
    let stale = params
        .number("stale_hours", 1..=24 * 365)?
        .map(|h| h as i64 * 3_600_000);
    let store = scope.store().and_then(|s| StoreId::new(s.to_string()).ok());
    let now = now_millis().0;
    let st = state.clone().into_inner();
    let mut list =
        web::block(move || aftercase_sync::relay::fleet::devices(st.storage(), store.as_ref()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    list.retain(|d| {
        let mine = !matches!(scope, Scope::Technician { .. }) || d.user == p.user;
        let stale_enough = stale.is_none_or(|s| d.last_sync.is_none_or(|t| now - t.0 >= s));
        mine && stale_enough
    });
    list.sort_by_key(|d| {
        (
            d.last_sync.map(|t| t.0),
            d.store.to_string(),
            d.device.to_string(),
        )
    });
    match format {
        Format::Csv => csv_out::whole(
            "devices",
            DEVICE_COLUMNS,
            list.iter()
                .map(|d| {
                    device_row(d, now)
                        .into_iter()
                        .map(|v| match v {
                            serde_json::Value::String(s) => s,
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect(),
        ),
        Format::Json => Ok(HttpResponse::Ok().json(json!({
            "devices": list.iter().map(|d| {
                DEVICE_COLUMNS
                    .iter()
                    .zip(device_row(d, now))
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<serde_json::Map<_, _>>()
            }).collect::<Vec<_>>(),
        }))),
    }
}
