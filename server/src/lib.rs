//! `aftercase-relay`: the authenticated sync relay and head-office read API.
//!
//! Typical workflow: [`config::ServeConfig`] is parsed from the command line,
//! [`secret::load_or_create`] finds the signing key, [`app::run`] opens the
//! sled store and serves `GET /v1/sync` (WebSocket), `GET /v1/cases`,
//! `GET /v1/cases/{id}`, `GET /v1/cases/{id}/doc`, the queues, metrics and
//! audit feed, `GET /v1/labels`, `GET /healthz`, `GET /metrics` ([`metrics`], for
//! Prometheus) and head office's dashboard at `/` (static files compiled
//! in, see `dashboard`), every route from one table (`api/routes.rs`), with the API
//! described as OpenAPI 3.1 at `GET /v1/openapi.json`.
//! Every request and every connection is authenticated by [`auth`]; what a
//! principal may see is decided by `aftercase_sync::access` from relay-side
//! metadata. The sync protocol itself lives in `aftercase_sync`; this crate
//! only moves its frames between sockets and the core.
//!
//! Every HTTP request is logged once, with its route pattern and verified
//! principal, by the `access_log` middleware. SIGTERM or Ctrl-C stops the
//! relay cleanly ([`app::run`]): live connections are closed with "going
//! away" and storage is flushed.
//!
//! Operators revoke devices, users or tokens with [`revoke::write`] (the
//! `revoke` command), which the running relay picks up within a second.

mod access_log;
pub mod alloc;
mod api;
pub mod app;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
mod core_pool;
mod dashboard;
mod error;
mod follow;
mod health;
mod limits;
pub mod logging;
pub mod metrics;
mod ops;
pub mod pg_storage;
mod refresh;
mod retention;
pub mod revoke;
pub mod secret;
mod state;
pub mod upstream;
mod watermark;
mod ws;

pub use error::ApiError;
