//! The head-office read API: cases, queues, metrics and the audit feed,
//! as JSON or CSV. `routes.rs` is the table of every route, `openapi.rs`
//! the OpenAPI 3.1 document derived from the handlers.

pub mod audit;
pub mod cases;
pub mod csv_out;
pub mod erasure;
pub mod evidence;
pub mod labels;
pub mod openapi;
pub mod params;
pub mod query;
pub mod queues;
pub mod routes;
pub mod rows;
pub mod schedule;
pub mod service;
pub mod soundness;
