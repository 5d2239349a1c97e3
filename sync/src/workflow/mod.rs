//! The after-sales workflows: which moves each kind allows ([`table`]), the
//! status and conflicts derived from recorded moves ([`history`]), and who
//! may make which move ([`roles`]).

pub mod history;
pub mod roles;
pub mod table;

pub use history::{derive, Conflict, Resolution, Step, Workflow};
