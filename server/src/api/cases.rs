//! The head-office read API.
//!
//! Every handler authenticates first (revoked tokens included), then does
//! its relay work on a blocking thread so a long view or list never stalls
//! the async workers that serve other requests and sync connections. A
//! case the caller may not read is answered exactly like a case that does
//! not exist, so case ids of other stores cannot be probed.

use super::csv_out::{self, Format};
use super::params::Params;
use super::query::ListQuery;
use super::rows;
use super::rows::CasePage;
use crate::error::{clip, ApiError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::access::{self, Principal, Role};
use aftercase_sync::case::{CaseKind, CaseView};
use aftercase_sync::policy::Policy;
use aftercase_sync::relay::readmodel::{Query, ReadModel, Scope};
use aftercase_sync::{CaseId, StoreId};
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The authenticated principal of a request (revoked tokens refused).
pub fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    let p = state.authenticate(header)?.principal;
    crate::access_log::note_principal(req, &p);
    Ok(p)
}

/// A case named in a path by its id or by its case number as people read
/// it (`S001-tab-a-1`). A number is looked up in the read model among the
/// cases `p` may see, so an unknown number and one of another store give
/// the same answer; the caller still checks access on the id it gets.
pub async fn resolve_case(
    state: &web::Data<AppState>,
    p: &Principal,
    raw: &str,
) -> Result<CaseId, ApiError> {
    if let Ok(id) = raw.parse() {
        return Ok(id);
    }
    if raw.is_empty() || raw.len() > 200 {
        return Err(ApiError::BadRequest(format!(
            "\"{}\" is neither a case id nor a case number",
            clip(raw)
        )));
    }
    let no = raw.to_string();
    let scope = Scope::of(p);
    let ids = read(state, move |m| {
        m.ids_of_case_no(&no)
            .into_iter()
            .filter(|id| m.get(*id).is_some_and(|s| scope.admits(s)))
            .collect::<Vec<_>>()
    })
    .await?;
    match ids[..] {
        [id] => Ok(id),
        [] => Err(ApiError::NotFound(format!(
            "no case id or case number \"{}\" among the cases you may read",
            clip(raw)
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "case number \"{}\" names {} cases; ask for one by its id",
            clip(raw),
            ids.len()
        ))),
    }
}

/// The one answer for a case that is missing or not readable by the caller.
pub fn not_found(id: CaseId) -> ApiError {
    ApiError::NotFound(format!("case {id} not found"))
}

/// Runs relay work on a blocking thread (it takes the relay lock).
pub async fn blocking<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state: Arc<AppState> = state.clone().into_inner();
    let st = state.clone();
    let r = web::block(move || f(&state))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Errors of this work are storage errors (the rest is answered as
    // what the caller did wrong).
    if let Err(ApiError::Internal(e) | ApiError::Damaged(e)) = &r {
        st.health.storage_error(e);
    }
    r
}

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` when storage errors were seen since start or
    /// cases are quarantined as damaged (the relay still serves the rest);
    /// `failing` (with status 503) when storage cannot be read or the last
    /// flush failed.
    pub status: &'static str,
    /// The relay's latest change sequence number.
    pub seq: u64,
    /// Storage errors seen since the relay started.
    pub storage_errors: u64,
    /// Cases whose stored bytes do not load, quarantined until restored
    /// from a backup (`aftercase-relay verify` lists them).
    pub quarantined_cases: usize,
    /// The last storage error, in words (never customer data).
    pub last_storage_error: Option<String>,
    /// Set when the storage opened below the relay's durable watermark:
    /// acknowledged changes were lost (a damaged file cut short).
    pub storage_lost: Option<String>,
}

/// Liveness and storage health.
///
/// `GET /healthz`: no authentication. Takes no relay lock, so it answers
/// at once even while heavy uploads hold the relay; it reads one key from
/// storage to know storage answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "relay",
    security(()),
    responses(
        (status = 200, description = "The relay serves (status ok or degraded).", body = Health),
        (status = 503, description = "The relay cannot serve: storage does not answer or the last flush failed.", body = Health),
    )
)]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let st: Arc<AppState> = state.clone().into_inner();
    let readable =
        web::block(move || aftercase_sync::storage::Storage::get(st.storage(), b"rs").map(|_| ()))
            .await;
    let read_failed = match readable {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(e) = &read_failed {
        tracing::error!(error = %e, "health check: storage does not answer");
        state.health.storage_error(e);
    }
    let h = &state.health;
    let failing = read_failed.is_some() || h.flush_failing();
    let status = if failing {
        "failing"
    } else if h.storage_errors() > 0 || h.quarantined() > 0 {
        "degraded"
    } else {
        "ok"
    };
    let body = Health {
        status,
        seq: state.seq(),
        storage_errors: h.storage_errors(),
        quarantined_cases: h.quarantined(),
        last_storage_error: h.last_error(),
        storage_lost: h.lost(),
    };
    if failing {
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

/// `GET /metrics`: the Prometheus metrics, no authentication (Prometheus
/// scrapes it). Labels are frame types, refusal codes, route patterns and
/// statuses only, never an id or a secret; still, keep the port on a
/// private network. Takes no lock.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Devices with unsynced work, counted from the fleet records when
    // scraped (storage only, no relay lock).
    let st: Arc<AppState> = state.clone().into_inner();
    if let Ok(Ok(n)) = web::block(move || {
        aftercase_sync::relay::fleet::devices_with_unsynced_work(st.storage(), None)
    })
    .await
    {
        state.metrics.set_devices_with_unsynced(n as u64);
    }
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// Cases per page unless `limit` says otherwise, and the most it may say.
pub const PAGE: usize = 100;
/// See [`PAGE`].
pub const MAX_PAGE: usize = 1000;

/// Parameters of `GET /v1/cases`.
pub const LIST_PARAMS: &[&str] = &[
    "store",
    "kind",
    "status",
    "assignee",
    "case_no",
    "has_conflict",
    "awaiting_approval",
    "breached",
    "due_before",
    "updated_since",
    "created_from",
    "created_to",
    "after",
    "limit",
];

/// The list filters among `params` (those of [`LIST_PARAMS`] present).
pub fn list_query(params: &Params) -> Result<Query, ApiError> {
    let store = params.store()?.map(|s| s.to_string());
    Ok(Query {
        store,
        kind: params
            .parsed::<CaseKind>("kind", "a case kind")?
            .map(|k| k.as_str().to_string()),
        status: params.string("status"),
        assignee: params.string("assignee"),
        case_no: params.string("case_no"),
        has_conflict: params.bool("has_conflict")?,
        awaiting_approval: params.bool("awaiting_approval")?,
        breached: params.bool("breached")?,
        due_before: params.time("due_before")?,
        updated_since: params.time("updated_since")?,
        created_from: params.time("created_from")?,
        created_to: params.time("created_to")?,
    })
}

/// Whose cases `p` may list: head office any store, a store's staff their
/// store, a technician what is assigned to or reported by them. Asking
/// for another store is refused, not silently narrowed.
pub fn scope_for(p: &Principal, store: Option<&str>) -> Result<Scope, ApiError> {
    if let Some(s) = store {
        if p.role != Role::HeadOffice && p.store.as_str() != s {
            return Err(ApiError::Forbidden(format!(
                "forbidden: you may list only the cases of store {}",
                p.store
            )));
        }
    }
    Ok(Scope::of(p))
}

/// [`scope_for`], narrowed to `store` when head office asks for one (a
/// store's own staff are already limited to it).
pub fn narrowed_scope(p: &Principal, store: Option<&StoreId>) -> Result<Scope, ApiError> {
    Ok(match (scope_for(p, store.map(StoreId::as_str))?, store) {
        (Scope::Chain, Some(s)) => Scope::Store(s.to_string()),
        (scope, _) => scope,
    })
}

/// Cases read from the model per chunk of a streamed CSV export.
const CHUNK: usize = 1000;

/// A CSV export of every case in `scope` passing `q`, streamed a chunk at
/// a time: each chunk is read under the read model's lock on a blocking
/// thread and written out before the next is read, so the export never
/// holds more than one chunk.
pub fn stream_cases(state: Arc<AppState>, scope: Scope, q: Query, now: i64) -> HttpResponse {
    let head = csv_out::head(rows::COLUMNS);
    let first = futures_util::stream::once(async move { head });
    // The cursor: `Some(after)` while pages remain.
    let pages = futures_util::stream::unfold(Some(None::<CaseId>), move |cursor| {
        let state = state.clone();
        let scope = scope.clone();
        let q = q.clone();
        async move {
            let after = cursor?;
            let page = web::block(move || {
                state.await_published();
                let model = state.read_model();
                let page = model.query(&scope, &q, now, after, CHUNK);
                drop(model);
                let bytes = csv_out::rows(page.rows.iter().map(|(id, s)| rows::csv(*id, s, now)));
                (bytes, page.next)
            })
            .await;
            match page {
                Ok((bytes, next)) => Some((bytes, next.map(Some))),
                Err(e) => Some((Err(ApiError::Internal(e.to_string())), None)),
            }
        }
    });
    csv_out::streamed("cases", first.chain(pages))
}

/// List cases.
///
/// `GET /v1/cases`: the cases the caller may see, filtered on the read
/// model (see [`LIST_PARAMS`]), a page at a time in case-id order, or the
/// whole list as streamed CSV (`format=csv` without `limit`).
#[utoipa::path(
    get,
    path = "/v1/cases",
    tag = "cases",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of cases, or the list as CSV.", content(
            (CasePage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's list asked for by a store's token.", body = ErrorBody),
    )
)]
pub async fn list_cases(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let params = Params::parse(&req, LIST_PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let q = list_query(&params)?;
    let scope = scope_for(&p, q.store.as_deref())?;
    let after = params.parsed::<CaseId>("after", "a case id")?;
    let limit = params.number("limit", 1..=MAX_PAGE)?;
    let now = crate::state::now_millis().0;
    if format == Format::Csv && limit.is_none() && after.is_none() {
        state.lists_here()?;
        return Ok(stream_cases(state.into_inner(), scope, q, now));
    }
    let limit = limit.unwrap_or(PAGE);
    let page = read(&state, move |m| m.query(&scope, &q, now, after, limit)).await?;
    match format {
        Format::Csv => csv_out::whole(
            "cases",
            rows::COLUMNS,
            page.rows
                .iter()
                .map(|(id, s)| rows::csv(*id, s, now))
                .collect(),
        ),
        Format::Json => Ok(HttpResponse::Ok().json(rows::CasePage {
            cases: page
                .rows
                .iter()
                .map(|(id, s)| rows::json(*id, s, now))
                .collect(),
            next: page.next.map(|n| n.to_string()),
        })),
    }
}

/// Runs a read-model query on a blocking thread (never under the relay's
/// lock).
pub async fn read<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce(&ReadModel) -> T + Send + 'static,
) -> Result<T, ApiError> {
    state.lists_here()?;
    let state: Arc<AppState> = state.clone().into_inner();
    web::block(move || {
        state.await_published();
        f(&state.read_model())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Checks, with the relay locked, that `p` may read case `id`; a missing
/// and an unreadable case give the same error.
fn check_readable(
    reader: &aftercase_sync::relay::CaseReader<crate::backend::RelayStorage>,
    p: &Principal,
    id: CaseId,
) -> Result<(), ApiError> {
    match reader.meta(id)? {
        Some(meta) if access::can_read(p, &meta) => Ok(()),
        _ => Err(not_found(id)),
    }
}

/// One accepted upload of a case, as `GET /v1/cases/{id}` lists them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseAudit {
    /// The change's hash, hex.
    pub change: String,
    /// Who sent it.
    pub user: String,
    /// From which device.
    pub device: String,
    /// When the relay received it, RFC 3339.
    pub received_at: String,
    /// The latest device time the upload claimed, RFC 3339.
    #[schema(required = true)]
    pub claimed_at: Option<String>,
    /// `claimed_at` minus `received_at`, in ms.
    #[schema(required = true)]
    pub clock_skew_ms: Option<i64>,
}

/// The answer of `GET /v1/cases/{id}`: the case and its audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetail {
    /// The merged case, as head office sees it.
    #[serde(flatten)]
    pub case: CaseView,
    /// Every accepted upload, in the relay's order.
    pub audit: Vec<CaseAudit>,
    /// Visits the customer (by phone) missed across all the cases the
    /// relay holds.
    pub customer_no_shows: u32,
}

/// One case with its audit trail.
///
/// `GET /v1/cases/{id}`: the merged case as JSON, with the relay's audit trail.
#[utoipa::path(
    get,
    path = "/v1/cases/{id}",
    tag = "cases",
    params(("id" = String, Path, description = "The case id, or its case number (`S001-tab-a-1`).")),
    responses(
        (status = 200, description = "The case.", body = CaseDetail),
        (status = 400, description = "Neither a case id nor a case number, or a number naming several cases.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 404, description = "No such case, or one the caller may not read.", body = ErrorBody),
    )
)]
pub async fn get_case(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let id = resolve_case(&state, &p, &path).await?;
    // Read from storage without the relay's lock: a head-office read never
    // waits for sync, nor sync for it.
    let (view, audit) = blocking(&state, move |s| {
        let reader = s.reader();
        check_readable(&reader, &p, id)?;
        let mut view = reader.case_view(id)?.ok_or_else(|| not_found(id))?;
        view.evaluate_timers(crate::state::now_millis());
        let audit: Vec<_> = reader
            .audit(id)?
            .into_iter()
            .map(|(hash, r)| CaseAudit {
                change: hash,
                user: r.user.to_string(),
                device: r.device.to_string(),
                received_at: r.received_at.to_rfc3339(),
                claimed_at: r.claimed_at.map(|c| c.to_rfc3339()),
                clock_skew_ms: r.skew_ms(),
            })
            .collect();
        Ok((view, audit))
    })
    .await?;
    let mut view = view;
    // Scheduling conflicts are across cases: the read model holds the
    // store's calendars.
    let (conflicts, customer_no_shows) = read(&state, move |m| {
        let no_shows = m
            .get(id)
            .and_then(|s| s.customer.as_deref())
            .map_or(0, |c| m.no_shows_of(c));
        (m.schedule_conflicts(id).to_vec(), no_shows)
    })
    .await?;
    view.schedule_conflicts = conflicts;
    Ok(HttpResponse::Ok().json(CaseDetail {
        case: view,
        audit,
        customer_no_shows,
    }))
}

/// The policy in force.
///
/// `GET /v1/policy`: the policy in force (any authenticated caller).
#[utoipa::path(
    get,
    path = "/v1/policy",
    tag = "relay",
    responses(
        (status = 200, description = "The policy in force, as head office published it.", body = Policy),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
    )
)]
pub async fn get_policy(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?;
    let json = blocking(&state, |s| Ok(s.relay().policy().1.to_string())).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}

/// One case as an Automerge document.
///
/// `GET /v1/cases/{id}/doc`: the standard Automerge binary.
#[utoipa::path(
    get,
    path = "/v1/cases/{id}/doc",
    tag = "cases",
    params(("id" = String, Path, description = "The case id, or its case number (`S001-tab-a-1`).")),
    responses(
        (status = 200, description = "The case document as Automerge saves it.", content(
            ("application/octet-stream"),
        )),
        (status = 400, description = "Neither a case id nor a case number, or a number naming several cases.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 404, description = "No such case, or one the caller may not read.", body = ErrorBody),
    )
)]
pub async fn get_doc(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let id = resolve_case(&state, &p, &path).await?;
    let bytes = blocking(&state, move |s| {
        let reader = s.reader();
        check_readable(&reader, &p, id)?;
        reader.doc_bytes(id)?.ok_or_else(|| not_found(id))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bytes))
}
