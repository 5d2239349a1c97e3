//! The handbook's rules as pure functions of facts, policy and time
//! (domain.md §4-§6): who pays freight, which remedies 三包 and the 7-day
//! no-reason return allow, whether a call may be made now, and the
//! deadlines every case carries.

pub mod calendar;
pub mod contact;
pub mod freight;
pub mod timers;
pub mod warranty;
