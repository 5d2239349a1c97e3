//! `GET /v1/labels`: the names of kinds, states and deadlines in Chinese
//! with English beside them (`aftercase_sync::labels`), for the dashboard
//! and any other client. Holds no case or customer data, but is answered
//! only to a valid token like the rest of the API.

use super::cases::principal;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// `GET /v1/labels`.
pub async fn labels(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?;
    Ok(HttpResponse::Ok().json(aftercase_sync::labels::all()))
}
