//! The contact guard (domain.md §4, H1): outbound calls only in the day
//! window and at most a few per customer per day; beyond that a supervisor
//! must override, because harassment is itself a complaint category.

use crate::access::Role;
use crate::policy::Policy;
use chrono::{DateTime, FixedOffset, NaiveDate, Timelike};

/// Why a call needs an override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Outside the calling hours.
    OutsideHours {
        /// Local hour now.
        hour: u32,
        /// Window start.
        from: u32,
        /// Window end.
        until: u32,
    },
    /// The customer has been called enough today.
    TooManyCalls {
        /// Calls already made today.
        made: u32,
        /// The daily limit.
        limit: u32,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::OutsideHours { hour, from, until } => write!(
                f,
                "at {hour:02}:xx: customers are called only between {from:02}:00 and {until:02}:00"
            ),
            Warning::TooManyCalls { made, limit } => write!(
                f,
                "this customer was already called {made} times today (limit {limit})"
            ),
        }
    }
}

/// Local time under the policy's UTC offset.
pub fn local(p: &Policy, utc_millis: i64) -> Option<DateTime<FixedOffset>> {
    let tz = FixedOffset::east_opt(p.utc_offset_minutes * 60)?;
    DateTime::from_timestamp_millis(utc_millis).map(|t| t.with_timezone(&tz))
}

/// The local day of a time.
pub fn local_day(p: &Policy, utc_millis: i64) -> Option<NaiveDate> {
    local(p, utc_millis).map(|t| t.date_naive())
}

/// Checks a phone call at `now`, given the calls already made to the same
/// customer that local day. Returns the reasons it needs an override.
pub fn check_call(p: &Policy, now_millis: i64, calls_today: u32) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(t) = local(p, now_millis) {
        let hour = t.hour();
        if hour < p.call_window_start_hour || hour >= p.call_window_end_hour {
            out.push(Warning::OutsideHours {
                hour,
                from: p.call_window_start_hour,
                until: p.call_window_end_hour,
            });
        }
    }
    if calls_today >= p.max_calls_per_day {
        out.push(Warning::TooManyCalls {
            made: calls_today,
            limit: p.max_calls_per_day,
        });
    }
    out
}

/// Whether `role` may override the contact guard.
pub fn may_override(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::HeadOffice)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23 at `h:m` China time, in UTC milliseconds.
    fn at(h: u32, m: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
            - 8 * 3_600_000
    }

    #[test]
    fn hours_and_daily_limit() {
        let p = Policy::default();
        assert!(check_call(&p, at(10, 0), 0).is_empty());
        assert!(check_call(&p, at(17, 59), 2).is_empty());
        assert!(matches!(
            check_call(&p, at(9, 59), 0)[..],
            [Warning::OutsideHours { hour: 9, .. }]
        ));
        assert!(matches!(
            check_call(&p, at(18, 0), 0)[..],
            [Warning::OutsideHours { hour: 18, .. }]
        ));
        assert!(matches!(
            check_call(&p, at(12, 0), 3)[..],
            [Warning::TooManyCalls { made: 3, limit: 3 }]
        ));
        assert_eq!(check_call(&p, at(20, 0), 5).len(), 2);
        assert!(may_override(Role::Supervisor) && !may_override(Role::Staff));
    }
}
