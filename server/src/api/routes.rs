//! Every route of the relay in one table. `app.rs` registers exactly
//! these, and the tests in `openapi.rs` hold the OpenAPI document to it:
//! every API route is documented with its method, and every documented
//! path is a route. A new endpoint is a line here and a
//! `#[utoipa::path]` on its handler, listed in `openapi::ApiDoc`.

use super::{
    audit, cases, erasure, evidence, labels, openapi, queues, schedule, service, soundness,
};
use crate::{dashboard, ws};
use actix_web::http::Method;
use actix_web::web;

/// What a route serves, which decides whether the OpenAPI document must
/// describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Part of the HTTP API: the document describes it.
    Api,
    /// The WebSocket sync endpoint: a binary protocol over one upgraded
    /// connection (ARCHITECTURE.md), not something OpenAPI describes.
    WebSocket,
    /// Not an API (a page, an asset, Prometheus text): left out of the
    /// document.
    Asset,
}

/// One route of the relay.
pub struct Route {
    /// The HTTP method it answers.
    pub method: Method,
    /// The path, with `{name}` segments as in OpenAPI.
    pub path: &'static str,
    /// Whether the OpenAPI document describes it.
    // Read only by the tests that compare the table with the document.
    #[cfg_attr(not(test), allow(dead_code))]
    pub kind: Kind,
    /// Attaches the handler to a route already restricted to `method`.
    pub handler: fn(actix_web::Route) -> actix_web::Route,
}

/// The relay's routes.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/healthz",
        kind: Kind::Api,
        handler: |r| r.to(cases::healthz),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        kind: Kind::Asset,
        handler: |r| r.to(cases::metrics),
    },
    Route {
        method: Method::GET,
        path: "/v1/openapi.json",
        kind: Kind::Api,
        handler: |r| r.to(openapi::openapi_json),
    },
    Route {
        method: Method::GET,
        path: "/v1/sync",
        kind: Kind::WebSocket,
        handler: |r| r.to(ws::sync),
    },
    Route {
        method: Method::GET,
        path: "/v1/cases",
        kind: Kind::Api,
        handler: |r| r.to(cases::list_cases),
    },
    Route {
        method: Method::GET,
        path: "/v1/cases/{id}",
        kind: Kind::Api,
        handler: |r| r.to(cases::get_case),
    },
    Route {
        method: Method::GET,
        path: "/v1/cases/{id}/doc",
        kind: Kind::Api,
        handler: |r| r.to(cases::get_doc),
    },
    Route {
        method: Method::GET,
        path: "/v1/cases/{id}/evidence/{hash}",
        kind: Kind::Api,
        handler: |r| r.to(evidence::get_evidence),
    },
    Route {
        method: Method::POST,
        path: "/v1/verify",
        kind: Kind::Api,
        handler: |r| r.to(soundness::verify),
    },
    Route {
        method: Method::GET,
        path: "/v1/backup",
        kind: Kind::Api,
        handler: |r| r.to(soundness::backup),
    },
    Route {
        method: Method::POST,
        path: "/v1/erasures",
        kind: Kind::Api,
        handler: |r| r.to(erasure::erase),
    },
    Route {
        method: Method::GET,
        path: "/v1/policy",
        kind: Kind::Api,
        handler: |r| r.to(cases::get_policy),
    },
    Route {
        method: Method::GET,
        path: "/v1/queues/conflicts",
        kind: Kind::Api,
        handler: |r| r.to(queues::conflicts),
    },
    Route {
        method: Method::GET,
        path: "/v1/queues/approvals",
        kind: Kind::Api,
        handler: |r| r.to(queues::approvals),
    },
    Route {
        method: Method::GET,
        path: "/v1/queues/overdue",
        kind: Kind::Api,
        handler: |r| r.to(queues::overdue),
    },
    Route {
        method: Method::GET,
        path: "/v1/queues/due-soon",
        kind: Kind::Api,
        handler: |r| r.to(queues::due_soon),
    },
    Route {
        method: Method::GET,
        path: "/v1/queues/devices",
        kind: Kind::Api,
        handler: |r| r.to(queues::devices),
    },
    Route {
        method: Method::GET,
        path: "/v1/schedule",
        kind: Kind::Api,
        handler: |r| r.to(schedule::schedule),
    },
    Route {
        method: Method::GET,
        path: "/v1/metrics/service",
        kind: Kind::Api,
        handler: |r| r.to(service::service),
    },
    Route {
        method: Method::GET,
        path: "/v1/audit",
        kind: Kind::Api,
        handler: |r| r.to(audit::audit),
    },
    Route {
        method: Method::GET,
        path: "/v1/labels",
        kind: Kind::Api,
        handler: |r| r.to(labels::labels),
    },
    Route {
        method: Method::GET,
        path: "/",
        kind: Kind::Asset,
        handler: |r| r.to(dashboard::index),
    },
    Route {
        method: Method::GET,
        path: "/dashboard/app.js",
        kind: Kind::Asset,
        handler: |r| r.to(dashboard::app_js),
    },
    Route {
        method: Method::GET,
        path: "/dashboard/app.css",
        kind: Kind::Asset,
        handler: |r| r.to(dashboard::app_css),
    },
];

/// Registers every route of [`ROUTES`] (`App::configure`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for r in ROUTES {
        cfg.route(r.path, (r.handler)(web::route().method(r.method.clone())));
    }
}
