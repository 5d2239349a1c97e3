//! A technician's calendar, derived and never stored (issue 12): working
//! hours from the policy, and the active bookings of every case that
//! names him. Two active bookings of one technician that overlap are a
//! scheduling conflict. The conflict is a pure function of the set of
//! bookings, so any two replicas holding the same cases derive the same
//! conflicts with the same ids, and it closes by itself when one of the
//! bookings is moved, cancelled or its case cancelled. Nothing here drops
//! or moves a booking.

use crate::case::booking::BookingView;
use crate::ids::{CaseId, Millis};
use crate::policy::{Policy, TechnicianHours};
use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One active booking placed in a technician's calendar.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Placed {
    /// The technician.
    pub tech: String,
    /// Start, ms.
    pub start: i64,
    /// End, ms (exclusive).
    pub end: i64,
    /// The case.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub case: CaseId,
    /// The booking id within the case.
    pub booking: String,
}

/// The active bookings of a case, placed.
pub fn placed(case: CaseId, bookings: &[BookingView]) -> Vec<Placed> {
    bookings
        .iter()
        .filter(|b| b.status.is_active())
        .map(|b| Placed {
            tech: b.tech.clone(),
            start: b.start_ms,
            end: b.end_ms(),
            case,
            booking: b.id.clone(),
        })
        .collect()
}

/// Two bookings of one technician that overlap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleConflict {
    /// Stable id: both bookings, in order.
    pub id: String,
    /// The technician.
    pub tech: String,
    /// The earlier-starting booking (then by case and booking id).
    pub first: Placed,
    /// The other one.
    pub second: Placed,
    /// Start of the overlap, RFC 3339.
    pub from: String,
    /// End of the overlap, RFC 3339.
    pub until: String,
}

impl ScheduleConflict {
    /// Whether the conflict involves `case`.
    pub fn involves(&self, case: CaseId) -> bool {
        self.first.case == case || self.second.case == case
    }

    /// The case on the other side from `case`.
    pub fn other(&self, case: CaseId) -> CaseId {
        if self.first.case == case {
            self.second.case
        } else {
            self.first.case
        }
    }
}

/// Every pair of overlapping bookings in `slots`, per technician, sorted.
/// Runs in O(n log n + conflicts).
pub fn conflicts(slots: &[Placed]) -> Vec<ScheduleConflict> {
    let mut by_tech: BTreeMap<&str, Vec<&Placed>> = BTreeMap::new();
    for s in slots {
        by_tech.entry(s.tech.as_str()).or_default().push(s);
    }
    let mut out = Vec::new();
    for list in by_tech.values_mut() {
        list.sort();
        list.dedup();
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if b.start >= a.end {
                    break;
                }
                if b.end > a.start {
                    out.push(conflict(a, b));
                }
            }
        }
    }
    out.sort();
    out
}

fn conflict(a: &Placed, b: &Placed) -> ScheduleConflict {
    ScheduleConflict {
        id: format!("schedule:{}:{}", a.booking, b.booking),
        tech: a.tech.clone(),
        from: Millis(a.start.max(b.start)).to_rfc3339(),
        until: Millis(a.end.min(b.end)).to_rfc3339(),
        first: a.clone(),
        second: b.clone(),
    }
}

/// The bookings in `slots` that overlap `[start, end)` for `tech`,
/// ignoring `except` (the booking being moved).
pub fn overlapping<'a>(
    slots: &'a [Placed],
    tech: &str,
    start: i64,
    end: i64,
    except: Option<&str>,
) -> Vec<&'a Placed> {
    slots
        .iter()
        .filter(|s| s.tech == tech && s.start < end && start < s.end)
        .filter(|s| except != Some(s.booking.as_str()))
        .collect()
}

fn tz(p: &Policy) -> Option<chrono::FixedOffset> {
    chrono::FixedOffset::east_opt(p.utc_offset_minutes * 60)
}

/// Why `[start, end)` is outside `t`'s working hours, naming them; `None`
/// when inside. Times are in the store's zone (the policy's offset).
pub fn outside_hours(p: &Policy, t: &TechnicianHours, start: i64, end: i64) -> Option<String> {
    let (from, until) = t.minutes()?;
    let hours = format!(
        "{} works {}, {} to {}",
        t.user,
        weekdays(&t.days),
        t.start,
        t.end
    );
    let (Some(s), Some(e)) = (
        crate::rules::contact::local(p, start),
        crate::rules::contact::local(p, end.saturating_sub(1)),
    ) else {
        return Some(format!("the time is out of range; {hours}"));
    };
    let day = s.date_naive();
    if e.date_naive() != day {
        return Some(format!("the booking runs past midnight; {hours}"));
    }
    let weekday = u8::try_from(day.weekday().number_from_monday()).unwrap_or(0);
    if !t.days.contains(&weekday) {
        return Some(format!("{day} is a {}: {hours}", day.weekday()));
    }
    if t.days_off.iter().any(|d| d == &day.to_string()) {
        return Some(format!("{day} is a day off for {}: {hours}", t.user));
    }
    let s_min = s.hour() * 60 + s.minute();
    let e_min = s_min + u32::try_from((end - start).div_euclid(60_000)).unwrap_or(u32::MAX);
    if s_min < from || e_min > until {
        return Some(format!(
            "{}-{} is outside working hours {}-{} ({hours})",
            hm(s_min),
            hm(e_min.min(24 * 60)),
            t.start,
            t.end
        ));
    }
    None
}

fn hm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn weekdays(days: &[u8]) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut d: Vec<u8> = days.to_vec();
    d.sort_unstable();
    d.dedup();
    d.iter()
        .filter_map(|n| NAMES.get(usize::from(n.saturating_sub(1))))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a local time `YYYY-MM-DD HH:MM` in the store's zone into ms.
pub fn parse_local(p: &Policy, text: &str) -> Result<Millis, String> {
    let t = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M")
        .map_err(|_| format!("{text:?} is not a local time like \"2026-12-08 10:00\""))?;
    let zone = tz(p).ok_or("the policy's time zone is out of range")?;
    zone.from_local_datetime(&t)
        .single()
        .map(|d| Millis(d.timestamp_millis()))
        .ok_or_else(|| format!("{text:?} does not exist in the store's time zone"))
}

/// Parses a local date `YYYY-MM-DD` into the ms range of that day in the
/// store's zone.
pub fn local_day_range(p: &Policy, text: &str) -> Result<(Millis, Millis), String> {
    let d = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date like 2026-12-08"))?;
    let start = parse_local(p, &format!("{d} 00:00"))?;
    Ok((start, Millis(start.0 + 24 * 3_600_000)))
}

/// Formats ms as local `YYYY-MM-DD HH:MM` in the store's zone.
pub fn format_local(p: &Policy, ms: i64) -> String {
    crate::rules::contact::local(p, ms)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| Millis(ms).to_rfc3339())
}

/// Parses a length like `90m`, `1h30m` or `2h` into minutes.
pub fn parse_minutes(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a length like 90m, 2h or 1h30m");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'h' | 'm' => {
                let n: i64 = num.parse().map_err(|_| bad())?;
                num.clear();
                total = total
                    .checked_add(if c == 'h' { n * 60 } else { n })
                    .ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(tech: &str, case: u8, start: i64, end: i64) -> Placed {
        Placed {
            tech: tech.into(),
            start,
            end,
            case: CaseId::from_random_bytes([case; 16]),
            booking: format!("b{case}"),
        }
    }

    #[test]
    fn overlaps_of_one_technician_are_conflicts_and_touching_is_not() {
        let slots = vec![
            p("tom", 1, 0, 90),
            p("tom", 2, 60, 120),
            p("tom", 3, 120, 180),
            p("jerry", 4, 0, 200),
            p("tom", 5, 10, 20),
        ];
        let c = conflicts(&slots);
        let pairs: Vec<(String, String)> = c
            .iter()
            .map(|c| (c.first.booking.clone(), c.second.booking.clone()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("b1".to_string(), "b2".to_string()),
                ("b1".into(), "b5".into())
            ]
        );
        // The same set in another order gives the same conflicts.
        let mut rev = slots.clone();
        rev.reverse();
        assert_eq!(conflicts(&rev), c);
    }

    #[test]
    fn conflicts_equal_a_brute_force_pairing() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as i64
        };
        for _ in 0..200 {
            let slots: Vec<Placed> = (0..12u8)
                .map(|i| {
                    let s = next() % 50;
                    p(
                        if next() % 2 == 0 { "a" } else { "b" },
                        i,
                        s,
                        s + 1 + next() % 20,
                    )
                })
                .collect();
            let mut brute = 0;
            for (i, a) in slots.iter().enumerate() {
                for b in &slots[i + 1..] {
                    if a.tech == b.tech && a.start < b.end && b.start < a.end {
                        brute += 1;
                    }
                }
            }
            assert_eq!(conflicts(&slots).len(), brute);
        }
    }

    #[test]
    fn hours_name_the_working_day() {
        let pol = Policy::default();
        let t = TechnicianHours {
            user: "tom".into(),
            store: "S1".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![1, 2, 3, 4, 5],
            days_off: vec!["2026-12-09".into()],
        };
        let at = |s: &str| parse_local(&pol, s).unwrap().0;
        assert_eq!(
            outside_hours(&pol, &t, at("2026-12-08 10:00"), at("2026-12-08 11:30")),
            None
        );
        let m = outside_hours(&pol, &t, at("2026-12-08 17:00"), at("2026-12-08 18:30")).unwrap();
        assert!(
            m.contains("17:00-18:30 is outside working hours 09:00-18:00"),
            "{m}"
        );
        let m = outside_hours(&pol, &t, at("2026-12-09 10:00"), at("2026-12-09 11:00")).unwrap();
        assert!(m.contains("day off"), "{m}");
        let m = outside_hours(&pol, &t, at("2026-12-12 10:00"), at("2026-12-12 11:00")).unwrap();
        assert!(
            m.contains("Sat") && m.contains("Mon Tue Wed Thu Fri"),
            "{m}"
        );
        assert_eq!(
            format_local(&pol, at("2026-12-08 10:00")),
            "2026-12-08 10:00"
        );
    }

    #[test]
    fn lengths_parse() {
        assert_eq!(parse_minutes("90m"), Ok(90));
        assert_eq!(parse_minutes("1h30m"), Ok(90));
        assert_eq!(parse_minutes("2h"), Ok(120));
        assert!(parse_minutes("90").is_err());
        assert!(parse_minutes("x").is_err());
    }
}
