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
    /// 401: the token was valid but the operator revoked it, its device or
    /// its user.
    #[error("{0}")]
    Revoked(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such case, or one the caller may not read (the two answer
    /// alike so the API does not reveal which case ids exist).
    #[error("{0}")]
    NotFound(String),
    /// 410: the device was reported lost: it wipes what it holds.
    #[error("{0}")]
    DeviceLost(String),
    /// 429: too many connections for this device or user.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: the case's stored bytes are damaged (quarantined until
    /// restored from a backup).
    #[error("{0}")]
    Damaged(String),
    /// 500: logged with details, answered without.
    #[error("internal error")]
    Internal(String),
}

impl From<aftercase_sync::storage::StorageError> for ApiError {
    fn from(e: aftercase_sync::storage::StorageError) -> Self {
        match e {
            aftercase_sync::storage::StorageError::Corrupt { .. } => {
                tracing::error!(error = %e, "stored data does not load");
                ApiError::Damaged(format!(
                    "the relay's stored copy is damaged ({}); head office restores it from a backup (`aftercase-relay verify` lists what is damaged)",
                    clip(&e.to_string())
                ))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Revoked(r @ crate::revoke::Revoked::Lost(_)) => {
                ApiError::DeviceLost(r.to_string())
            }
            crate::auth::AuthError::Revoked(r) => ApiError::Revoked(r.to_string()),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

impl ApiError {
    /// A stable code for programs (the `code` field of the JSON answer), so
    /// an app can tell a revoked token from an expired one without parsing
    /// the words.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Revoked(_) => "revoked",
            ApiError::DeviceLost(_) => "device_lost",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooManyRequests(_) => "too_many_connections",
            ApiError::Damaged(_) => "damaged",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::Revoked(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::DeviceLost(_) => StatusCode::GONE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Damaged(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "request failed");
        }
        let mut r = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_) | ApiError::Revoked(_)) {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        // Messages are built from clipped input already; escaping once more
        // here keeps any path that forgot from echoing control characters.
        r.json(ErrorBody {
            error: escape_controls(&self.to_string()),
            code: self.code(),
        })
    }
}

/// The JSON body of every error answer of the read API.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words (caller input quoted is clipped and
    /// escaped).
    #[schema(example = "unknown parameter \"stauts\": use store, kind, format")]
    pub error: String,
    /// A stable code for programs (one of [`CODES`]).
    #[schema(schema_with = code_schema)]
    pub code: &'static str,
}

/// Every `code` an error answer may carry, as the OpenAPI document lists
/// them (a test checks that [`ApiError::code`] gives nothing else).
pub const CODES: &[&str] = &[
    "bad_request",
    "unauthorized",
    "revoked",
    "device_lost",
    "forbidden",
    "not_found",
    "too_many_connections",
    "damaged",
    "internal",
];

fn code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CODES.iter().copied()))
        .description(Some("A stable code for programs, so an app can tell a revoked token from an expired one without parsing the words."))
        .build()
}

/// Longest piece of caller input quoted back in an error message.
pub const CLIP_CHARS: usize = 60;

/// Caller input made safe to quote in an error message or a log line:
/// control characters escaped, at most [`CLIP_CHARS`] characters kept, and
/// an ellipsis when something was cut.
pub fn clip(input: &str) -> String {
    let mut out = String::new();
    for (i, c) in input.chars().enumerate() {
        if i == CLIP_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn escape_controls(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_escapes_and_shortens() {
        assert_eq!(clip("abc"), "abc");
        assert_eq!(clip("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        let long = "x".repeat(500);
        assert_eq!(clip(&long).chars().count(), CLIP_CHARS + 1);
        assert_eq!(escape_controls("ok\r"), "ok\\r");
    }

    #[test]
    fn every_error_code_is_listed_in_the_document() {
        let all = [
            ApiError::BadRequest(String::new()),
            ApiError::Unauthorized(String::new()),
            ApiError::Revoked(String::new()),
            ApiError::DeviceLost(String::new()),
            ApiError::Forbidden(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::TooManyRequests(String::new()),
            ApiError::Damaged(String::new()),
            ApiError::Internal(String::new()),
        ];
        let codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        assert_eq!(codes, CODES);
    }
}
