//! Head office's service metrics (domain.md §6), computed from the read
//! model's summaries alone: no document is loaded, so a month of the
//! whole chain is one pass over memory.

use super::summary::CaseSummary;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

const HOUR: f64 = 3_600_000.0;
const DAY: i64 = 86_400_000;

/// How the cases of a period are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// The names `FromStr` reads, as the OpenAPI document lists them.
#[cfg_attr(feature = "openapi", schema(rename_all = "snake_case"))]
pub enum GroupBy {
    /// One group for everything.
    Chain,
    /// By owning store.
    Store,
    /// By case kind.
    Kind,
    /// By complaint category (`-` when none).
    Category,
    /// By SKU (a case with two SKUs counts in both).
    Sku,
    /// By calendar month of opening, in the store's time zone.
    Month,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<GroupBy, String> {
        Ok(match s {
            "chain" | "none" => GroupBy::Chain,
            "store" => GroupBy::Store,
            "kind" => GroupBy::Kind,
            "category" => GroupBy::Category,
            "sku" => GroupBy::Sku,
            "month" => GroupBy::Month,
            _ => {
                return Err(format!(
                    "\"{s}\" is not a grouping: use chain, store, kind, category, sku or month"
                ))
            }
        })
    }
}

/// What to compute.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Cases opened at or after this time, ms.
    pub from: i64,
    /// Cases opened before this time, ms.
    pub to: i64,
    /// Grouping.
    pub group_by: GroupBy,
    /// Same customer and category within this many days: a repeat complaint
    /// (and same customer and SKU: a repeat repair).
    pub repeat_window_days: i64,
    /// The store's offset from UTC, minutes (for months).
    pub utc_offset_minutes: i32,
    /// When the metrics are asked (open deadlines past it are breached).
    pub now: i64,
}

/// p50 and p90 of a duration, in hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Spread {
    /// How many durations.
    pub n: usize,
    /// Median, hours.
    pub p50_hours: Option<f64>,
    /// 90th percentile, hours.
    pub p90_hours: Option<f64>,
}

fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        // Nearest rank.
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some((v[rank - 1] * 10.0).round() / 10.0)
    };
    Spread {
        n: v.len(),
        p50_hours: at(0.5),
        p90_hours: at(0.9),
    }
}

fn rate(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| ((part as f64 / whole as f64) * 1000.0).round() / 1000.0)
}

/// Deadlines of one name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnTime {
    /// Met in time.
    pub met_on_time: usize,
    /// Met late.
    pub met_late: usize,
    /// Still open and already past due.
    pub open_overdue: usize,
    /// met_on_time / (met + open_overdue).
    pub on_time_rate: Option<f64>,
}

/// Survey answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Satisfaction {
    /// Surveys answered.
    pub responses: usize,
    /// Mean of all four scores, 1-5.
    pub mean: Option<f64>,
    /// Share of surveys whose mean is 4 or more.
    pub share_4_5: Option<f64>,
    /// Responses per resolved case.
    pub response_rate: Option<f64>,
}

/// The metrics of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupMetrics {
    /// The group's key (store, kind, category, SKU or YYYY-MM; `all`).
    pub key: String,
    /// Cases opened.
    pub cases: usize,
    /// Cases resolved (a final state other than cancelled).
    pub resolved: usize,
    /// Cancelled.
    pub cancelled: usize,
    /// Opening to the first move.
    pub response: Spread,
    /// Opening to resolution.
    pub resolution: Spread,
    /// Time spent in each state (left states only).
    pub time_in_state: BTreeMap<String, Spread>,
    /// Per deadline.
    pub on_time: BTreeMap<String, OnTime>,
    /// Surveys.
    pub satisfaction: Satisfaction,
    /// Complaints whose customer complained in the same category within
    /// the window before.
    pub repeat_complaints: usize,
    /// repeat_complaints / complaints with a known customer.
    pub repeat_complaint_rate: Option<f64>,
    /// Repairs reworked after a failed acceptance, or repaired again for
    /// the same customer and SKU within the window.
    pub re_repairs: usize,
    /// re_repairs / repairs.
    pub re_repair_rate: Option<f64>,
    /// Cases escalated beyond the store.
    pub escalated: usize,
    /// escalated / cases.
    pub escalation_rate: Option<f64>,
    /// Compensation granted by tier, fen.
    pub compensation_by_tier_fen: BTreeMap<String, i64>,
    /// Compensation granted by approver, fen.
    pub compensation_by_approver_fen: BTreeMap<String, i64>,
    /// Contact attempts made under a supervisor's override.
    pub contact_overrides: usize,
}

/// A SKU with repeated product-quality cases: flag for the manufacturer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QualitySku {
    /// The SKU.
    pub sku: String,
    /// Product-quality cases naming it in the period.
    pub cases: usize,
}

/// The metrics of a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The groups, by key.
    pub groups: Vec<GroupMetrics>,
    /// Everything together.
    pub total: GroupMetrics,
    /// SKUs with two or more product-quality cases, most first.
    pub quality_skus: Vec<QualitySku>,
}

#[derive(Default)]
struct Acc {
    m: GroupMetrics,
    response: Vec<f64>,
    resolution: Vec<f64>,
    states: BTreeMap<String, Vec<f64>>,
    scores: Vec<f64>,
    complaints_known: usize,
    repairs: usize,
}

impl Acc {
    fn add(&mut self, s: &CaseSummary, repeat: bool, re_repair: bool, now: i64) {
        let m = &mut self.m;
        m.cases += 1;
        let created = s.created_at.unwrap_or(s.updated_at);
        match s.status.as_deref() {
            Some("cancelled") => m.cancelled += 1,
            _ if s.resolved_at.is_some() => m.resolved += 1,
            _ => {}
        }
        if let Some((_, first)) = s.states.get(1) {
            self.response.push((first - created).max(0) as f64 / HOUR);
        }
        if let Some(r) = s.resolved_at {
            self.resolution.push((r - created).max(0) as f64 / HOUR);
        }
        for w in s.states.windows(2) {
            self.states
                .entry(w[0].0.clone())
                .or_default()
                .push((w[1].1 - w[0].1).max(0) as f64 / HOUR);
        }
        for (name, late) in &s.met {
            let t = m.on_time.entry(name.clone()).or_default();
            if *late {
                t.met_late += 1;
            } else {
                t.met_on_time += 1;
            }
        }
        for (name, due) in &s.open_timers {
            if *due < now {
                m.on_time.entry(name.clone()).or_default().open_overdue += 1;
            }
        }
        if let Some(sv) = &s.survey {
            let mean = sv.iter().map(|x| f64::from(*x)).sum::<f64>() / 4.0;
            self.scores.push(mean);
        }
        if s.kind == "complaint" && s.customer.is_some() {
            self.complaints_known += 1;
            m.repeat_complaints += usize::from(repeat);
        }
        if s.kind == "repair" {
            self.repairs += 1;
            m.re_repairs += usize::from(re_repair);
        }
        if s.escalation.as_deref().is_some_and(|e| e != "store") {
            m.escalated += 1;
        }
        for g in &s.granted {
            *m.compensation_by_tier_fen
                .entry(g.tier.clone())
                .or_default() += g.fen;
            *m.compensation_by_approver_fen
                .entry(g.approver.clone())
                .or_default() += g.fen;
        }
        m.contact_overrides += s.contact_overrides as usize;
    }

    fn finish(mut self) -> GroupMetrics {
        let m = &mut self.m;
        m.response = spread(self.response);
        m.resolution = spread(self.resolution);
        m.time_in_state = self
            .states
            .into_iter()
            .map(|(k, v)| (k, spread(v)))
            .collect();
        for t in m.on_time.values_mut() {
            t.on_time_rate = rate(t.met_on_time, t.met_on_time + t.met_late + t.open_overdue);
        }
        let n = self.scores.len();
        m.satisfaction = Satisfaction {
            responses: n,
            mean: (n > 0)
                .then(|| (self.scores.iter().sum::<f64>() / n as f64 * 100.0).round() / 100.0),
            share_4_5: rate(self.scores.iter().filter(|x| **x >= 4.0).count(), n),
            response_rate: rate(n, m.resolved),
        };
        m.repeat_complaint_rate = rate(m.repeat_complaints, self.complaints_known);
        m.re_repair_rate = rate(m.re_repairs, self.repairs);
        m.escalation_rate = rate(m.escalated, m.cases);
        self.m
    }
}

fn month(ms: i64, offset_minutes: i32) -> String {
    let local = ms + i64::from(offset_minutes) * 60_000;
    chrono::DateTime::from_timestamp_millis(local)
        .map(|t| t.format("%Y-%m").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Computes the metrics of the cases opened in `[p.from, p.to)` among
/// `cases` (which should also hold the window before `from`, so repeats
/// of cases opened just before the period are seen).
pub fn compute<'a>(cases: impl Iterator<Item = &'a CaseSummary>, p: &Params) -> Report {
    let window = p.repeat_window_days.max(0).saturating_mul(DAY);
    let all: Vec<&CaseSummary> = cases.collect();
    // Earlier cases of the same customer: (customer, category) for
    // complaints, (customer, sku) for repairs, with their opening times.
    let mut complaints: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    let mut repairs: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    for s in &all {
        let (Some(c), Some(t)) = (s.customer.as_deref(), s.created_at) else {
            continue;
        };
        if s.kind == "complaint" {
            let cat = s.category.as_deref().unwrap_or("-");
            complaints.entry((c, cat)).or_default().push(t);
        }
        if s.kind == "repair" {
            for sku in &s.skus {
                repairs.entry((c, sku.as_str())).or_default().push(t);
            }
        }
    }
    let earlier = |times: Option<&Vec<i64>>, t: i64| {
        times.is_some_and(|v| v.iter().any(|x| *x < t && t - *x <= window))
    };
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = Acc::default();
    let mut quality: BTreeMap<&str, usize> = BTreeMap::new();
    for s in all.iter().copied() {
        let Some(created) = s.created_at else {
            continue;
        };
        if created < p.from || created >= p.to {
            continue;
        }
        let cust = s.customer.as_deref();
        let repeat = s.kind == "complaint"
            && cust.is_some_and(|c| {
                let cat = s.category.as_deref().unwrap_or("-");
                earlier(complaints.get(&(c, cat)), created)
            });
        let re_repair = s.kind == "repair"
            && (s.reworks > 0
                || cust.is_some_and(|c| {
                    s.skus
                        .iter()
                        .any(|k| earlier(repairs.get(&(c, k.as_str())), created))
                }));
        if s.category.as_deref() == Some("product_quality") {
            for sku in &s.skus {
                *quality.entry(sku).or_default() += 1;
            }
        }
        total.add(s, repeat, re_repair, p.now);
        let keys: Vec<String> = match p.group_by {
            GroupBy::Chain => vec![],
            GroupBy::Store => vec![s.store.clone()],
            GroupBy::Kind => vec![s.kind.clone()],
            GroupBy::Category => vec![s.category.clone().unwrap_or_else(|| "-".into())],
            GroupBy::Sku if s.skus.is_empty() => vec!["-".into()],
            GroupBy::Sku => s.skus.clone(),
            GroupBy::Month => vec![month(created, p.utc_offset_minutes)],
        };
        for k in keys {
            groups
                .entry(k)
                .or_default()
                .add(s, repeat, re_repair, p.now);
        }
    }
    let mut quality_skus: Vec<QualitySku> = quality
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(sku, cases)| QualitySku {
            sku: sku.to_string(),
            cases,
        })
        .collect();
    quality_skus.sort_by(|a, b| b.cases.cmp(&a.cases).then(a.sku.cmp(&b.sku)));
    let mut total = total.finish();
    total.key = "all".into();
    Report {
        groups: groups
            .into_iter()
            .map(|(k, a)| {
                let mut g = a.finish();
                g.key = k;
                g
            })
            .collect(),
        total,
        quality_skus,
    }
}
