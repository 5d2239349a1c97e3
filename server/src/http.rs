//! The head-office read API.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::access::{self, Principal, Role};
use aftercase_sync::case::CaseKind;
use aftercase_sync::relay::CaseFilter;
use aftercase_sync::{CaseId, StoreId};
use serde::Deserialize;
use serde_json::json;

fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    Ok(state.keys.verify_header(header)?.0)
}

fn case_id(raw: &str) -> Result<CaseId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("{raw:?} is not a case id")))
}

/// `GET /healthz`: liveness, no authentication.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let seq = state.relay().seq();
    HttpResponse::Ok().json(json!({ "status": "ok", "seq": seq }))
}

/// Query of `GET /v1/cases`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    store: Option<String>,
    kind: Option<String>,
}

/// `GET /v1/cases?store=S&kind=K`: cases the caller may see.
pub async fn list_cases(
    req: HttpRequest,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let store = match &q.store {
        Some(s) => Some(StoreId::new(s.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))?),
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
        .map(|k| k.parse::<CaseKind>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let rows = state.relay().list(&CaseFilter { store, kind })?;
    let cases: Vec<_> = rows
        .into_iter()
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

/// Authenticates the request and checks the caller may read the case in
/// the path; returns the case id.
fn readable_case(req: &HttpRequest, path: &str, state: &AppState) -> Result<CaseId, ApiError> {
    let p = principal(req, state)?;
    let id = case_id(path)?;
    authorized(state, &p, id)?;
    Ok(id)
}

fn authorized(state: &AppState, p: &Principal, id: CaseId) -> Result<(), ApiError> {
    let meta = state
        .relay()
        .meta(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no case {id}")))?;
    if !access::can_read(p, &meta) {
        return Err(ApiError::Forbidden(format!(
            "forbidden: {}",
            access::not_visible(p)
        )));
    }
    Ok(())
}

/// `GET /v1/cases/{id}`: the merged case as JSON, with the relay's audit trail.
pub async fn get_case(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = readable_case(&req, &path, &state)?;
    let mut relay = state.relay();
    let mut view = relay
        .case_view(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no case {id}")))?;
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
            })
        })
        .collect();
    drop(relay);
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
    let json = state.relay().policy().1.to_string();
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
    let id = readable_case(&req, &path, &state)?;
    let bytes = state
        .relay()
        .doc_bytes(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no case {id}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bytes))
}
