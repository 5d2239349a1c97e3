//! 三包 (repair, exchange, return) and the 7-day no-reason return
//! (domain.md §4; 部分商品修理更换退货责任规定, 消费者权益保护法 art. 25).
//!
//! Days are counted as the law counts them: the day of sale is day 0, so
//! "within 7 days" includes the 7th day after the sale and excludes the 8th.

use crate::policy::Policy;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A remedy the customer is entitled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Money back.
    Return,
    /// A replacement.
    Exchange,
    /// A repair.
    Repair,
}

/// What 三包 needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanbaoFacts {
    /// Day of sale.
    pub sold: NaiveDate,
    /// Day the fault is reported.
    pub reported: NaiveDate,
    /// The fault is a performance fault (not misuse).
    pub performance_fault: bool,
    /// Days the product spent in repair so far (they do not count against
    /// the periods).
    pub days_in_repair: i64,
    /// Repairs already done within the warranty period.
    pub repairs_done: u32,
    /// Length of the warranty, in days.
    pub warranty_days: i64,
}

/// The remedies 三包 gives, best first. Empty when none applies.
pub fn sanbao(p: &Policy, f: &SanbaoFacts) -> Vec<Remedy> {
    if !f.performance_fault {
        return Vec::new();
    }
    let elapsed = (f.reported - f.sold).num_days() - f.days_in_repair.max(0);
    if elapsed < 0 {
        return Vec::new();
    }
    if elapsed <= p.sanbao_return_days {
        return vec![Remedy::Return, Remedy::Exchange, Remedy::Repair];
    }
    if elapsed <= p.sanbao_exchange_days {
        return vec![Remedy::Exchange, Remedy::Repair];
    }
    if elapsed <= f.warranty_days {
        if f.repairs_done >= p.sanbao_max_repairs {
            // Still faulty after the allowed repairs: exchange or return.
            return vec![Remedy::Return, Remedy::Exchange];
        }
        return vec![Remedy::Repair];
    }
    Vec::new()
}

/// What 三包 says of a repair case whose product (by serial number) was
/// repaired before within the warranty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepeatRepair {
    /// The product's serial number.
    pub serial: String,
    /// Repairs performed on this serial within the warranty, over every
    /// case of it the reader holds (this one included).
    pub repairs: u32,
    /// The cases those repairs were on, by case number.
    pub cases: Vec<String>,
    /// What the customer may choose now, best first: still faulty after
    /// `sanbao_max_repairs` repairs gives exchange or return.
    pub remedies: Vec<Remedy>,
}

/// 三包's repeat-repair rule for the repair case `this`, over `all` the
/// cases the reader holds (a device: its store's; the relay: the chain's).
/// Repairs count on cases of the same serial opened within `warranty_days`
/// of this case's purchase date (any, when it has none). `None` unless
/// `this` is an open repair with a serial.
pub fn repeat_repair(
    p: &Policy,
    this: &crate::case::CaseView,
    all: &[crate::case::CaseView],
) -> Option<RepeatRepair> {
    if this.kind.as_deref() != Some("repair") {
        return None;
    }
    let status = this.status.as_deref().unwrap_or_default();
    if crate::workflow::table::is_final(crate::case::CaseKind::Repair, status) {
        return None;
    }
    let serial = this.serial.clone()?;
    let bought = this
        .order
        .purchase_date
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let in_warranty = |v: &crate::case::CaseView| {
        let Some(bought) = bought else { return true };
        let opened = v
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| super::contact::local_day(p, t.timestamp_millis()));
        opened.is_some_and(|d| (d - bought).num_days() <= p.warranty_days)
    };
    let mut repairs = 0u32;
    let mut cases = Vec::new();
    let others = all.iter().filter(|v| v.id != this.id);
    for v in std::iter::once(this).chain(others) {
        if v.kind.as_deref() == Some("repair")
            && v.serial.as_deref() == Some(serial.as_str())
            && v.repairs_performed > 0
            && in_warranty(v)
        {
            repairs = repairs.saturating_add(v.repairs_performed);
            cases.push(v.case_no.clone().unwrap_or_else(|| v.id.clone()));
        }
    }
    cases.sort();
    let remedies = if repairs >= p.sanbao_max_repairs {
        vec![Remedy::Return, Remedy::Exchange]
    } else {
        vec![Remedy::Repair]
    };
    Some(RepeatRepair {
        serial,
        repairs,
        cases,
        remedies,
    })
}

/// How the goods were sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleChannel {
    /// In a store.
    InStore,
    /// Online, phone, mail order: the statutory no-reason return applies.
    Distance,
}

/// Whether a return request on `today` falls in the 7-day no-reason window.
///
/// Distance sales: the law's window, from the day after receipt for
/// `no_reason_days` days. In-store sales: the handbook's policy window,
/// from the purchase day (day 0) to day `no_reason_days` inclusive (or as
/// the policy sets it). Goods must
/// also be intact and fit for resale; that is checked at inspection.
pub fn no_reason_window(
    p: &Policy,
    channel: SaleChannel,
    purchased: NaiveDate,
    received: Option<NaiveDate>,
    today: NaiveDate,
) -> bool {
    let days = p.no_reason_days;
    let (first, last) = match channel {
        SaleChannel::Distance => {
            let r = received.unwrap_or(purchased);
            (r + chrono::Days::new(1), r + chrono::Days::new(days as u64))
        }
        SaleChannel::InStore if p.no_reason_start == "day_after_receipt" => {
            let r = received.unwrap_or(purchased);
            (r + chrono::Days::new(1), r + chrono::Days::new(days as u64))
        }
        // The handbook's "7天内(含)": the purchase day is day 0 and day 7 is
        // the last, as 三包 counts (see the module's comment).
        SaleChannel::InStore => (purchased, purchased + chrono::Days::new(days as u64)),
    };
    first <= today && today <= last
}

/// Whether a store clerk may accept the return request in `doc` at device
/// time `at`: inside the 7-day no-reason window, or within the 三包
/// exchange period for a product-quality case. Outside both, only a
/// supervisor may accept it (a goodwill return). Without a purchase date
/// the window cannot be judged, so a clerk cannot accept.
pub fn staff_may_accept_return<D: automerge::ReadDoc>(
    doc: &D,
    p: &Policy,
    at: i64,
) -> Result<(), String> {
    use crate::case::read;
    use automerge::ROOT;
    let order = read::map(doc, &ROOT, crate::case::schema::root::ORDER);
    let date = |k: &str| {
        order
            .as_ref()
            .and_then(|o| read::string(doc, o, k))
            .and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
    };
    let Some(purchased) = date("purchase_date") else {
        return Err(
            "record the purchase date first: without it the return window cannot be checked (a supervisor may accept anyway)"
                .into(),
        );
    };
    let fields = read::map(doc, &ROOT, crate::case::schema::root::FIELDS);
    let field = |k: &str| fields.as_ref().and_then(|f| read::string(doc, f, k));
    let channel = match field("sale_channel").as_deref() {
        Some("distance") => SaleChannel::Distance,
        _ => SaleChannel::InStore,
    };
    let Some(today) = crate::rules::contact::local_day(p, at) else {
        return Ok(());
    };
    if no_reason_window(p, channel, purchased, date("received_date"), today) {
        return Ok(());
    }
    let quality = field("category").as_deref() == Some("product_quality");
    if quality && (today - purchased).num_days() <= p.sanbao_exchange_days {
        return Ok(());
    }
    Err(format!(
        "bought {purchased}: outside the 7-day no-reason window{}; a supervisor can accept it as a goodwill return",
        if quality { " and the 15-day 三包 exchange period" } else { " (set category product_quality for a quality fault)" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn facts(reported: &str, repairs: u32, in_repair: i64) -> SanbaoFacts {
        SanbaoFacts {
            sold: d("2026-03-01"),
            reported: d(reported),
            performance_fault: true,
            days_in_repair: in_repair,
            repairs_done: repairs,
            warranty_days: 365,
        }
    }

    #[test]
    fn sanbao_boundaries() {
        use Remedy::*;
        let p = Policy::default();
        let table: &[(&str, u32, i64, &[Remedy])] = &[
            ("2026-03-01", 0, 0, &[Return, Exchange, Repair]),
            ("2026-03-08", 0, 0, &[Return, Exchange, Repair]), // day 7
            ("2026-03-09", 0, 0, &[Exchange, Repair]),         // day 8
            ("2026-03-16", 0, 0, &[Exchange, Repair]),         // day 15
            ("2026-03-17", 0, 0, &[Repair]),                   // day 16
            ("2026-03-17", 1, 0, &[Repair]),                   // one repair done
            ("2026-03-17", 2, 0, &[Return, Exchange]),         // the second repair failed
            ("2026-03-20", 0, 5, &[Exchange, Repair]), // day 19, 5 days in repair: counts as 14
            ("2027-03-01", 0, 0, &[Repair]),           // day 365
            ("2027-03-02", 0, 0, &[]),                 // day 366: warranty over
        ];
        for (reported, repairs, in_repair, want) in table {
            assert_eq!(
                sanbao(&p, &facts(reported, *repairs, *in_repair)),
                want.to_vec(),
                "reported {reported}, {repairs} repairs, {in_repair} days in repair"
            );
        }
        let misuse = SanbaoFacts {
            performance_fault: false,
            ..facts("2026-03-02", 0, 0)
        };
        assert!(sanbao(&p, &misuse).is_empty());
    }

    #[test]
    fn no_reason_window_boundaries() {
        let p = Policy::default();
        let bought = d("2026-03-01");
        let got = Some(d("2026-03-03"));
        // Distance sale: day after receipt (03-04) to receipt + 7 (03-10).
        assert!(!no_reason_window(
            &p,
            SaleChannel::Distance,
            bought,
            got,
            d("2026-03-03")
        ));
        assert!(no_reason_window(
            &p,
            SaleChannel::Distance,
            bought,
            got,
            d("2026-03-04")
        ));
        assert!(no_reason_window(
            &p,
            SaleChannel::Distance,
            bought,
            got,
            d("2026-03-10")
        )); // day 7
        assert!(!no_reason_window(
            &p,
            SaleChannel::Distance,
            bought,
            got,
            d("2026-03-11")
        )); // day 8
            // In store, handbook "7天内(含)": the purchase day is day 0, day 7
            // (03-08) is in, day 8 (03-09) is out.
        assert!(no_reason_window(
            &p,
            SaleChannel::InStore,
            bought,
            None,
            d("2026-03-01")
        ));
        assert!(no_reason_window(
            &p,
            SaleChannel::InStore,
            bought,
            None,
            d("2026-03-08")
        ));
        assert!(!no_reason_window(
            &p,
            SaleChannel::InStore,
            bought,
            None,
            d("2026-03-09")
        ));
        let law_style = Policy {
            no_reason_start: "day_after_receipt".into(),
            ..Policy::default()
        };
        assert!(no_reason_window(
            &law_style,
            SaleChannel::InStore,
            bought,
            got,
            d("2026-03-10")
        ));
        assert!(!no_reason_window(
            &law_style,
            SaleChannel::InStore,
            bought,
            got,
            d("2026-03-11")
        ));
    }
}
