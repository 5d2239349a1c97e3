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
use aftercase_sync::relay::CaseFilter;
use aftercase_sync::{CaseId, StoreId};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    Ok(state.authenticate(header)?.principal)
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

/// Query of `GET /v1/cases`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    store: Option<String>,
    kind: Option<String>,
}

/// `GET /v1/cases?store=S&kind=K`: cases the caller may see (for a
/// technician, only those assigned to or reported by them).
pub async fn list_cases(
    req: HttpRequest,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let store = match &q.store {
        Some(s) => Some(
            StoreId::new(s.clone())
                .map_err(|_| ApiError::BadRequest(format!("\"{}\" is not a store id", clip(s))))?,
        ),
        None if p.role == Role::HeadOffice => None,
        None => Some(p.store.clone()),
    };
    if let Some(s) = &store {
        if !access::can_list_store(&p, s) {
            return Err(ApiError::Forbidden(format!(
                "forbidden: you may list only the cases of store {}",
                p.store
            )));
        }
    }
    let kind = q
        .kind
        .as_deref()
        .map(|k| {
            k.parse::<CaseKind>()
                .map_err(|_| ApiError::BadRequest(format!("\"{}\" is not a case kind", clip(k))))
        })
        .transpose()?;
    let rows = blocking(&state, move |s| {
        Ok(s.relay().list(&CaseFilter { store, kind })?)
    })
    .await?;
    let cases: Vec<_> = rows
        .into_iter()
        .filter(|(_, m)| access::can_read(&p, m))
        .map(|(id, m)| {
            json!({
                "id": id.to_string(),
                "store_id": m.store,
                "kind": m.kind,
                "created_by": m.created_by,
                "created_device": m.created_device,
                "first_received_at": m.first_received.to_rfc3339(),
                "last_received_at": m.last_received.to_rfc3339(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "cases": cases })))
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
