//! Head office's work queues, read from the read model: open conflicts,
//! offers awaiting approval, deadlines already missed and deadlines
//! falling due soon. Each is scoped like the case list.

use super::cases::{narrowed_scope, principal, read, stream_cases, MAX_PAGE, PAGE};
use super::csv_out::{self, Format};
use super::params::Params;
use super::query::{DeviceQueueQuery, DueQueueQuery, FlagQueueQuery};
use super::rows;
use super::rows::{CasePage, CaseRow};
use crate::error::{clip, ApiError, ErrorBody};
use crate::state::{now_millis, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::case::CaseKind;
use aftercase_sync::relay::readmodel::{Query, Scope};
use aftercase_sync::{CaseId, Millis, StoreId};
use serde::Serialize;
use utoipa::ToSchema;

/// Parameters this endpoint accepts besides `format`.
pub(crate) const PARAMS: &[&str] = &["store", "kind", "after", "limit"];
/// Parameters this endpoint accepts besides `format`.
pub(crate) const DUE_PARAMS: &[&str] = &["store", "after", "limit", "within_hours"];

/// Scope of a queue: the caller's, narrowed to `store` when head office
/// asks for one.
fn queue_scope(req: &HttpRequest, state: &AppState, params: &Params) -> Result<Scope, ApiError> {
    let p = principal(req, state)?;
    narrowed_scope(&p, params.store()?.as_ref())
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
        state.lists_here()?;
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
        Format::Json => Ok(HttpResponse::Ok().json(CasePage {
            cases: page
                .rows
                .iter()
                .map(|(id, s)| rows::json(*id, s, now))
                .collect(),
            next: page.next.map(|n| n.to_string()),
        })),
    }
}

/// Cases with an open conflict.
///
/// `GET /v1/queues/conflicts`: cases with an open workflow or money
/// conflict, waiting for a supervisor.
#[utoipa::path(
    get,
    path = "/v1/queues/conflicts",
    tag = "queues",
    params(FlagQueueQuery),
    responses(
        (status = 200, description = "A page of the queue, or the queue as CSV.", content(
            (CasePage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's queue asked for by a store's token.", body = ErrorBody),
    )
)]
pub async fn conflicts(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    flagged(req, state, |q| q.has_conflict = Some(true)).await
}

/// Cases with offers awaiting approval.
///
/// `GET /v1/queues/approvals`: cases with compensation offers awaiting a
/// supervisor's or head office's approval.
#[utoipa::path(
    get,
    path = "/v1/queues/approvals",
    tag = "queues",
    params(FlagQueueQuery),
    responses(
        (status = 200, description = "A page of the queue, or the queue as CSV.", content(
            (CasePage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's queue asked for by a store's token.", body = ErrorBody),
    )
)]
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

/// One case of a due queue: its row and the deadline that put it there.
#[derive(Debug, Serialize, ToSchema)]
pub struct DueRow {
    /// When the deadline falls (or fell) due, RFC 3339.
    pub due_at: String,
    /// The deadlines due at that time.
    pub due: Vec<String>,
    /// The case.
    #[serde(flatten)]
    pub case: CaseRow,
}

/// A page of a due queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct DuePage {
    /// The cases of this page, earliest deadline first.
    pub cases: Vec<DueRow>,
    /// `after=` for the next page; null on the last.
    #[schema(required = true)]
    pub next: Option<String>,
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
        Format::Json => Ok(HttpResponse::Ok().json(DuePage {
            cases: page
                .rows
                .iter()
                .map(|(d, id, s)| DueRow {
                    due_at: Millis(*d).to_rfc3339(),
                    due: due_names(s, *d),
                    case: rows::json(*id, s, now),
                })
                .collect(),
            next: page.next.map(|(d, id)| format!("{d}.{id}")),
        })),
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

/// Cases past a deadline.
///
/// `GET /v1/queues/overdue`: cases with an open deadline already past,
/// the longest overdue first.
#[utoipa::path(
    get,
    path = "/v1/queues/overdue",
    tag = "queues",
    params(DueQueueQuery),
    responses(
        (status = 200, description = "A page of the queue, or the queue as CSV.", content(
            (DuePage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's queue asked for by a store's token.", body = ErrorBody),
    )
)]
pub async fn overdue(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    due(req, state, |now, _| (i64::MIN, now)).await
}

/// Cases with a deadline soon.
///
/// `GET /v1/queues/due-soon`: cases whose next deadline falls within
/// `within_hours` (24 unless given), soonest first.
#[utoipa::path(
    get,
    path = "/v1/queues/due-soon",
    tag = "queues",
    params(DueQueueQuery),
    responses(
        (status = 200, description = "A page of the queue, or the queue as CSV.", content(
            (DuePage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's queue asked for by a store's token.", body = ErrorBody),
    )
)]
pub async fn due_soon(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    due(req, state, |now, within| (now, now.saturating_add(within))).await
}

/// Parameters of the device list besides `format`.
pub(crate) const DEVICE_PARAMS: &[&str] = &["store", "stale_hours"];

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

/// One device of `GET /v1/queues/devices`; its fields are the CSV
/// columns too ([`DEVICE_COLUMNS`], kept equal by a test).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceRow {
    /// The device's store.
    pub store_id: String,
    /// The device's name.
    pub device: String,
    /// The user of its latest connection.
    pub user: String,
    /// That user's role.
    pub role: String,
    /// The app version it reported.
    pub app_version: String,
    /// When the relay first heard from it, RFC 3339.
    pub first_seen: String,
    /// When the relay last heard from it, RFC 3339.
    pub last_seen: String,
    /// Its last successful sync, RFC 3339; null if never.
    #[schema(required = true)]
    pub last_sync: Option<String>,
    /// Hours since that sync (one decimal); null if never.
    #[schema(required = true)]
    pub hours_since_sync: Option<f64>,
    /// Cases with unsynced changes it reported.
    pub pending: u32,
    /// Age in hours of its oldest unsynced change, grown since the
    /// report; null when nothing is pending.
    #[schema(required = true)]
    pub oldest_unsynced_hours: Option<f64>,
    /// When it reported that, RFC 3339.
    pub reported_at: String,
}

/// The answer of `GET /v1/queues/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    /// Every device in scope, the longest without a sync first.
    pub devices: Vec<DeviceRow>,
}

/// One device, ages judged at relay time `now`.
fn device_row(d: &aftercase_sync::relay::fleet::DeviceRecord, now: i64) -> DeviceRow {
    let hours = |ms: i64| ((ms as f64 / 3_600_000.0) * 10.0).round() / 10.0;
    // The device measured the age when it reported; it has grown since.
    let oldest = d
        .oldest_unsynced_secs
        .filter(|_| d.pending > 0)
        .map(|s| hours(s as i64 * 1000 + (now - d.reported_at.0).max(0)));
    DeviceRow {
        store_id: d.store.to_string(),
        device: d.device.to_string(),
        user: d.user.to_string(),
        role: d.role.as_str().to_string(),
        app_version: d.app_version.clone(),
        first_seen: d.first_seen.to_rfc3339(),
        last_seen: d.last_seen.to_rfc3339(),
        last_sync: d.last_sync.map(|t| t.to_rfc3339()),
        hours_since_sync: d.last_sync.map(|t| hours(now - t.0)),
        pending: d.pending,
        oldest_unsynced_hours: oldest,
        reported_at: d.reported_at.to_rfc3339(),
    }
}

/// A device row as CSV cells, in [`DEVICE_COLUMNS`] order.
fn device_csv(row: &DeviceRow) -> Vec<String> {
    // A struct of strings and numbers always serializes (a NaN would
    // become null); the default only keeps this free of a panic path.
    let value = serde_json::to_value(row).unwrap_or_default();
    DEVICE_COLUMNS
        .iter()
        .map(|c| match &value[*c] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect()
}

/// Tablets and their unsynced work.
///
/// `GET /v1/queues/devices`: every tablet the relay has heard from, the
/// longest without a sync first (never synced before all): last seen,
/// last successful sync, the unsynced cases it reported and how old the
/// oldest is, its app version. `stale_hours` keeps only devices that have
/// not synced for that long. Head office sees every store, a store its
/// own devices, a technician their own.
#[utoipa::path(
    get,
    path = "/v1/queues/devices",
    tag = "queues",
    params(DeviceQueueQuery),
    responses(
        (status = 200, description = "Every device in scope, or the list as CSV.", content(
            (DevicePage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's devices asked for by a store's token.", body = ErrorBody),
    )
)]
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
                .map(|d| device_csv(&device_row(d, now)))
                .collect(),
        ),
        Format::Json => Ok(HttpResponse::Ok().json(DevicePage {
            devices: list.iter().map(|d| device_row(d, now)).collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_csv_columns_are_the_json_fields() {
        let row = DeviceRow {
            store_id: "S1".into(),
            device: "tab-a".into(),
            user: "alice".into(),
            role: "staff".into(),
            app_version: "1.0".into(),
            first_seen: "a".into(),
            last_seen: "b".into(),
            last_sync: None,
            hours_since_sync: Some(1.5),
            pending: 2,
            oldest_unsynced_hours: None,
            reported_at: "c".into(),
        };
        let value = serde_json::to_value(&row).expect("json");
        let mut fields: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut columns = DEVICE_COLUMNS.to_vec();
        columns.sort_unstable();
        assert_eq!(fields, columns);
        let csv = device_csv(&row);
        assert_eq!(csv[0], "S1");
        assert_eq!(csv[7], "", "a null is an empty cell");
        assert_eq!(csv[8], "1.5");
        assert_eq!(csv[9], "2");
    }
}
