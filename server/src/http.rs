//! The head-office read API.
//!
//! Every handler authenticates first (revoked tokens included), then does
//! its relay work on a blocking thread so a long view or list never stalls
//! the async workers that serve other requests and sync connections. A
//! case the caller may not read is answered exactly like a case that does
//! not exist, so case ids of other stores cannot be probed.

use crate::error::{clip, ApiError};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::access::{self, Principal, Role};
use aftercase_sync::case::CaseKind;
use aftercase_sync::relay::summary::CaseSummary;
use aftercase_sync::relay::CaseFilter;
use aftercase_sync::{CaseId, StoreId};
use serde_json::json;
use std::sync::Arc;

fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    let p = state.authenticate(header)?.principal;
    crate::access_log::note_principal(req, &p);
    Ok(p)
}

fn case_id(raw: &str) -> Result<CaseId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("\"{}\" is not a case id", clip(raw))))
}

/// The one answer for a case that is missing or not readable by the caller.
fn not_found(id: CaseId) -> ApiError {
    ApiError::NotFound(format!("case {id} not found"))
}

/// Runs relay work on a blocking thread (it takes the relay lock).
async fn blocking<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state: Arc<AppState> = state.clone().into_inner();
    web::block(move || f(&state))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// `GET /healthz`: liveness, no authentication. Takes no lock, so it
/// answers at once even while heavy uploads hold the relay.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "seq": state.seq() }))
}

/// `GET /metrics`: the Prometheus metrics, no authentication (Prometheus
/// scrapes it). Labels are frame types, refusal codes, route patterns and
/// statuses only, never an id or a secret; still, keep the port on a
/// private network. Takes no lock.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// Filters of `GET /v1/cases`, read from the case summaries of the relay's
/// read model. An unknown parameter is refused by name, so a typo never
/// silently returns everything.
#[derive(Debug, Default)]
struct ListFilter {
    store: Option<StoreId>,
    kind: Option<CaseKind>,
    status: Option<String>,
    assignee: Option<String>,
    case_no: Option<String>,
    has_conflict: Option<bool>,
    awaiting_approval: Option<bool>,
    breached: Option<bool>,
    due_before: Option<i64>,
    updated_since: Option<i64>,
    /// Cases after this id (the previous page's `next`).
    after: Option<CaseId>,
    /// Page size.
    limit: usize,
}

/// Cases per page unless `limit` says otherwise, and the most it may say.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

const LIST_PARAMS: &[&str] = &[
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
    "after",
    "limit",
];

fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "{name}: \"{}\" is not true or false",
            clip(v)
        ))),
    }
}

fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{name}: \"{}\" is not a time like 2026-12-01T09:00:00+08:00",
                clip(v)
            ))
        })
}

impl ListFilter {
    fn parse(query: &str) -> Result<ListFilter, ApiError> {
        let pairs: Vec<(String, String)> = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|_| ApiError::BadRequest("malformed query string".into()))?
            .into_inner();
        let mut f = ListFilter {
            limit: PAGE,
            ..ListFilter::default()
        };
        for (k, v) in pairs {
            match k.as_str() {
                "store" => {
                    f.store = Some(StoreId::new(v.clone()).map_err(|_| {
                        ApiError::BadRequest(format!("\"{}\" is not a store id", clip(&v)))
                    })?)
                }
                "kind" => {
                    f.kind = Some(v.parse::<CaseKind>().map_err(|_| {
                        ApiError::BadRequest(format!("\"{}\" is not a case kind", clip(&v)))
                    })?)
                }
                "status" => f.status = Some(v),
                "assignee" => f.assignee = Some(v),
                "case_no" => f.case_no = Some(v),
                "has_conflict" => f.has_conflict = Some(parse_bool(&k, &v)?),
                "awaiting_approval" => f.awaiting_approval = Some(parse_bool(&k, &v)?),
                "breached" => f.breached = Some(parse_bool(&k, &v)?),
                "due_before" => f.due_before = Some(parse_time(&k, &v)?),
                "updated_since" => f.updated_since = Some(parse_time(&k, &v)?),
                "after" => {
                    f.after = Some(v.parse::<CaseId>().map_err(|_| {
                        ApiError::BadRequest(format!("after: \"{}\" is not a case id", clip(&v)))
                    })?)
                }
                "limit" => {
                    f.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "limit: \"{}\" is not a number from 1 to {MAX_PAGE}",
                                clip(&v)
                            ))
                        })?
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown parameter \"{}\": use {}",
                        clip(other),
                        LIST_PARAMS.join(", ")
                    )))
                }
            }
        }
        Ok(f)
    }

    /// Whether a case with summary `s` passes, at relay time `now`.
    fn keeps(&self, s: &CaseSummary, now: i64) -> bool {
        let breached = !s.late.is_empty() || s.open_timers.iter().any(|(_, d)| *d < now);
        self.status
            .as_ref()
            .is_none_or(|x| s.status.as_ref() == Some(x))
            && self
                .assignee
                .as_ref()
                .is_none_or(|x| s.assignee.as_ref() == Some(x))
            && self
                .case_no
                .as_ref()
                .is_none_or(|x| s.case_no.as_ref() == Some(x))
            && self
                .has_conflict
                .is_none_or(|b| (s.open_conflicts > 0) == b)
            && self
                .awaiting_approval
                .is_none_or(|b| (s.awaiting_approval > 0) == b)
            && self.breached.is_none_or(|b| breached == b)
            && self
                .due_before
                .is_none_or(|t| s.next_due().is_some_and(|d| d < t))
            && self.updated_since.is_none_or(|t| s.updated_at >= t)
    }
}

/// `GET /v1/cases`: the cases the caller may see (a store's staff its
/// store, head office any, a technician only cases assigned to or reported
/// by them), filtered on the read model; see [`LIST_PARAMS`].
pub async fn list_cases(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let mut f = ListFilter::parse(req.query_string())?;
    if f.store.is_none() && p.role != Role::HeadOffice {
        f.store = Some(p.store.clone());
    }
    if let Some(s) = &f.store {
        if !access::can_list_store(&p, s) {
            return Err(ApiError::Forbidden(format!(
                "forbidden: you may list only the cases of store {}",
                p.store
            )));
        }
    }
    let now = crate::state::now_millis().0;
    let cases =
        blocking(&state, move |s| {
            let mut relay = s.relay();
            let rows = relay.list(&CaseFilter {
                store: f.store.clone(),
                kind: f.kind,
            })?;
            let mut out = Vec::new();
            for (id, m) in rows {
                if !access::can_read(&p, &m) || f.after.is_some_and(|a| id <= a) {
                    continue;
                }
                // A case stored before the read model existed, or summarised
                // under an older policy, is summarised again from its
                // document (`aftercase-relay reindex` does them all at once).
                let Some(summary) = relay.current_summary(id)? else {
                    continue;
                };
                if !f.keeps(&summary, now) {
                    continue;
                }
                let breached: Vec<&str> = summary
                    .late
                    .iter()
                    .map(String::as_str)
                    .chain(
                        summary
                            .open_timers
                            .iter()
                            .filter(|(_, d)| *d < now)
                            .map(|(n, _)| n.as_str()),
                    )
                    .collect();
                out.push((id, json!({
                "id": id.to_string(),
                "case_no": summary.case_no,
                "store_id": m.store,
                "kind": m.kind,
                "status": summary.status,
                "assignee": summary.assignee,
                "open_conflicts": summary.open_conflicts,
                "awaiting_approval": summary.awaiting_approval,
                "next_due": summary.next_due().map(|d| aftercase_sync::Millis(d).to_rfc3339()),
                "breached": breached,
                "created_by": m.created_by,
                "created_device": m.created_device,
                "first_received_at": m.first_received.to_rfc3339(),
                "last_received_at": m.last_received.to_rfc3339(),
            })));
            }
            // Pages follow case ids, which never change: a case that changes
            // between two pages is neither skipped nor repeated.
            out.sort_by_key(|(id, _)| *id);
            let more = out.len() > f.limit;
            out.truncate(f.limit);
            let next = if more {
                out.last().map(|(id, _)| id.to_string())
            } else {
                None
            };
            Ok((out.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), next))
        })
        .await?;
    let (cases, next) = cases;
    Ok(HttpResponse::Ok().json(json!({ "cases": cases, "next": next })))
}

/// Checks, with the relay locked, that `p` may read case `id`; a missing
/// and an unreadable case give the same error.
fn check_readable(
    relay: &aftercase_sync::relay::Relay<aftercase_sync::storage::SledStorage>,
    p: &Principal,
    id: CaseId,
) -> Result<(), ApiError> {
    match relay.meta(id)? {
        Some(meta) if access::can_read(p, &meta) => Ok(()),
        _ => Err(not_found(id)),
    }
}

/// `GET /v1/cases/{id}`: the merged case as JSON, with the relay's audit trail.
pub async fn get_case(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let id = case_id(&path)?;
    let (view, audit) = blocking(&state, move |s| {
        let mut relay = s.relay();
        check_readable(&relay, &p, id)?;
        let mut view = relay.case_view(id)?.ok_or_else(|| not_found(id))?;
        view.evaluate_timers(crate::state::now_millis());
        let audit: Vec<_> = relay
            .audit(id)?
            .into_iter()
            .map(|(hash, r)| {
                json!({
                    "change": hash,
                    "user": r.user,
                    "device": r.device,
                    "received_at": r.received_at.to_rfc3339(),
                    "claimed_at": r.claimed_at.map(|c| c.to_rfc3339()),
                    "clock_skew_ms": r.skew_ms(),
                })
            })
            .collect();
        Ok((view, audit))
    })
    .await?;
    let mut body = serde_json::to_value(&view).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("audit".into(), json!(audit));
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /v1/policy`: the policy in force (any authenticated caller).
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

/// `GET /v1/cases/{id}/doc`: the standard Automerge binary.
pub async fn get_doc(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let id = case_id(&path)?;
    let bytes = blocking(&state, move |s| {
        let mut relay = s.relay();
        check_readable(&relay, &p, id)?;
        relay.doc_bytes(id)?.ok_or_else(|| not_found(id))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bytes))
}
