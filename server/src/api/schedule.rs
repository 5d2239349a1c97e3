//! `GET /v1/schedule`: technicians' calendars for head office and
//! dispatchers, read from the read model (the active bookings of every
//! case of the store, with their scheduling conflicts). Scoped like the
//! case list; a technician sees only his own bookings.

use super::cases::{narrowed_scope, principal, read};
use super::csv_out::{self, Format};
use super::params::Params;
use crate::error::{clip, ApiError, ErrorBody};
use crate::state::now_millis;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::access::Role;
use aftercase_sync::Millis;
use serde::Serialize;
use utoipa::ToSchema;

/// Parameters this endpoint accepts besides `format`.
pub(crate) const PARAMS: &[&str] = &["store", "tech", "from", "to"];

/// Longest span one request may cover.
const MAX_SPAN_MS: i64 = 62 * 24 * 3_600_000;
/// Span when `to` is not given.
const DEFAULT_SPAN_MS: i64 = 7 * 24 * 3_600_000;

/// One active booking in a technician's calendar.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleRow {
    /// The technician or installer.
    pub tech: String,
    /// Start, RFC 3339.
    pub start: String,
    /// End, RFC 3339.
    pub end: String,
    /// The case.
    pub case_id: String,
    /// Its number.
    #[schema(required = true)]
    pub case_no: Option<String>,
    /// The owning store.
    pub store_id: String,
    /// repair or installation.
    pub kind: String,
    /// The case's state.
    #[schema(required = true)]
    pub status: Option<String>,
    /// The booking id within the case.
    pub booking: String,
    /// Ids of the open scheduling conflicts this booking is in.
    pub conflicts: Vec<String>,
    /// The cases it overlaps.
    pub conflicts_with: Vec<String>,
}

/// The answer of `GET /v1/schedule`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulePage {
    /// From, RFC 3339.
    pub from: String,
    /// To, RFC 3339.
    pub to: String,
    /// Active bookings overlapping the span, in start order.
    pub bookings: Vec<ScheduleRow>,
}

const COLUMNS: &[&str] = &[
    "tech",
    "start",
    "end",
    "case_id",
    "case_no",
    "store_id",
    "kind",
    "status",
    "booking",
    "conflicts",
    "conflicts_with",
];

/// Technicians' bookings.
///
/// `GET /v1/schedule`: the active bookings of a store's technicians (or
/// one technician's) overlapping `[from, to)`, each with the scheduling
/// conflicts it is in.
#[utoipa::path(
    get,
    path = "/v1/schedule",
    tag = "cases",
    params(super::query::ScheduleQuery),
    responses(
        (status = 200, description = "The bookings, or the same as CSV.", content(
            (SchedulePage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's schedule, or another technician's for a technician.", body = ErrorBody),
    )
)]
pub async fn schedule(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req, PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let p = principal(&req, &state)?;
    let store = params.store()?;
    let scope = narrowed_scope(&p, store.as_ref())?;
    let mut tech = params.string("tech");
    if p.role == Role::Technician {
        match &tech {
            Some(t) if t != p.user.as_str() => {
                return Err(ApiError::Forbidden(format!(
                    "a technician sees only his own schedule, not {}'s",
                    clip(t)
                )))
            }
            _ => tech = Some(p.user.to_string()),
        }
    }
    let from = params.time("from")?.unwrap_or(now_millis().0);
    let to = params.time("to")?.unwrap_or(from + DEFAULT_SPAN_MS);
    if to <= from || to - from > MAX_SPAN_MS {
        return Err(ApiError::BadRequest(
            "to must be after from, and at most 62 days after it".into(),
        ));
    }
    let store_name = store.map(|s| s.to_string());
    let rows = read(&state, move |m| {
        m.bookings_between(&scope, store_name.as_deref(), tech.as_deref(), from, to)
            .into_iter()
            .map(|(b, s)| {
                let conflicts: Vec<_> = m
                    .schedule_conflicts(b.case)
                    .iter()
                    .filter(|c| c.first.booking == b.booking || c.second.booking == b.booking)
                    .collect();
                ScheduleRow {
                    tech: b.tech.clone(),
                    start: Millis(b.start).to_rfc3339(),
                    end: Millis(b.end).to_rfc3339(),
                    case_id: b.case.to_string(),
                    case_no: s.case_no.clone(),
                    store_id: s.store.clone(),
                    kind: s.kind.clone(),
                    status: s.status.clone(),
                    booking: b.booking.clone(),
                    conflicts_with: conflicts
                        .iter()
                        .map(|c| c.other(b.case).to_string())
                        .collect(),
                    conflicts: conflicts.iter().map(|c| c.id.clone()).collect(),
                }
            })
            .collect::<Vec<_>>()
    })
    .await?;
    match format {
        Format::Csv => csv_out::whole(
            "schedule",
            COLUMNS,
            rows.into_iter()
                .map(|r| {
                    vec![
                        r.tech,
                        r.start,
                        r.end,
                        r.case_id,
                        r.case_no.unwrap_or_default(),
                        r.store_id,
                        r.kind,
                        r.status.unwrap_or_default(),
                        r.booking,
                        r.conflicts.join(" "),
                        r.conflicts_with.join(" "),
                    ]
                })
                .collect(),
        ),
        Format::Json => Ok(HttpResponse::Ok().json(SchedulePage {
            from: Millis(from).to_rfc3339(),
            to: Millis(to).to_rfc3339(),
            bookings: rows,
        })),
    }
}
