//! Policy as versioned data: limits, windows and service targets that head
//! office may change (domain.md §3-§6). The defaults are the handbook's
//! figures where it gives one and product decisions where it does not.
//! Every decision that used a policy records its version.

use serde::{Deserialize, Serialize};

/// The policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Increases with every published change.
    pub version: u32,
    /// Staff may grant virtual compensation (coupons, points) up to this, in fen.
    pub staff_virtual_limit_fen: i64,
    /// Staff may grant cash compensation up to this, in fen (0: never).
    pub staff_cash_limit_fen: i64,
    /// A supervisor may approve up to this, in fen; above it, head office.
    pub supervisor_limit_fen: i64,
    /// A return request must be reviewed within this many hours.
    pub return_review_hours: i64,
    /// Refund due within this many days of receiving the returned goods.
    pub refund_days: i64,
    /// While waiting on another department, the customer hears from us at
    /// least this often (hours).
    pub customer_update_hours: i64,
    /// First response to a complaint (hours).
    pub first_response_hours: i64,
    /// Reply to a complaint (hours).
    pub complaint_reply_hours: i64,
    /// Unresolved for this many days: suggest escalation.
    pub escalate_after_days: i64,
    /// Follow-up survey within this many days of acceptance or closing.
    pub survey_within_days: i64,
    /// Outbound calls allowed from this local hour...
    pub call_window_start_hour: u32,
    /// ...until this local hour.
    pub call_window_end_hour: u32,
    /// At most this many calls per customer per local day.
    pub max_calls_per_day: u32,
    /// Local time offset from UTC in minutes (China: 480).
    pub utc_offset_minutes: i32,
    /// 三包: days after sale in which a performance fault gives a return.
    pub sanbao_return_days: i64,
    /// 三包: days after sale in which a performance fault gives an exchange.
    pub sanbao_exchange_days: i64,
    /// 三包: still faulty after this many repairs in warranty gives exchange or return.
    pub sanbao_max_repairs: u32,
    /// Days of the 7-day no-reason return.
    pub no_reason_days: i64,
    /// When the no-reason window starts for in-store sales: "purchase"
    /// (handbook: from purchase, inclusive) or "day_after_receipt".
    pub no_reason_start: String,
    /// A device time more than this many minutes ahead of the relay is not
    /// believed: the relay judges the entry at its own receipt time.
    #[serde(default = "default_skew")]
    pub max_clock_skew_minutes: i64,
    /// A device time older than this many hours before receipt is not
    /// believed either (no tablet stays offline longer).
    #[serde(default = "default_offline")]
    pub max_offline_hours: i64,
    /// Most bytes one case may take at the relay (half a frame at most, so
    /// every case fits in one frame).
    #[serde(default = "default_case_bytes")]
    pub max_case_bytes: usize,
    /// Most bytes of one uploaded change.
    #[serde(default = "default_change_bytes")]
    pub max_change_bytes: usize,
    /// Most entries (timeline, contacts, moves, offers...) in one case.
    #[serde(default = "default_entries")]
    pub max_entries_per_case: usize,
    /// A complaint by the same customer in the same category within this
    /// many days counts as a repeat complaint (and a repair of the same
    /// customer's SKU as a re-repair) in head office's metrics.
    #[serde(default = "default_repeat_window")]
    pub repeat_window_days: i64,
    /// Largest piece of evidence (photo, video, document), in bytes.
    #[serde(default = "default_blob_bytes")]
    pub max_blob_bytes: u64,
    /// Whether accepting a repair or installation needs the customer's
    /// signature as evidence.
    #[serde(default)]
    pub signature_on_acceptance: bool,
    /// Most bytes of evidence a device keeps. Evidence the relay holds is
    /// evicted oldest first beyond it and fetched again when needed;
    /// evidence not uploaded yet is never evicted.
    #[serde(default = "default_device_cache")]
    pub device_cache_bytes: u64,
    /// 三包: the warranty period in days from the purchase date, in which
    /// repairs of one serial number are counted towards
    /// `sanbao_max_repairs`.
    #[serde(default = "default_warranty_days")]
    pub warranty_days: i64,
    /// The technicians and installers who may be booked, each with the
    /// store they work for and their working hours (issue 12). A person
    /// not listed here cannot be booked; an empty list (the default) means
    /// no bookings until head office publishes one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub technicians: Vec<TechnicianHours>,
    /// Retention (PIPL): erase the customer's personal data this many days
    /// after a case is closed (in a final state, cancelled included); the
    /// relay does it by itself. 0, the default, keeps it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub erase_personal_data_after_days: u32,
}

fn default_warranty_days() -> i64 {
    365
}

/// One bookable technician: store, working hours and days off, in the
/// store's local time (`utc_offset_minutes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TechnicianHours {
    /// The technician's user id (as in their token).
    pub user: String,
    /// The store they work for; only that store's cases may book them.
    pub store: String,
    /// Start of the working day, local `HH:MM`.
    pub start: String,
    /// End of the working day, local `HH:MM` (a booking must end by then).
    pub end: String,
    /// Working weekdays, 1 (Monday) to 7 (Sunday).
    #[serde(default = "default_workdays")]
    pub days: Vec<u8>,
    /// Dates off, `YYYY-MM-DD`, local.
    #[serde(default)]
    pub days_off: Vec<String>,
}

fn default_workdays() -> Vec<u8> {
    vec![1, 2, 3, 4, 5, 6]
}

impl TechnicianHours {
    /// The working day as minutes after local midnight, if both times parse.
    pub fn minutes(&self) -> Option<(u32, u32)> {
        Some((hhmm(&self.start)?, hhmm(&self.end)?))
    }
}

/// Minutes after midnight of a `HH:MM` time (24:00 allowed as the end of day).
pub fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

fn default_device_cache() -> u64 {
    2 << 30
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_blob_bytes() -> u64 {
    50 * 1024 * 1024
}

fn default_repeat_window() -> i64 {
    30
}

fn default_skew() -> i64 {
    10
}
fn default_offline() -> i64 {
    72
}
fn default_case_bytes() -> usize {
    4 << 20
}
fn default_change_bytes() -> usize {
    512 << 10
}
fn default_entries() -> usize {
    5_000
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: 1,
            staff_virtual_limit_fen: 5_000,
            staff_cash_limit_fen: 0,
            supervisor_limit_fen: 50_000,
            return_review_hours: 24,
            refund_days: 7,
            customer_update_hours: 24,
            first_response_hours: 2,
            complaint_reply_hours: 48,
            escalate_after_days: 15,
            survey_within_days: 3,
            call_window_start_hour: 10,
            call_window_end_hour: 18,
            max_calls_per_day: 3,
            utc_offset_minutes: 480,
            sanbao_return_days: 7,
            sanbao_exchange_days: 15,
            sanbao_max_repairs: 2,
            no_reason_days: 7,
            no_reason_start: "purchase".into(),
            max_clock_skew_minutes: default_skew(),
            max_offline_hours: default_offline(),
            max_case_bytes: default_case_bytes(),
            max_change_bytes: default_change_bytes(),
            max_entries_per_case: default_entries(),
            repeat_window_days: default_repeat_window(),
            max_blob_bytes: default_blob_bytes(),
            device_cache_bytes: default_device_cache(),
            warranty_days: default_warranty_days(),
            signature_on_acceptance: false,
            technicians: Vec::new(),
            erase_personal_data_after_days: 0,
        }
    }
}

/// A policy value that is not acceptable; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy field {field}: {problem}")]
pub struct PolicyError {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn bad(field: &str, problem: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Policy {
    /// Parses and checks a policy published as JSON. Unknown or missing
    /// fields and out-of-range values are refused with the field's name.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = serde_json::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("(document)").to_string();
            bad(&field, msg)
        })?;
        p.check()?;
        Ok(p)
    }

    /// Checks ranges and consistency.
    pub fn check(&self) -> Result<(), PolicyError> {
        let non_negative = [
            ("staff_virtual_limit_fen", self.staff_virtual_limit_fen),
            ("staff_cash_limit_fen", self.staff_cash_limit_fen),
            ("supervisor_limit_fen", self.supervisor_limit_fen),
        ];
        for (f, v) in non_negative {
            if v < 0 {
                return Err(bad(f, "must not be negative"));
            }
        }
        if !(1..=24 * 60).contains(&self.max_clock_skew_minutes) {
            return Err(bad("max_clock_skew_minutes", "must be 1 to 1440"));
        }
        if !(1..=24 * 90).contains(&self.max_offline_hours) {
            return Err(bad("max_offline_hours", "must be 1 to 2160 (90 days)"));
        }
        let half_frame = crate::protocol::MAX_FRAME_BYTES / 2;
        if !(64 << 10..=half_frame).contains(&self.max_case_bytes) {
            return Err(bad(
                "max_case_bytes",
                format!("must be 65536 to {half_frame}, so every case fits in one frame"),
            ));
        }
        if !(4 << 10..=self.max_case_bytes).contains(&self.max_change_bytes) {
            return Err(bad("max_change_bytes", "must be 4096 to max_case_bytes"));
        }
        if !(100..=1_000_000).contains(&self.max_entries_per_case) {
            return Err(bad("max_entries_per_case", "must be 100 to 1000000"));
        }
        if !(1..=365).contains(&self.repeat_window_days) {
            return Err(bad("repeat_window_days", "must be 1 to 365"));
        }
        if !(1024..=1 << 30).contains(&self.max_blob_bytes) {
            return Err(bad("max_blob_bytes", "must be 1 KiB to 1 GiB"));
        }
        if self.erase_personal_data_after_days > 36_500 {
            return Err(bad(
                "erase_personal_data_after_days",
                "must be 0 (keep) to 36500 days",
            ));
        }
        if !(1 << 20..=1 << 40).contains(&self.device_cache_bytes) {
            return Err(bad("device_cache_bytes", "must be 1 MiB to 1 TiB"));
        }
        if self.supervisor_limit_fen < self.staff_virtual_limit_fen.max(self.staff_cash_limit_fen) {
            return Err(bad(
                "supervisor_limit_fen",
                "must be at least the staff limits",
            ));
        }
        let positive = [
            ("return_review_hours", self.return_review_hours),
            ("refund_days", self.refund_days),
            ("customer_update_hours", self.customer_update_hours),
            ("first_response_hours", self.first_response_hours),
            ("complaint_reply_hours", self.complaint_reply_hours),
            ("escalate_after_days", self.escalate_after_days),
            ("survey_within_days", self.survey_within_days),
            ("sanbao_return_days", self.sanbao_return_days),
            ("sanbao_exchange_days", self.sanbao_exchange_days),
            ("no_reason_days", self.no_reason_days),
            ("warranty_days", self.warranty_days),
        ];
        for (f, v) in positive {
            if v <= 0 {
                return Err(bad(f, "must be at least 1"));
            }
        }
        if self.version == 0 {
            return Err(bad("version", "must be at least 1"));
        }
        if self.call_window_start_hour >= self.call_window_end_hour
            || self.call_window_end_hour > 24
        {
            return Err(bad(
                "call_window_end_hour",
                "must be after call_window_start_hour and at most 24",
            ));
        }
        if self.max_calls_per_day == 0 {
            return Err(bad("max_calls_per_day", "must be at least 1"));
        }
        if self.sanbao_exchange_days < self.sanbao_return_days {
            return Err(bad(
                "sanbao_exchange_days",
                "must be at least sanbao_return_days",
            ));
        }
        if !(-720..=840).contains(&self.utc_offset_minutes) {
            return Err(bad("utc_offset_minutes", "must be between -720 and 840"));
        }
        self.check_technicians()?;
        if !matches!(
            self.no_reason_start.as_str(),
            "purchase" | "day_after_receipt"
        ) {
            return Err(bad(
                "no_reason_start",
                "must be purchase or day_after_receipt",
            ));
        }
        Ok(())
    }
}

impl Policy {
    /// The bookable technician `user`, if the policy lists them.
    pub fn technician(&self, user: &str) -> Option<&TechnicianHours> {
        self.technicians.iter().find(|t| t.user == user)
    }

    fn check_technicians(&self) -> Result<(), PolicyError> {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.technicians.iter().enumerate() {
            let f = |name: &str| format!("technicians[{i}].{name}");
            if crate::ids::UserId::new(t.user.as_str()).is_err() {
                return Err(bad(
                    &f("user"),
                    "must be a user id (1-64 of A-Z a-z 0-9 . _ -)",
                ));
            }
            if !seen.insert(t.user.as_str()) {
                return Err(bad(
                    &f("user"),
                    format!(
                        "{} is listed twice: a technician works for one store",
                        t.user
                    ),
                ));
            }
            if crate::ids::StoreId::new(t.store.as_str()).is_err() {
                return Err(bad(&f("store"), "must be a store id"));
            }
            let start = hhmm(&t.start).filter(|m| *m < 24 * 60).ok_or_else(|| {
                bad(
                    &f("start"),
                    format!("{:?} is not a time like 09:00", t.start),
                )
            })?;
            let end = hhmm(&t.end)
                .ok_or_else(|| bad(&f("end"), format!("{:?} is not a time like 18:00", t.end)))?;
            if end <= start {
                return Err(bad(
                    &f("end"),
                    format!("{} must be after start {}", t.end, t.start),
                ));
            }
            if t.days.is_empty() || t.days.iter().any(|d| !(1..=7).contains(d)) {
                return Err(bad(
                    &f("days"),
                    "must list working weekdays, 1 (Monday) to 7 (Sunday)",
                ));
            }
            for d in &t.days_off {
                if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                    return Err(bad(
                        &f("days_off"),
                        format!("{d:?} is not a date like 2026-12-25"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_field() {
        Policy::default().check().unwrap();
        let p = Policy {
            max_calls_per_day: 0,
            ..Policy::default()
        };
        assert_eq!(p.check().unwrap_err().field, "max_calls_per_day");
        let json = serde_json::to_string(&Policy::default()).unwrap();
        let broken = json.replace("\"refund_days\":7", "\"refund_days\":-1");
        assert_eq!(Policy::from_json(&broken).unwrap_err().field, "refund_days");
        let typo = json.replace("\"refund_days\"", "\"refund_dayz\"");
        let e = Policy::from_json(&typo).unwrap_err();
        assert!(e.to_string().contains("refund_dayz"), "{e}");
        let wrong_type = json.replace("\"refund_days\":7", "\"refund_days\":\"seven\"");
        assert!(Policy::from_json(&wrong_type).is_err());
    }

    #[test]
    fn technicians_hours_are_checked_with_the_field_named() {
        let tom = TechnicianHours {
            user: "tom".into(),
            store: "S1".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![1, 2, 3, 4, 5],
            days_off: vec!["2026-12-25".into()],
        };
        let ok = Policy {
            technicians: vec![tom.clone()],
            ..Policy::default()
        };
        ok.check().unwrap();
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(Policy::from_json(&json).unwrap(), ok);
        // A policy without technicians serializes as before.
        assert!(!serde_json::to_string(&Policy::default())
            .unwrap()
            .contains("technicians"));
        let cases = [
            (
                TechnicianHours {
                    start: "9am".into(),
                    ..tom.clone()
                },
                "technicians[0].start",
            ),
            (
                TechnicianHours {
                    end: "08:00".into(),
                    ..tom.clone()
                },
                "technicians[0].end",
            ),
            (
                TechnicianHours {
                    end: "24:30".into(),
                    ..tom.clone()
                },
                "technicians[0].end",
            ),
            (
                TechnicianHours {
                    days: vec![0],
                    ..tom.clone()
                },
                "technicians[0].days",
            ),
            (
                TechnicianHours {
                    days: vec![],
                    ..tom.clone()
                },
                "technicians[0].days",
            ),
            (
                TechnicianHours {
                    days_off: vec!["25/12".into()],
                    ..tom.clone()
                },
                "technicians[0].days_off",
            ),
            (
                TechnicianHours {
                    user: "t o m".into(),
                    ..tom.clone()
                },
                "technicians[0].user",
            ),
            (
                TechnicianHours {
                    store: "".into(),
                    ..tom.clone()
                },
                "technicians[0].store",
            ),
        ];
        for (t, field) in cases {
            let p = Policy {
                technicians: vec![t],
                ..Policy::default()
            };
            assert_eq!(p.check().unwrap_err().field, field);
        }
        let twice = Policy {
            technicians: vec![
                tom.clone(),
                TechnicianHours {
                    store: "S2".into(),
                    ..tom
                },
            ],
            ..Policy::default()
        };
        let e = twice.check().unwrap_err();
        assert_eq!(e.field, "technicians[1].user");
        assert!(e.to_string().contains("one store"), "{e}");
    }
}
