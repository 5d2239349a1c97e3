//! The one place where errors become HTTP status codes. Internals are logged,
//! never sent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// An error answer of the read API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such case.
    #[error("{0}")]
    NotFound(String),
    /// 500: logged with details, answered without.
    #[error("internal error")]
    Internal(String),
}

impl From<aftercase_sync::storage::StorageError> for ApiError {
    fn from(e: aftercase_sync::storage::StorageError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "request failed");
        }
        let mut r = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        r.json(serde_json::json!({ "error": self.to_string() }))
    }
}
