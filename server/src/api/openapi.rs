//! The OpenAPI 3.1 document of the HTTP API, served at
//! `GET /v1/openapi.json`. `utoipa` derives it at compile time from the
//! `#[utoipa::path]` attribute on each handler and from the types the
//! handlers serialize, so a response schema is the struct that is sent.
//! The tests below hold it to the route table (`routes.rs`);
//! `tests/tests/openapi.rs` holds it to the running relay.

use super::{audit, cases, erasure, evidence, labels, queues, schedule, service, soundness};
use crate::error::{ApiError, ErrorBody};
use actix_web::HttpResponse;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document: every handler of an API route in [`routes::ROUTES`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Aftercase relay",
        description = "Head office's read API of the Aftercase relay: cases, work queues, \
            service metrics and the audit feed, as JSON or CSV. Every endpoint but \
            `/healthz` and this document needs `Authorization: Bearer TOKEN` (a device \
            token from `aftercase-relay token`); what a token sees is decided by its \
            role and store. An unknown query parameter is answered 400 naming it."
    ),
    paths(
        cases::healthz,
        openapi_json,
        cases::list_cases,
        cases::get_case,
        cases::get_doc,
        evidence::get_evidence,
        cases::get_policy,
        queues::conflicts,
        queues::approvals,
        queues::overdue,
        queues::due_soon,
        queues::devices,
        service::service,
        audit::audit,
        labels::labels,
        schedule::schedule,
        erasure::erase,
        soundness::verify,
        soundness::backup,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerJwt),
    security(("bearer" = [])),
    tags(
        (name = "relay", description = "Liveness, policy, labels and this document."),
        (name = "cases", description = "Cases head office may read."),
        (name = "queues", description = "Work queues: conflicts, approvals, deadlines."),
        (name = "metrics", description = "The handbook's service metrics."),
        (name = "audit", description = "Who changed what, when, from which device."),
        (name = "privacy", description = "Erasing a customer's personal data."),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` scheme the document's security requirement names.
struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An HS256 token signed by the relay (`aftercase-relay token`).",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document as JSON, built on first use.
pub fn document() -> Result<&'static str, ApiError> {
    static DOC: OnceLock<String> = OnceLock::new();
    if let Some(doc) = DOC.get() {
        return Ok(doc);
    }
    let json = ApiDoc::openapi()
        .to_json()
        .map_err(|e| ApiError::Internal(format!("openapi document: {e}")))?;
    Ok(DOC.get_or_init(|| json))
}

/// The OpenAPI document of this API.
///
/// `GET /v1/openapi.json`: this API described as OpenAPI 3.1. Needs no
/// token: it holds no data.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "relay",
    security(()),
    responses((status = 200, description = "This document.", content(("application/json"))))
)]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(document()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::{Kind, ROUTES};
    use serde_json::Value;
    use std::collections::BTreeSet;

    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn doc() -> Value {
        serde_json::from_str(document().expect("the document serializes")).expect("json")
    }

    /// (method, path) of every operation in the document.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if METHODS.contains(&method.as_str()) {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_api_route_is_documented_and_every_documented_path_is_a_route() {
        let doc = doc();
        let documented = documented(&doc);
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .filter(|r| r.kind == Kind::Api)
            .map(|r| (r.method.as_str().to_lowercase(), r.path.to_string()))
            .collect();
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the document: {undocumented:?}"
        );
        let stale: Vec<_> = documented.difference(&routes).collect();
        assert!(stale.is_empty(), "documented but not routed: {stale:?}");
        // The WebSocket endpoint is routed and deliberately left out.
        assert!(ROUTES
            .iter()
            .any(|r| r.path == "/v1/sync" && r.kind == Kind::WebSocket));
        assert!(!documented.iter().any(|(_, p)| p == "/v1/sync"));
    }

    #[test]
    fn no_path_is_routed_twice() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method.as_str(), r.path)),
                "{} {} is in the table twice",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_jwt_required_where_a_token_is() {
        let doc = doc();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "{}",
            doc["openapi"]
        );
        let scheme = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        assert_eq!(scheme["bearerFormat"], "JWT");
        assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
        let open = ["/healthz", "/v1/openapi.json"];
        for (method, path) in documented(&doc) {
            let op = &doc["paths"][&path][&method];
            // `[{}]`: no token needed; absent: the document's `bearer`.
            let needs_token = op["security"] != serde_json::json!([{}]);
            assert_eq!(
                needs_token,
                !open.contains(&path.as_str()),
                "{method} {path}: security {}",
                op["security"]
            );
            let responses = &op["responses"];
            assert!(responses["200"].is_object(), "{method} {path}: no 200");
            if needs_token {
                assert_eq!(
                    responses["401"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}: 401 must show the error body"
                );
            }
        }
    }

    #[test]
    fn fixed_values_are_enums_the_handlers_accept() {
        let doc = doc();
        let param = |path: &str, name: &str| -> Vec<String> {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .find(|p| p["name"] == name)
                .and_then(|p| p["schema"]["enum"].as_array())
                .unwrap_or_else(|| panic!("{path} {name}: no enum"))
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        for v in param("/v1/cases", "kind") {
            assert!(
                v.parse::<aftercase_sync::case::CaseKind>().is_ok(),
                "kind {v}"
            );
        }
        assert_eq!(param("/v1/cases", "kind").len(), 5);
        let groups = param("/v1/metrics/service", "group_by");
        assert_eq!(groups.len(), 6);
        for v in groups {
            assert!(
                v.parse::<aftercase_sync::relay::metrics::GroupBy>().is_ok(),
                "group_by {v}"
            );
        }
        assert_eq!(param("/v1/audit", "format"), ["json", "csv"]);
    }
}
