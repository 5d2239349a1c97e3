//! `GET /v1/metrics/service`: the handbook's head-office metrics over a
//! period, grouped by store, kind, category, SKU or month, computed from
//! the read model (domain.md §6).

use super::cases::{blocking, narrowed_scope, principal, read};
use super::csv_out::{self, Format};
use super::params::Params;
use super::query::ServiceQuery;
use crate::error::{ApiError, ErrorBody};
use crate::state::{now_millis, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::case::CaseKind;
use aftercase_sync::relay::metrics::{self, GroupBy, GroupMetrics, QualitySku};
use aftercase_sync::relay::readmodel::Query;
use chrono::{Datelike, TimeZone};
use serde::Serialize;
use utoipa::ToSchema;

/// Parameters this endpoint accepts besides `format`.
pub(crate) const PARAMS: &[&str] = &["from", "to", "group_by", "store", "kind"];
const DAY: i64 = 86_400_000;

/// Start of the current month at the store's offset, in ms.
fn month_start(now: i64, offset_minutes: i32) -> i64 {
    let Some(tz) = chrono::FixedOffset::east_opt(offset_minutes * 60) else {
        return now;
    };
    let local = tz.timestamp_millis_opt(now).single();
    local
        .and_then(|t| {
            tz.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                .single()
        })
        .map_or(now, |t| t.timestamp_millis())
}

/// CSV columns of a metrics row.
const COLUMNS: &[&str] = &[
    "group",
    "cases",
    "resolved",
    "cancelled",
    "response_p50_hours",
    "response_p90_hours",
    "resolution_p50_hours",
    "resolution_p90_hours",
    "deadlines_met_on_time",
    "deadlines_met_late",
    "deadlines_open_overdue",
    "satisfaction_mean",
    "satisfaction_share_4_5",
    "survey_response_rate",
    "repeat_complaint_rate",
    "re_repair_rate",
    "escalation_rate",
    "compensation_virtual_fen",
    "compensation_cash_fen",
    "contact_overrides",
];

fn row(g: &GroupMetrics) -> Vec<String> {
    let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let sum = |pick: fn(&metrics::OnTime) -> usize| -> String {
        g.on_time.values().map(pick).sum::<usize>().to_string()
    };
    vec![
        g.key.clone(),
        g.cases.to_string(),
        g.resolved.to_string(),
        g.cancelled.to_string(),
        f(g.response.p50_hours),
        f(g.response.p90_hours),
        f(g.resolution.p50_hours),
        f(g.resolution.p90_hours),
        sum(|t| t.met_on_time),
        sum(|t| t.met_late),
        sum(|t| t.open_overdue),
        f(g.satisfaction.mean),
        f(g.satisfaction.share_4_5),
        f(g.satisfaction.response_rate),
        f(g.repeat_complaint_rate),
        f(g.re_repair_rate),
        f(g.escalation_rate),
        g.compensation_by_tier_fen
            .get("virtual")
            .copied()
            .unwrap_or(0)
            .to_string(),
        g.compensation_by_tier_fen
            .get("cash")
            .copied()
            .unwrap_or(0)
            .to_string(),
        g.contact_overrides.to_string(),
    ]
}

/// The answer of `GET /v1/metrics/service`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceReport {
    /// Start of the period, RFC 3339.
    pub from: String,
    /// End of the period (exclusive), RFC 3339.
    pub to: String,
    /// The grouping asked for.
    pub group_by: String,
    /// Days within which a complaint counts as a repeat (policy).
    pub repeat_window_days: i64,
    /// One entry per group.
    pub groups: Vec<GroupMetrics>,
    /// All groups together.
    pub total: GroupMetrics,
    /// SKUs with the most quality cases.
    pub quality_skus: Vec<QualitySku>,
}

/// Service metrics over a period.
///
/// `GET /v1/metrics/service?from=&to=&group_by=&store=&kind=`: cases
/// opened in `[from, to)` (this month in the store's time zone unless
/// given; at most 366 days), scoped like the case list.
#[utoipa::path(
    get,
    path = "/v1/metrics/service",
    tag = "metrics",
    params(ServiceQuery),
    responses(
        (status = 200, description = "The metrics per group and in total, or as CSV (the total last).", content(
            (ServiceReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown parameter, a bad value or a bad period, named.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Another store's metrics asked for by a store's token.", body = ErrorBody),
    )
)]
pub async fn service(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let params = Params::parse(&req, PARAMS)?;
    let format = Format::of(&req, params.get("format"))?;
    let scope = narrowed_scope(&p, params.store()?.as_ref())?;
    let group_by: GroupBy = params
        .parsed("group_by", "chain, store, kind, category, sku or month")?
        .unwrap_or(GroupBy::Chain);
    let kind = params
        .parsed::<CaseKind>("kind", "a case kind")?
        .map(|k| k.as_str().to_string());
    // The policy's window and time zone; its lock is held for a copy only.
    let (window, offset) = blocking(&state, |s| {
        let relay = s.relay();
        let p = relay.policy().0;
        Ok((p.repeat_window_days, p.utc_offset_minutes))
    })
    .await?;
    let now = now_millis().0;
    let from = params
        .time("from")?
        .unwrap_or_else(|| month_start(now, offset));
    let to = params.time("to")?.unwrap_or(now + 1);
    if to <= from || to - from > 366 * DAY {
        return Err(ApiError::BadRequest(
            "from and to: the period must be positive and at most 366 days".into(),
        ));
    }
    let q = Query {
        kind,
        // Cases opened within the repeat window before the period count
        // as earlier contacts of the same customer.
        created_from: Some(from.saturating_sub(window.saturating_mul(DAY))),
        created_to: Some(to),
        ..Query::default()
    };
    let mp = metrics::Params {
        from,
        to,
        group_by,
        repeat_window_days: window,
        utc_offset_minutes: offset,
        now,
    };
    let report = read(&state, move |m| {
        metrics::compute(m.scan(&scope, &q, now).map(|(_, s)| s), &mp)
    })
    .await?;
    match format {
        Format::Csv => {
            let mut body: Vec<Vec<String>> = report.groups.iter().map(row).collect();
            body.push(row(&report.total));
            csv_out::whole("metrics", COLUMNS, body)
        }
        Format::Json => Ok(HttpResponse::Ok().json(ServiceReport {
            from: aftercase_sync::Millis(from).to_rfc3339(),
            to: aftercase_sync::Millis(to).to_rfc3339(),
            group_by: params.get("group_by").unwrap_or("chain").to_string(),
            repeat_window_days: window,
            groups: report.groups,
            total: report.total,
            quality_skus: report.quality_skus,
        })),
    }
}
