//! The case as plain data: what the CLI prints and the relay serves as JSON.

use super::read;
use super::schema::{entry, root};
use crate::ids::Millis;
use automerge::{ObjId, ReadDoc, ROOT};
use serde::{Deserialize, Serialize};

/// The customer block of a case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomerView {
    /// Full name.
    pub name: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// Membership number.
    pub member_id: Option<String>,
}

/// The order the case is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    /// Order number.
    pub order_no: Option<String>,
    /// YYYY-MM-DD.
    pub purchase_date: Option<String>,
    /// YYYY-MM-DD.
    pub received_date: Option<String>,
    /// Invoice number.
    pub invoice_no: Option<String>,
}

/// One product line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemView {
    /// Line id within the case.
    pub id: String,
    /// Stock-keeping unit.
    pub sku: Option<String>,
    /// Quantity.
    pub qty: Option<i64>,
}

/// One entry of the timeline (the handover log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    /// Entry id, unique within the case.
    pub id: String,
    /// created, note, call, sms, visit, field_changed, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For field_changed: which field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For field_changed: the new value (absent for personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Who wrote it.
    pub author: Option<String>,
    /// On which device.
    pub device: Option<String>,
    /// Device time, RFC 3339.
    pub at: Option<String>,
    #[serde(skip)]
    at_millis: i64,
}

/// A deadline as shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimerView {
    /// return_review, refund, first_response, complaint_reply,
    /// suggest_escalation, customer_update or follow_up_survey.
    pub name: String,
    /// When it falls due, RFC 3339.
    pub due: String,
    /// Whether it has been met.
    pub done: bool,
    /// Met late, or open past due when the view was evaluated.
    pub breached: bool,
    #[serde(skip)]
    due_ms: i64,
}

impl TimerView {
    /// When it falls due, in milliseconds.
    pub fn due_millis(&self) -> i64 {
        self.due_ms
    }
}

/// A compensation offer as shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfferView {
    /// Offer id, for `case approve` and `case decline-offer`.
    pub id: String,
    /// virtual or cash.
    pub tier: String,
    /// Amount in yuan, exact, e.g. "100.00".
    pub amount: String,
    /// proposed, approved, rejected, accepted, declined or withdrawn.
    pub status: String,
    /// Who offered it.
    pub proposed_by: String,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// Policy version the offer was judged under.
    pub policy_version: i64,
}

/// A fork in the workflow as shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConflictView {
    /// Conflict id, for `case resolve`.
    pub id: String,
    /// open or resolved.
    pub status: String,
    /// The state both moves left.
    pub from: String,
    /// The competing states.
    pub options: Vec<String>,
    /// Who made each competing move.
    pub proposed_by: Vec<String>,
    /// The state chosen, once resolved.
    pub chosen: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
}

/// One attempt to reach the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactView {
    /// Entry id.
    pub id: String,
    /// phone, sms or visit.
    pub channel: Option<String>,
    /// What came of it.
    pub outcome: Option<String>,
    /// Who made it.
    pub author: Option<String>,
    /// From which device.
    pub device: Option<String>,
    /// Device time, RFC 3339.
    pub at: Option<String>,
    /// `outbound` (the store reached out; also every contact recorded
    /// before directions were) or `inbound` (the customer did).
    pub direction: String,
    /// The contact rules an outbound call broke (outside the calling
    /// hours, beyond the daily limit in this case), derived from the merged
    /// log so every replica shows the same. A call that happened is always
    /// recorded; this is how head office sees it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// A supervisor's reason for overriding the contact rules, in their
    /// own words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_reasons: Option<String>,
    #[serde(skip)]
    at_ms: Option<i64>,
}

impl ContactView {
    /// Device time in milliseconds.
    pub fn at_millis(&self) -> Option<i64> {
        self.at_ms
    }
}

/// A whole case as plain data. Lists are sorted (by time, then id) so every
/// replica that holds the same changes renders identical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseView {
    /// Case UUID.
    pub id: String,
    /// STORE-DEVICE-SEQ.
    pub case_no: Option<String>,
    /// repair, installation, return_exchange, damage_claim or complaint.
    pub kind: Option<String>,
    /// Current state, derived from the workflow events.
    pub status: Option<String>,
    /// States the case may move to next (empty while a conflict is open).
    pub allowed_transitions: Vec<String>,
    /// Forks in the workflow: open ones block further moves until resolved.
    pub conflicts: Vec<ConflictView>,
    /// Compensation offers with their status.
    pub offers: Vec<OfferView>,
    /// Deadlines: due time and whether they were (or are now) missed.
    pub timers: Vec<TimerView>,
    /// Who pays freight, per leg, and the rule that decided it.
    pub freight: Option<super::service::FreightView>,
    /// The latest follow-up survey.
    pub survey: Option<super::service::Survey>,
    /// The highest escalation step reached.
    pub escalation: Option<String>,
    /// Linked cases (follow-ups and their origin).
    pub related_cases: Vec<String>,
    /// The technician or installer the case is assigned to.
    pub assignee: Option<String>,
    /// Highest policy version any decision on this case was made under.
    pub policy_version: Option<i64>,
    /// The store that opened the case.
    pub store_id: Option<String>,
    /// Who opened it.
    pub created_by: Option<String>,
    /// On which device.
    pub device_id: Option<String>,
    /// Device time of opening, RFC 3339.
    pub created_at: Option<String>,
    /// The customer.
    pub customer: CustomerView,
    /// The order.
    pub order: OrderView,
    /// Product lines.
    pub items: Vec<ItemView>,
    /// What the customer reports.
    pub description: String,
    /// low, normal, high, urgent.
    pub priority: Option<String>,
    /// Complaint category.
    pub category: Option<String>,
    /// Intake channel.
    pub channel: Option<String>,
    /// in_store or distance.
    pub sale_channel: Option<String>,
    /// Serial number of the product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Repairs performed on this case (each time it reached
    /// `pending_acceptance`; a failed acceptance sends it back for another).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repairs_performed: u32,
    /// What 三包 gives for a repair of a serial repaired before, counted
    /// over every case of that serial the reader holds
    /// (`rules::warranty::repeat_repair`). Absent from a view of one
    /// document alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanbao: Option<crate::rules::warranty::RepeatRepair>,
    /// What the customer asks for.
    pub requested_remedy: Option<String>,
    /// Safety risk flag.
    pub safety_risk: bool,
    /// The handover log, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Contact attempts, oldest first.
    pub contact_attempts: Vec<ContactView>,
    /// Tags.
    pub tags: Vec<String>,
    /// Photos, documents and signatures, oldest first (removed ones marked).
    #[serde(default)]
    pub evidence: Vec<super::evidence::EvidenceView>,
    /// Every booking of the case, in the order they were made.
    #[serde(default)]
    pub bookings: Vec<super::booking::BookingView>,
    /// The current appointment: the earliest active booking.
    #[serde(default)]
    pub appointment: Option<super::booking::BookingView>,
    /// Open scheduling conflicts with other cases (one technician booked
    /// twice at once). The document alone cannot tell: the replica or the
    /// relay that holds the calendar fills this in; a view read from the
    /// document alone leaves it empty.
    #[serde(default)]
    pub schedule_conflicts: Vec<crate::rules::calendar::ScheduleConflict>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn time(ms: Option<i64>) -> Option<String> {
    ms.map(|m| Millis(m).to_rfc3339())
}

/// A settable field's text, read where the write-rules table puts it.
fn field<D: ReadDoc>(doc: &D, f: super::CaseField) -> Option<String> {
    let (container, key) = f.place();
    let m = read::map(doc, &ROOT, container)?;
    read::string(doc, &m, key)
}

impl CaseView {
    /// Reads a case document under the default policy. `id` is used when
    /// the document does not carry one. Open timers are not evaluated
    /// against a clock: call [`CaseView::evaluate_timers`].
    pub fn from_doc(doc: &automerge::Automerge, id: &str) -> CaseView {
        CaseView::from_doc_with(doc, id, &crate::policy::Policy::default())
    }

    /// Marks open timers that are past due at `now`.
    pub fn evaluate_timers(&mut self, now: Millis) {
        for t in &mut self.timers {
            if !t.done && now.0 > t.due_ms {
                t.breached = true;
            }
        }
    }

    /// Reads a case document under `policy`.
    pub fn from_doc_with(
        doc: &automerge::Automerge,
        id: &str,
        policy: &crate::policy::Policy,
    ) -> CaseView {
        Self::read(doc, id, policy, true)
    }

    /// Reads a case document under `policy` without its timeline, which
    /// is left empty: what the relay's read model needs at each commit
    /// (reading every entry of a long timeline was the largest part of
    /// the relay's cost of an upload).
    pub fn without_timeline(
        doc: &automerge::Automerge,
        id: &str,
        policy: &crate::policy::Policy,
    ) -> CaseView {
        Self::read(doc, id, policy, false)
    }

    fn read(
        doc: &automerge::Automerge,
        id: &str,
        policy: &crate::policy::Policy,
        with_timeline: bool,
    ) -> CaseView {
        use super::CaseField as F;
        let customer = CustomerView {
            name: field(doc, F::CustomerName),
            phone: field(doc, F::CustomerPhone),
            address: field(doc, F::CustomerAddress),
            member_id: field(doc, F::CustomerMemberId),
        };
        let order = OrderView {
            order_no: field(doc, F::OrderNo),
            purchase_date: field(doc, F::PurchaseDate),
            received_date: field(doc, F::ReceivedDate),
            invoice_no: field(doc, F::InvoiceNo),
        };
        let mut items: Vec<ItemView> = read::entries(doc, &ROOT, root::ITEMS)
            .into_iter()
            .map(|(id, o)| ItemView {
                sku: read::string(doc, &o, "sku"),
                qty: read::int(doc, &o, "qty"),
                id,
            })
            .collect();
        items.sort_by(|a, b| a.id.cmp(&b.id));
        let mut timeline: Vec<TimelineEntry> = if with_timeline {
            read::entries(doc, &ROOT, root::TIMELINE)
                .into_iter()
                .map(|(id, e)| timeline_entry(doc, id, &e))
                .collect()
        } else {
            Vec::new()
        };
        timeline.sort_by(|a, b| (a.at_millis, &a.id).cmp(&(b.at_millis, &b.id)));
        let mut contacts: Vec<(i64, ContactView)> = read::entries(doc, &ROOT, root::CONTACTS)
            .into_iter()
            .map(|(id, e)| {
                let at = read::int(doc, &e, entry::AT);
                (
                    at.unwrap_or(0),
                    ContactView {
                        channel: read::string(doc, &e, entry::CHANNEL),
                        outcome: read::string(doc, &e, entry::OUTCOME),
                        author: read::string(doc, &e, entry::AUTHOR),
                        device: read::string(doc, &e, entry::DEVICE),
                        at: time(at),
                        direction: read::string(doc, &e, "direction")
                            .unwrap_or_else(|| "outbound".into()),
                        flags: read::string(doc, &e, "flags")
                            .map(|f| f.split("; ").map(str::to_string).collect())
                            .unwrap_or_default(),
                        override_reasons: read::string(doc, &e, "override"),
                        at_ms: at,
                        id,
                    },
                )
            })
            .collect();
        contacts.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        flag_calls(policy, &mut contacts);
        let tags = read::map(doc, &ROOT, root::TAGS)
            .map(|t| doc.keys(&t).collect())
            .unwrap_or_default();
        let kind = read::string(doc, &ROOT, root::KIND);
        let workflow = kind
            .as_deref()
            .and_then(|k| k.parse::<super::CaseKind>().ok())
            .map(|k| (k, crate::workflow::derive(doc, k)));
        let status = workflow.as_ref().map(|(_, w)| w.status.clone());
        let repairs_performed = workflow
            .as_ref()
            .filter(|(k, _)| *k == super::CaseKind::Repair)
            .map(|(_, w)| {
                w.steps
                    .iter()
                    .filter(|s| s.to == "pending_acceptance")
                    .count()
            })
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let timers = workflow
            .as_ref()
            .map(|(k, w)| crate::rules::timers::timers(doc, *k, w, policy))
            .unwrap_or_default()
            .into_iter()
            .map(|t| TimerView {
                name: t.name,
                due: Millis(t.due).to_rfc3339(),
                done: t.done.is_some(),
                breached: t.breached,
                due_ms: t.due,
            })
            .collect();
        let allowed_transitions = match &workflow {
            Some((k, w)) if w.open_conflict().is_none() => {
                crate::workflow::table::allowed_from(*k, &w.status)
                    .into_iter()
                    .map(str::to_string)
                    .collect()
            }
            _ => Vec::new(),
        };
        let conflicts: Vec<ConflictView> = workflow
            .map(|(_, w)| {
                w.conflicts
                    .into_iter()
                    .map(|c| ConflictView {
                        status: if c.resolution.is_some() {
                            "resolved"
                        } else {
                            "open"
                        }
                        .into(),
                        chosen: c.resolution.as_ref().map(|r| r.choose.clone()),
                        resolved_by: c.resolution.map(|r| r.by),
                        id: c.id,
                        from: c.from,
                        options: c.options,
                        proposed_by: c.proposed_by,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let safety_risk = {
            let (container, key) = F::SafetyRisk.place();
            read::map(doc, &ROOT, container)
                .and_then(|f| read::boolean(doc, &f, key))
                .unwrap_or(false)
        };
        let raw_offers = crate::money::offers(doc);
        let offers: Vec<OfferView> = raw_offers
            .iter()
            .map(|o| OfferView {
                amount: format!("{}.{:02}", o.amount_fen / 100, o.amount_fen % 100),
                tier: o.tier.as_str().to_string(),
                id: o.id.clone(),
                status: o.status.clone(),
                proposed_by: o.proposed_by.clone(),
                decided_by: o.decided_by.clone(),
                note: o.note.clone(),
                policy_version: o.policy_version,
            })
            .collect();
        let mut conflicts = conflicts;
        if let Some(ids) = crate::money::accepted_conflict(doc, &raw_offers) {
            conflicts.push(ConflictView {
                id: "offers".into(),
                status: "open".into(),
                from: "offers".into(),
                proposed_by: raw_offers
                    .iter()
                    .filter(|o| ids.contains(&o.id))
                    .map(|o| o.proposed_by.clone())
                    .collect(),
                options: ids,
                chosen: None,
                resolved_by: None,
            });
        }
        let freight = super::service::freight_view(doc);
        let policy_version = offers
            .iter()
            .map(|o| o.policy_version)
            .chain(freight.as_ref().map(|f| f.policy_version))
            .max();
        let mut related_cases: Vec<String> = read::map(doc, &ROOT, super::service::RELATED)
            .map(|m| doc.keys(&m).collect())
            .unwrap_or_default();
        related_cases.sort();
        let bookings = super::booking::bookings(doc);
        CaseView {
            freight,
            survey: super::service::survey_view(doc),
            escalation: super::service::escalation_level(doc),
            assignee: super::service::assignee(doc),
            related_cases,
            timers,
            offers,
            policy_version,
            id: read::string(doc, &ROOT, root::ID).unwrap_or_else(|| id.to_string()),
            case_no: read::string(doc, &ROOT, root::CASE_NO),
            kind,
            status,
            allowed_transitions,
            conflicts,
            store_id: read::string(doc, &ROOT, root::STORE_ID),
            created_by: read::string(doc, &ROOT, root::CREATED_BY),
            device_id: read::string(doc, &ROOT, root::DEVICE_ID),
            created_at: time(read::int(doc, &ROOT, root::CREATED_AT)),
            customer,
            order,
            items,
            description: read::string(doc, &ROOT, root::DESCRIPTION).unwrap_or_default(),
            priority: field(doc, F::Priority),
            category: field(doc, F::Category),
            channel: field(doc, F::Channel),
            sale_channel: field(doc, F::SaleChannel),
            serial: field(doc, F::Serial),
            repairs_performed,
            sanbao: None,
            requested_remedy: field(doc, F::RequestedRemedy),
            safety_risk,
            timeline,
            contact_attempts: contacts.into_iter().map(|(_, c)| c).collect(),
            tags,
            evidence: super::evidence::list(doc),
            appointment: super::booking::earliest_active(bookings.clone()),
            bookings,
            schedule_conflicts: Vec::new(),
        }
    }
}

fn timeline_entry<D: ReadDoc>(doc: &D, id: String, e: &ObjId) -> TimelineEntry {
    let at = read::int(doc, e, entry::AT);
    TimelineEntry {
        kind: read::string(doc, e, entry::TYPE).unwrap_or_else(|| "unknown".into()),
        text: read::string(doc, e, entry::TEXT),
        field: read::string(doc, e, entry::FIELD),
        value: read::string(doc, e, entry::VALUE),
        author: read::string(doc, e, entry::AUTHOR),
        device: read::string(doc, e, entry::DEVICE),
        at: time(at),
        at_millis: at.unwrap_or(0),
        id,
    }
}

/// Marks the outbound calls that broke the contact rules, in time order:
/// outside the calling hours, or beyond the daily limit of calls to the
/// customer counted in this case.
fn flag_calls(policy: &crate::policy::Policy, contacts: &mut [(i64, ContactView)]) {
    let mut per_day: std::collections::HashMap<chrono::NaiveDate, u32> = Default::default();
    for (at, c) in contacts.iter_mut() {
        if c.channel.as_deref() != Some("phone") || c.direction != "outbound" {
            continue;
        }
        let Some(day) = crate::rules::contact::local_day(policy, *at) else {
            continue;
        };
        let made = per_day.entry(day).or_insert(0);
        // What the merged log shows, beside what the recording device saw.
        for w in crate::rules::contact::check_call(policy, *at, *made) {
            let w = w.to_string();
            if !c.flags.contains(&w) {
                c.flags.push(w);
            }
        }
        *made += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::edit::{self, Customer, EditContext, NewCase};
    use crate::case::{CaseField, CaseKind};
    use crate::ids::{CaseId, DeviceId, StoreId, UserId};
    use automerge::Automerge;

    fn ctx(n: u8, at: i64) -> EditContext {
        EditContext {
            author: UserId::new("u1").unwrap(),
            role: crate::access::Role::Staff,
            device: DeviceId::new(format!("tab{n}")).unwrap(),
            now: Millis(at),
            nonce: [n; 16],
        }
    }

    fn new_case() -> (Automerge, CaseId) {
        let id = CaseId::from_bytes([9; 16]);
        let mut doc = Automerge::new();
        edit::create_case(
            &mut doc,
            &ctx(1, 1_000),
            &NewCase {
                id,
                case_no: "S1-tab1-1".into(),
                kind: CaseKind::Repair,
                store: StoreId::new("S1").unwrap(),
                customer: Customer {
                    name: "Li Lei".into(),
                    phone: "13800000000".into(),
                },
                sku: Some("TV-55".into()),
                description: Some("No picture".into()),
            },
        )
        .unwrap();
        (doc, id)
    }

    #[test]
    fn concurrent_notes_and_fields_merge_into_identical_views() {
        let (doc, id) = new_case();
        let mut a = doc
            .fork()
            .with_actor(automerge::ActorId::from(&[1u8; 16][..]));
        let mut b = doc
            .fork()
            .with_actor(automerge::ActorId::from(&[2u8; 16][..]));
        edit::add_note(&mut a, id, &ctx(2, 2_000), "customer called back").unwrap();
        edit::add_note(&mut b, id, &ctx(3, 2_000), "parts ordered").unwrap();
        edit::set_field(&mut b, id, &ctx(4, 3_000), CaseField::Priority, "high").unwrap();
        a.merge(&mut b.clone()).unwrap();
        b.merge(&mut a.clone()).unwrap();
        let (va, vb) = (CaseView::from_doc(&a, "x"), CaseView::from_doc(&b, "x"));
        assert_eq!(va, vb);
        let notes: Vec<_> = va.timeline.iter().filter(|e| e.kind == "note").collect();
        assert_eq!(notes.len(), 2);
        assert_eq!(va.priority.as_deref(), Some("high"));
        assert_eq!(va.status.as_deref(), Some("reported"));
        assert_eq!(va.items[0].sku.as_deref(), Some("TV-55"));
    }

    #[test]
    fn refused_edit_changes_nothing_and_names_the_field() {
        let (mut doc, id) = new_case();
        let heads = doc.get_heads();
        let err =
            edit::set_field(&mut doc, id, &ctx(2, 2_000), CaseField::Priority, "asap").unwrap_err();
        assert!(err.to_string().starts_with("priority:"), "{err}");
        let err = edit::add_note(&mut doc, id, &ctx(2, 2_000), "   ").unwrap_err();
        assert!(err.to_string().contains("note"), "{err}");
        assert_eq!(doc.get_heads(), heads);
    }

    #[test]
    fn personal_data_stays_out_of_the_timeline() {
        let (mut doc, id) = new_case();
        edit::set_field(
            &mut doc,
            id,
            &ctx(2, 2_000),
            CaseField::CustomerPhone,
            "13900000000",
        )
        .unwrap();
        let v = CaseView::from_doc(&doc, "x");
        assert_eq!(v.customer.phone.as_deref(), Some("13900000000"));
        let change = v
            .timeline
            .iter()
            .find(|e| e.kind == "field_changed")
            .unwrap();
        assert_eq!(change.field.as_deref(), Some("customer_phone"));
        assert_eq!(change.value, None);
    }
}
