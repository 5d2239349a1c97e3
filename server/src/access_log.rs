//! One log line and one metric sample per HTTP request.
//!
//! The middleware [`record`] wraps every route. Handlers that authenticate
//! leave the verified principal in the request's extensions
//! ([`note_principal`]), and once the response is ready the line names
//! the method, the route *pattern* (`/v1/cases/{id}`, never the path or
//! query a client sent, which can carry a case number or a name), the
//! status, the duration and who asked (user, role, store). The token and
//! anything a customer said never reach it. A WebSocket connection is one
//! request (its upgrade); its frames are not logged here.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use aftercase_sync::access::Principal;
use std::time::Instant;

/// The log target of access lines, for filtering them (`AFTERCASE_LOG`).
pub const TARGET: &str = "aftercase_server::access";

/// The route reported for a request no route matched (a 404 for an
/// unknown path): the path itself is never logged or used as a label.
const UNMATCHED: &str = "unmatched";

/// Who made a request, as verified from its token.
#[derive(Clone)]
struct Caller(Principal);

/// Records the verified principal of `req` for its access line; handlers
/// call it right after authenticating.
pub fn note_principal(req: &HttpRequest, p: &Principal) {
    req.extensions_mut().insert(Caller(p.clone()));
}

/// The middleware: times the request, then logs it and counts it in the
/// metrics.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = crate::metrics::method_label(req.method().as_str());
    let metrics = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map(|s| s.metrics.clone());
    let res = next.call(req).await;
    let took = started.elapsed();
    // An error here never reached a handler (handlers' errors are already
    // responses); it is answered by actix with its own status.
    let (route, status, caller) = match &res {
        Ok(r) => (
            r.request()
                .match_pattern()
                .unwrap_or_else(|| UNMATCHED.into()),
            r.status().as_u16(),
            r.request().extensions().get::<Caller>().cloned(),
        ),
        Err(e) => (
            UNMATCHED.into(),
            e.as_response_error().status_code().as_u16(),
            None,
        ),
    };
    if let Some(m) = metrics {
        m.http_request(method, &route, status, took);
    }
    let duration_ms = took.as_secs_f64() * 1000.0;
    match caller {
        Some(Caller(p)) => tracing::info!(
            target: TARGET,
            method = %method,
            route = %route,
            status,
            duration_ms = %format_args!("{duration_ms:.3}"),
            user = %p.user,
            role = %p.role,
            store = %p.store,
            "request"
        ),
        None => tracing::info!(
            target: TARGET,
            method = %method,
            route = %route,
            status,
            duration_ms = %format_args!("{duration_ms:.3}"),
            "request"
        ),
    }
    res
}
