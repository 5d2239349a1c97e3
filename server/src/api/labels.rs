//! `GET /v1/labels`: the names of kinds, states and deadlines in Chinese
//! with English beside them (`aftercase_sync::labels`), for the dashboard
//! and any other client. Holds no case or customer data, but is answered
//! only to a valid token like the rest of the API.

use super::cases::principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// The names of kinds, states and deadlines.
///
/// `GET /v1/labels`: every case kind, every state of every kind's flow
/// (with `cancelled`) and every deadline, each as `{zh, en}`.
#[utoipa::path(
    get,
    path = "/v1/labels",
    tag = "relay",
    responses(
        (status = 200, description = "Every kind, state and deadline with its Chinese and English name.", body = aftercase_sync::labels::Labels),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
    )
)]
pub async fn labels(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?;
    Ok(HttpResponse::Ok().json(aftercase_sync::labels::all()))
}
