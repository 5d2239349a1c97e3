//! The head-office read API: cases, queues, metrics and the audit feed,
//! as JSON or CSV.

pub mod audit;
pub mod cases;
pub mod csv_out;
pub mod params;
pub mod queues;
pub mod rows;
pub mod service;
