//! Typed edits: the only way the product changes a case document.
//!
//! Each edit validates its input first and then writes inside one Automerge
//! transaction, so a refused edit leaves the document untouched. The caller
//! supplies the time, the author and a random nonce (the core reads no clock
//! and draws no randomness).

use super::schema::{entry, root, SCHEMA_VERSION};
use super::{read, CaseKind};
use crate::ids::{CaseId, DeviceId, Millis, StoreId, UserId};
use automerge::transaction::{Transactable, Transaction};
use automerge::{Automerge, AutomergeError, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use std::fmt;
use std::str::FromStr;

/// Who makes an edit, when, and the randomness it may need for new entry ids.
#[derive(Debug, Clone)]
pub struct EditContext {
    /// The signed-in person.
    pub author: UserId,
    /// Their role, which decides what they may do.
    pub role: crate::access::Role,
    /// The device the edit is made on.
    pub device: DeviceId,
    /// Device time of the edit.
    pub now: Millis,
    /// 16 random bytes, used to name a new timeline entry.
    pub nonce: [u8; 16],
}

impl EditContext {
    /// The same context with a different nonce, for an edit that writes
    /// several entries into one log (entry ids come from the nonce).
    pub(crate) fn varied(&self, k: u8) -> EditContext {
        let mut c = self.clone();
        c.nonce[15] ^= k;
        c.nonce[14] ^= 0x5a;
        c
    }

    /// The id the next entry written with this context gets.
    pub(crate) fn entry_id(&self) -> String {
        uuid::Builder::from_random_bytes(self.nonce)
            .into_uuid()
            .simple()
            .to_string()
    }
}

/// Why an edit was refused. Messages use the words of the shop floor.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// A field value is not acceptable; the message names the field.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, as the user typed it.
        field: String,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// The document is not a case (it has no kind): nothing was changed.
    #[error("case {0} has not been created on this device yet (sync first)")]
    NotACase(CaseId),
    /// Automerge refused the write.
    #[error("could not write the case: {0}")]
    Document(#[from] AutomergeError),
    /// The move is not a step of this kind's flow from the current state.
    #[error("cannot move this {kind} from {from} to {to}; allowed from {from}: {}", if allowed.is_empty() { "nothing (the case is finished)".to_string() } else { allowed.join(", ") })]
    Transition {
        /// The case kind.
        kind: CaseKind,
        /// Current state.
        from: String,
        /// Requested state.
        to: String,
        /// States allowed from here.
        allowed: Vec<String>,
    },
    /// Two devices moved the case in different directions; a supervisor must choose.
    #[error("this case has an open conflict {id} ({from} → {}): a supervisor or head office must resolve it first with `case resolve`", options.join(" or "))]
    OpenConflict {
        /// Conflict id.
        id: String,
        /// The state both moves started from.
        from: String,
        /// The competing states.
        options: Vec<String>,
    },
    /// The person's role does not allow this.
    #[error("not allowed: {0}")]
    NotAllowed(String),
}

pub(crate) fn invalid(field: &str, problem: impl Into<String>) -> EditError {
    EditError::Invalid {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// The customer of a new case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customer {
    /// Full name as the customer gives it.
    pub name: String,
    /// Phone number.
    pub phone: String,
}

/// What is needed to open a case.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// The id, minted on the device.
    pub id: CaseId,
    /// Human case number `STORE-DEVICE-SEQ`, unique without coordination.
    pub case_no: String,
    /// Which workflow the case follows.
    pub kind: CaseKind,
    /// The store that opens it (the relay's owner record is what counts for access).
    pub store: StoreId,
    /// The customer.
    pub customer: Customer,
    /// Product SKU, if known.
    pub sku: Option<String>,
    /// What the customer reports.
    pub description: Option<String>,
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), EditError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(invalid(field, format!("is longer than {max} characters")));
    }
    Ok(())
}

fn check_phone(value: &str) -> Result<(), EditError> {
    check_text("customer phone", value, 32)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')'))
    {
        return Err(invalid(
            "customer phone",
            "may contain only digits, spaces and + - ( )",
        ));
    }
    if value.chars().filter(|c| c.is_ascii_digit()).count() < 5 {
        return Err(invalid("customer phone", "needs at least 5 digits"));
    }
    Ok(())
}

pub(crate) fn put_entry(
    tx: &mut Transaction<'_>,
    list_key: &str,
    ctx: &EditContext,
    kind: &str,
) -> Result<ObjId, AutomergeError> {
    let list = match read::map(tx, &ROOT, list_key) {
        Some(id) => id,
        None => tx.put_object(ROOT, list_key, ObjType::Map)?,
    };
    let e = tx.put_object(&list, ctx.entry_id(), ObjType::Map)?;
    tx.put(&e, entry::TYPE, kind)?;
    tx.put(&e, entry::AUTHOR, ctx.author.as_str())?;
    tx.put(&e, entry::ROLE, ctx.role.as_str())?;
    tx.put(&e, entry::DEVICE, ctx.device.as_str())?;
    tx.put(&e, entry::AT, ScalarValue::Timestamp(ctx.now.0))?;
    Ok(e)
}

pub(crate) fn require_case(doc: &Automerge, id: CaseId) -> Result<CaseKind, EditError> {
    read::string(doc, &ROOT, root::KIND)
        .and_then(|k| k.parse().ok())
        .ok_or(EditError::NotACase(id))
}

/// Writes a new case into an empty document, its personal data in plain
/// text (tests and old documents; devices use [`create_case_sealed`]).
pub fn create_case(doc: &mut Automerge, ctx: &EditContext, new: &NewCase) -> Result<(), EditError> {
    create_case_sealed(doc, ctx, new, None)
}

/// The stored form of a personal field's value: sealed under the case's
/// key when there is one (see [`super::seal`]), else as it is.
fn stored_personal(
    key: Option<&super::seal::CaseKey>,
    case: CaseId,
    ctx: &EditContext,
    field: CaseField,
    value: &str,
) -> String {
    match key {
        Some(k) => {
            // A field's position in `CaseField::ALL` tells the fields of
            // one edit apart in the nonce.
            let n = CaseField::ALL.iter().position(|f| *f == field).unwrap_or(0) as u8;
            super::seal::seal(
                k,
                case,
                field.as_str(),
                super::seal::nonce_for(ctx.nonce, n),
                value,
            )
        }
        None => value.to_string(),
    }
}

/// Writes a new case into an empty document, the customer's name and
/// phone sealed under `key` (see [`super::seal`]).
pub fn create_case_sealed(
    doc: &mut Automerge,
    ctx: &EditContext,
    new: &NewCase,
    key: Option<&super::seal::CaseKey>,
) -> Result<(), EditError> {
    check_text("customer name", &new.customer.name, 200)?;
    check_phone(&new.customer.phone)?;
    if let Some(sku) = &new.sku {
        check_text("sku", sku, 64)?;
    }
    if let Some(d) = &new.description {
        check_text("description", d, 10_000)?;
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        tx.put(ROOT, root::SCHEMA, SCHEMA_VERSION)?;
        tx.put(ROOT, root::ID, new.id.to_string())?;
        tx.put(ROOT, root::CASE_NO, new.case_no.as_str())?;
        tx.put(ROOT, root::KIND, new.kind.as_str())?;
        tx.put(ROOT, root::STORE_ID, new.store.as_str())?;
        tx.put(ROOT, root::CREATED_BY, ctx.author.as_str())?;
        tx.put(ROOT, root::DEVICE_ID, ctx.device.as_str())?;
        tx.put(ROOT, root::CREATED_AT, ScalarValue::Timestamp(ctx.now.0))?;
        let c = tx.put_object(ROOT, root::CUSTOMER, ObjType::Map)?;
        let name = stored_personal(
            key,
            new.id,
            ctx,
            CaseField::CustomerName,
            &new.customer.name,
        );
        let phone = stored_personal(
            key,
            new.id,
            ctx,
            CaseField::CustomerPhone,
            &new.customer.phone,
        );
        tx.put(&c, "name", name)?;
        tx.put(&c, "phone", phone)?;
        tx.put_object(ROOT, root::ORDER, ObjType::Map)?;
        tx.put_object(ROOT, root::FIELDS, ObjType::Map)?;
        let items = tx.put_object(ROOT, root::ITEMS, ObjType::Map)?;
        if let Some(sku) = &new.sku {
            let item = tx.put_object(&items, "1", ObjType::Map)?;
            tx.put(&item, "sku", sku.as_str())?;
            tx.put(&item, "qty", 1i64)?;
        }
        let d = tx.put_object(ROOT, root::DESCRIPTION, ObjType::Text)?;
        if let Some(text) = &new.description {
            tx.splice_text(&d, 0, 0, text)?;
        }
        tx.put_object(ROOT, root::TIMELINE, ObjType::Map)?;
        tx.put_object(ROOT, root::CONTACTS, ObjType::Map)?;
        tx.put_object(ROOT, root::TAGS, ObjType::Map)?;
        // Every map that devices append to is created here, once: two
        // devices creating it concurrently later would hide one's entries.
        tx.put_object(ROOT, crate::workflow::history::TRANSITIONS, ObjType::Map)?;
        tx.put_object(ROOT, crate::workflow::history::RESOLUTIONS, ObjType::Map)?;
        tx.put_object(ROOT, crate::money::OFFERS, ObjType::Map)?;
        tx.put_object(ROOT, crate::money::DECISIONS, ObjType::Map)?;
        for key in [
            super::service::SURVEYS,
            super::service::ESCALATIONS,
            super::service::FREIGHT,
            super::service::ASSIGNMENTS,
            super::service::RELATED,
            super::evidence::EVIDENCE,
            super::evidence::REMOVALS,
            super::booking::BOOKINGS,
        ] {
            tx.put_object(ROOT, key, ObjType::Map)?;
        }
        let e = put_entry(tx, root::TIMELINE, ctx, "created")?;
        tx.put(&e, entry::TEXT, format!("{} case opened", new.kind))?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// Appends a note to the case timeline (the handbook's handover log).
pub fn add_note(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    text: &str,
) -> Result<(), EditError> {
    check_text("note", text, 10_000)?;
    require_case(doc, id)?;
    doc.transact::<_, _, AutomergeError>(|tx| {
        let e = put_entry(tx, root::TIMELINE, ctx, "note")?;
        tx.put(&e, entry::TEXT, text)?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

/// How the customer was contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactChannel {
    /// A phone call.
    Phone,
    /// A text message.
    Sms,
    /// A home or site visit.
    Visit,
}

impl ContactChannel {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactChannel::Phone => "phone",
            ContactChannel::Sms => "sms",
            ContactChannel::Visit => "visit",
        }
    }
}

impl FromStr for ContactChannel {
    type Err = EditError;
    fn from_str(s: &str) -> Result<Self, EditError> {
        match s {
            "phone" => Ok(ContactChannel::Phone),
            "sms" => Ok(ContactChannel::Sms),
            "visit" => Ok(ContactChannel::Visit),
            other => Err(invalid(
                "channel",
                format!("{other:?} is not a contact channel: use phone, sms or visit"),
            )),
        }
    }
}

/// Who started a contact: only calls the store makes are bound by the
/// calling hours and the daily limit; a customer may call any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The store reached out.
    Outbound,
    /// The customer called or came in.
    Inbound,
}

impl Direction {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

impl FromStr for Direction {
    type Err = EditError;
    fn from_str(s: &str) -> Result<Self, EditError> {
        match s {
            "outbound" => Ok(Direction::Outbound),
            "inbound" => Ok(Direction::Inbound),
            other => Err(invalid(
                "direction",
                format!("{other:?} is not a direction: use outbound or inbound"),
            )),
        }
    }
}

/// Records an attempt to reach the customer, in the contact log and the timeline.
pub fn log_contact(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    channel: ContactChannel,
    outcome: &str,
) -> Result<(), EditError> {
    log_contact_with(
        doc,
        id,
        ctx,
        &Contact {
            channel,
            direction: Direction::Outbound,
            outcome,
            override_reason: None,
            flags: &[],
        },
    )
}

/// A contact with the customer, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Contact<'a> {
    /// Phone, text or visit.
    pub channel: ContactChannel,
    /// Who started it.
    pub direction: Direction,
    /// What came of it.
    pub outcome: &'a str,
    /// A supervisor's own reason for overriding the contact rules.
    pub override_reason: Option<&'a str>,
    /// The contact rules the recording device found broken (it counts the
    /// customer's other cases too), kept with the entry.
    pub flags: &'a [String],
}

/// Like [`log_contact`], with the contact's direction, a supervisor's
/// override reason and the rules found broken.
pub fn log_contact_with(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    contact: &Contact<'_>,
) -> Result<(), EditError> {
    let Contact {
        channel,
        direction,
        outcome,
        override_reason,
        flags,
    } = *contact;
    check_text("outcome", outcome, 2_000)?;
    if let Some(r) = override_reason {
        check_text("override reason", r, 2_000)?;
        if !crate::rules::contact::may_override(ctx.role) {
            return Err(EditError::NotAllowed(
                "only a supervisor can override the contact rules".into(),
            ));
        }
    }
    require_case(doc, id)?;
    doc.transact::<_, _, AutomergeError>(|tx| {
        let c = put_entry(tx, root::CONTACTS, ctx, "contact")?;
        tx.put(&c, entry::CHANNEL, channel.as_str())?;
        tx.put(&c, "direction", direction.as_str())?;
        tx.put(&c, entry::OUTCOME, outcome)?;
        if let Some(r) = override_reason {
            tx.put(&c, "override", r)?;
        }
        if !flags.is_empty() {
            tx.put(&c, "flags", flags.join("; "))?;
        }
        let e = put_entry(tx, root::TIMELINE, ctx, channel_entry_type(channel))?;
        tx.put(&e, entry::TEXT, outcome)?;
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}

fn channel_entry_type(c: ContactChannel) -> &'static str {
    match c {
        ContactChannel::Phone => "call",
        ContactChannel::Sms => "sms",
        ContactChannel::Visit => "visit",
    }
}

/// A field of a case that can be set directly (the workflow fields, such as
/// status and money, are never set directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseField {
    /// Free text of what the customer reports (merges character by character).
    Description,
    /// low, normal, high or urgent.
    Priority,
    /// Complaint category (domain.md §1).
    Category,
    /// Intake channel.
    Channel,
    /// in_store or distance (decides the 7-day no-reason return).
    SaleChannel,
    /// What the customer asks for.
    RequestedRemedy,
    /// true when the product may be dangerous (alerts head office).
    SafetyRisk,
    /// Customer's name.
    CustomerName,
    /// Customer's phone.
    CustomerPhone,
    /// Customer's address.
    CustomerAddress,
    /// Membership number.
    CustomerMemberId,
    /// Order number.
    OrderNo,
    /// Purchase date, YYYY-MM-DD.
    PurchaseDate,
    /// Date the customer received the goods, YYYY-MM-DD.
    ReceivedDate,
    /// Invoice number.
    InvoiceNo,
    /// Serial number of the case's product (三包 counts repairs per serial).
    Serial,
}

const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
const CATEGORIES: &[&str] = &[
    "product_quality",
    "not_as_described",
    "logistics_delay",
    "logistics_damage",
    "lost_parcel",
    "service_attitude",
    "repair_quality",
    "installation",
    "price",
    "promotion",
    "coupon_points",
    "contract",
    "counterfeit",
    "privacy",
    "harassment",
    "other",
];
const CHANNELS: &[&str] = &[
    "in_store",
    "phone",
    "email",
    "web",
    "letter",
    "regulator_transfer",
];
const SALE_CHANNELS: &[&str] = &["in_store", "distance"];
const REMEDIES: &[&str] = &[
    "refund",
    "exchange",
    "repair",
    "partial_refund",
    "compensation",
    "price_difference",
    "coupon_reissue",
    "points_extension",
    "apology",
];

impl CaseField {
    /// Every settable field.
    pub const ALL: [CaseField; 16] = [
        CaseField::Description,
        CaseField::Priority,
        CaseField::Category,
        CaseField::Channel,
        CaseField::SaleChannel,
        CaseField::RequestedRemedy,
        CaseField::SafetyRisk,
        CaseField::CustomerName,
        CaseField::CustomerPhone,
        CaseField::CustomerAddress,
        CaseField::CustomerMemberId,
        CaseField::OrderNo,
        CaseField::PurchaseDate,
        CaseField::ReceivedDate,
        CaseField::InvoiceNo,
        CaseField::Serial,
    ];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseField::Description => "description",
            CaseField::Priority => "priority",
            CaseField::Category => "category",
            CaseField::Channel => "channel",
            CaseField::SaleChannel => "sale_channel",
            CaseField::RequestedRemedy => "requested_remedy",
            CaseField::SafetyRisk => "safety_risk",
            CaseField::CustomerName => "customer_name",
            CaseField::CustomerPhone => "customer_phone",
            CaseField::CustomerAddress => "customer_address",
            CaseField::CustomerMemberId => "customer_member_id",
            CaseField::OrderNo => "order_no",
            CaseField::PurchaseDate => "purchase_date",
            CaseField::ReceivedDate => "received_date",
            CaseField::InvoiceNo => "invoice_no",
            CaseField::Serial => "serial",
        }
    }

    /// Where the field is stored: the root map and the key in it (the
    /// description is the root text itself).
    pub fn place(self) -> (&'static str, &'static str) {
        match self {
            CaseField::Description => (root::DESCRIPTION, ""),
            CaseField::CustomerName => (root::CUSTOMER, "name"),
            CaseField::CustomerPhone => (root::CUSTOMER, "phone"),
            CaseField::CustomerAddress => (root::CUSTOMER, "address"),
            CaseField::CustomerMemberId => (root::CUSTOMER, "member_id"),
            CaseField::OrderNo
            | CaseField::PurchaseDate
            | CaseField::ReceivedDate
            | CaseField::InvoiceNo => (root::ORDER, self.as_str()),
            _ => (root::FIELDS, self.as_str()),
        }
    }

    /// Whether the stored value is a boolean (else a string).
    pub fn is_bool(self) -> bool {
        self == CaseField::SafetyRisk
    }

    /// Whether the value is customer personal data: sealed under the
    /// case's key and kept out of the timeline.
    pub fn is_personal(self) -> bool {
        matches!(
            self,
            CaseField::CustomerName
                | CaseField::CustomerPhone
                | CaseField::CustomerAddress
                | CaseField::CustomerMemberId
        )
    }

    /// Checks a value for this field; the error names the field and what it accepts.
    pub fn validate(self, value: &str) -> Result<(), EditError> {
        let one_of = |allowed: &[&str]| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    self.as_str(),
                    format!(
                        "{value:?} is not allowed: use one of {}",
                        allowed.join(", ")
                    ),
                ))
            }
        };
        match self {
            CaseField::Priority => one_of(PRIORITIES),
            CaseField::Category => one_of(CATEGORIES),
            CaseField::Channel => one_of(CHANNELS),
            CaseField::SaleChannel => one_of(SALE_CHANNELS),
            CaseField::RequestedRemedy => one_of(REMEDIES),
            CaseField::SafetyRisk => one_of(&["true", "false"]),
            CaseField::CustomerPhone => check_phone(value),
            CaseField::PurchaseDate | CaseField::ReceivedDate => {
                chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map(|_| ())
                    .map_err(|_| {
                        invalid(
                            self.as_str(),
                            format!("{value:?} is not a date like 2026-11-23"),
                        )
                    })
            }
            CaseField::Description => check_text(self.as_str(), value, 10_000),
            CaseField::Serial => {
                check_text(self.as_str(), value, 64)?;
                if value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
                {
                    Ok(())
                } else {
                    Err(invalid(
                        self.as_str(),
                        format!("{value:?}: a serial number is letters, digits and - _ . /"),
                    ))
                }
            }
            _ => check_text(self.as_str(), value, 200),
        }
    }
}

impl fmt::Display for CaseField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaseField {
    type Err = EditError;
    fn from_str(s: &str) -> Result<Self, EditError> {
        CaseField::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = CaseField::ALL.iter().map(|f| f.as_str()).collect();
                invalid(
                    "field",
                    format!("{s:?} is not a case field: use one of {}", names.join(", ")),
                )
            })
    }
}

fn ensure_map(tx: &mut Transaction<'_>, key: &str) -> Result<ObjId, AutomergeError> {
    match read::map(tx, &ROOT, key) {
        Some(id) => Ok(id),
        None => tx.put_object(ROOT, key, ObjType::Map),
    }
}

/// Sets one field, after validating the value, personal data in plain
/// text (tests and old documents; devices use [`set_field_sealed`]).
pub fn set_field(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    field: CaseField,
    value: &str,
) -> Result<(), EditError> {
    set_field_sealed(doc, id, ctx, field, value, None)
}

/// Sets one field, after validating the value; a personal field's value is
/// sealed under `key` (see [`super::seal`]). The change is also noted in
/// the timeline (without the value for personal data).
pub fn set_field_sealed(
    doc: &mut Automerge,
    id: CaseId,
    ctx: &EditContext,
    field: CaseField,
    value: &str,
    key: Option<&super::seal::CaseKey>,
) -> Result<(), EditError> {
    field.validate(value)?;
    require_case(doc, id)?;
    if !super::table::may_overwrite(ctx.role, field) {
        let (container, key) = field.place();
        let recorded = read::map(doc, &ROOT, container)
            .is_some_and(|m| matches!(doc.get(&m, key), Ok(Some(_))));
        if recorded {
            return Err(EditError::NotAllowed(format!(
                "{field} is already recorded; only a supervisor or head office may change it"
            )));
        }
    }
    doc.transact::<_, _, AutomergeError>(|tx| {
        match field {
            CaseField::Description => {
                let text = match tx.get(ROOT, root::DESCRIPTION)? {
                    Some((automerge::Value::Object(ObjType::Text), t)) => t,
                    _ => tx.put_object(ROOT, root::DESCRIPTION, ObjType::Text)?,
                };
                // A diff rather than a replacement, so a concurrent edit of
                // another part of the text survives the merge.
                tx.update_text(&text, value)?;
            }
            CaseField::SafetyRisk => {
                let (container, key) = field.place();
                let m = ensure_map(tx, container)?;
                tx.put(&m, key, value == "true")?;
            }
            _ => {
                let (container, at) = field.place();
                let m = ensure_map(tx, container)?;
                if field.is_personal() {
                    tx.put(&m, at, stored_personal(key, id, ctx, field, value))?;
                } else {
                    tx.put(&m, at, value)?;
                }
            }
        }
        let e = put_entry(tx, root::TIMELINE, ctx, "field_changed")?;
        tx.put(&e, entry::FIELD, field.as_str())?;
        if !field.is_personal() && field != CaseField::Description {
            tx.put(&e, entry::VALUE, value)?;
        }
        Ok(())
    })
    .map_err(|f| EditError::Document(f.error))?;
    Ok(())
}
