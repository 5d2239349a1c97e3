//! The query parameters of each list endpoint, as the OpenAPI document
//! describes them. The handlers parse their query with [`super::params`]
//! against their own list of names; a test below keeps each list and the
//! struct documenting it equal, so the document cannot offer a parameter
//! the handler refuses or hide one it takes.

// These structs are never built: they only carry the names, types and
// descriptions `utoipa::IntoParams` turns into the document.
#![allow(dead_code)]

use super::csv_out::Format;
use aftercase_sync::case::CaseKind;
use aftercase_sync::relay::metrics::GroupBy;
use utoipa::IntoParams;

/// `GET /v1/cases`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this store's cases (head office may name any store; others
    /// only their own, or the answer is 403).
    store: Option<String>,
    /// Only cases of this kind.
    #[param(inline)]
    kind: Option<CaseKind>,
    /// Only cases in this state (e.g. `reported`, `confirmed`).
    status: Option<String>,
    /// Only cases assigned to this user.
    assignee: Option<String>,
    /// The case with this number (STORE-DEVICE-SEQ).
    case_no: Option<String>,
    /// Cases with (true) or without (false) an open conflict.
    has_conflict: Option<bool>,
    /// Cases with (true) or without (false) offers awaiting approval.
    awaiting_approval: Option<bool>,
    /// Cases that missed (true) or did not miss (false) a deadline.
    breached: Option<bool>,
    /// Cases with an open deadline before this time (RFC 3339).
    #[param(format = DateTime)]
    due_before: Option<String>,
    /// Cases changed at or after this time (RFC 3339).
    #[param(format = DateTime)]
    updated_since: Option<String>,
    /// Cases opened at or after this time (RFC 3339).
    #[param(format = DateTime)]
    created_from: Option<String>,
    /// Cases opened before this time (RFC 3339).
    #[param(format = DateTime)]
    created_to: Option<String>,
    /// The `next` of the previous page: cases after this case id.
    #[param(format = "uuid")]
    after: Option<String>,
    /// Cases per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `csv` for CSV (the whole list, streamed, unless `limit` or `after`
    /// is given); `Accept: text/csv` asks for it too.
    #[param(inline)]
    format: Option<Format>,
}

/// `GET /v1/queues/conflicts` and `GET /v1/queues/approvals`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlagQueueQuery {
    /// Only this store's cases (403 for another store unless head office).
    store: Option<String>,
    /// Only cases of this kind.
    #[param(inline)]
    kind: Option<CaseKind>,
    /// The `next` of the previous page: cases after this case id.
    #[param(format = "uuid")]
    after: Option<String>,
    /// Cases per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `csv` for CSV (the whole queue, streamed, unless `limit` or `after`
    /// is given); `Accept: text/csv` asks for it too.
    #[param(inline)]
    format: Option<Format>,
}

/// `GET /v1/queues/overdue` and `GET /v1/queues/due-soon`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DueQueueQuery {
    /// Only this store's cases (403 for another store unless head office).
    store: Option<String>,
    /// The `next` of the previous page (`DUE_MS.CASE_ID`).
    after: Option<String>,
    /// Cases per page, 1 to 1000 (default 100; 1000 for CSV).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Due-soon window in hours, 1 to 720 (default 24); the overdue queue
    /// accepts and ignores it.
    #[param(minimum = 1, maximum = 720)]
    within_hours: Option<u32>,
    /// `csv` for CSV; `Accept: text/csv` asks for it too.
    #[param(inline)]
    format: Option<Format>,
}

/// `GET /v1/queues/devices`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQueueQuery {
    /// Only this store's devices (403 for another store unless head
    /// office).
    store: Option<String>,
    /// Only devices that have not synced for this many hours, 1 to 8760
    /// (never-synced devices always count).
    #[param(minimum = 1, maximum = 8760)]
    stale_hours: Option<u32>,
    /// `csv` for CSV; `Accept: text/csv` asks for it too.
    #[param(inline)]
    format: Option<Format>,
}

/// `GET /v1/metrics/service`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceQuery {
    /// Cases opened at or after this time (RFC 3339; default: the start
    /// of this month in the policy's time zone).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Cases opened before this time (RFC 3339; default: now). At most
    /// 366 days after `from`.
    #[param(format = DateTime)]
    to: Option<String>,
    /// How to group the cases (default `chain`: one group).
    #[param(inline)]
    group_by: Option<GroupBy>,
    /// Only this store's cases (403 for another store unless head office).
    store: Option<String>,
    /// Only cases of this kind.
    #[param(inline)]
    kind: Option<CaseKind>,
    /// `csv` for CSV (one row per group, then the total); `Accept:
    /// text/csv` asks for it too.
    #[param(inline)]
    format: Option<Format>,
}

/// `GET /v1/audit`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records received at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// The `next` of the previous page (wins over `since`).
    after: Option<String>,
    /// Only this store's records (403 for another store unless head
    /// office).
    store: Option<String>,
    /// Records per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `csv` for CSV; `Accept: text/csv` asks for it too.
    #[param(inline)]
    format: Option<Format>,
}

/// `GET /v1/schedule`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    /// Only this store's technicians (403 for another store unless head
    /// office).
    store: Option<String>,
    /// Only this technician (a technician may name only himself).
    tech: Option<String>,
    /// Bookings ending after this time (RFC 3339; default: now).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Bookings starting before this time (RFC 3339; default: 7 days
    /// after `from`; at most 62 days after it).
    #[param(format = DateTime)]
    to: Option<String>,
    /// `csv` for CSV; `Accept: text/csv` asks for it too.
    #[param(inline)]
    format: Option<Format>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::ParameterIn;

    fn names<P: IntoParams>() -> Vec<String> {
        let mut v: Vec<String> = P::into_params(|| Some(ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect();
        v.sort();
        v
    }

    /// What a handler accepts: its own list and `format`.
    fn accepted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.push("format".into());
        v.sort();
        v
    }

    #[test]
    fn the_documented_parameters_are_the_ones_each_handler_accepts() {
        assert_eq!(
            names::<ListQuery>(),
            accepted(super::super::cases::LIST_PARAMS)
        );
        assert_eq!(
            names::<FlagQueueQuery>(),
            accepted(super::super::queues::PARAMS)
        );
        assert_eq!(
            names::<DueQueueQuery>(),
            accepted(super::super::queues::DUE_PARAMS)
        );
        assert_eq!(
            names::<ScheduleQuery>(),
            accepted(super::super::schedule::PARAMS)
        );
        assert_eq!(
            names::<DeviceQueueQuery>(),
            accepted(super::super::queues::DEVICE_PARAMS)
        );
        assert_eq!(
            names::<ServiceQuery>(),
            accepted(super::super::service::PARAMS)
        );
        assert_eq!(names::<AuditQuery>(), accepted(super::super::audit::PARAMS));
    }
}
