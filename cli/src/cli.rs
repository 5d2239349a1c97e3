//! The `aftercase` command line for store staff, technicians and scripts.

use aftercase_client::{BookingRequest, Device, LiveEvent, SyncError};
use aftercase_sync::case::offer::Decision;
use aftercase_sync::case::service::Survey;
use aftercase_sync::case::{CaseField, CaseKind, CaseView, ContactChannel};
use aftercase_sync::labels;
use aftercase_sync::rules::freight::{FreightFacts, Payer};
use aftercase_sync::CaseId;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The environment variables `aftercase` reads besides those of its flags
/// (clap lists `AFTERCASE_DATA_DIR` beside `--data-dir`).
const ENVIRONMENT: &str = "\
Environment:
  AFTERCASE_DATA_DIR  Same as --data-dir.
  AFTERCASE_LOG       Log filter, e.g. debug (default warn).
                      Other crates stay at info or less whatever it says.
                      RUST_LOG is not read.";

/// Aftercase on this device: record after-sales cases offline and sync them
/// with the relay when a connection exists.
#[derive(Debug, Parser)]
#[command(name = "aftercase", version, after_help = ENVIRONMENT)]
pub struct Cli {
    /// Where this device keeps its cases.
    #[arg(
        long,
        global = true,
        env = "AFTERCASE_DATA_DIR",
        default_value = "./data/device"
    )]
    data_dir: PathBuf,
    /// The app this command line runs for, reported to the relay when it
    /// syncs (head office sees which devices run what); the library's own
    /// version is always added.
    #[arg(long, global = true, env = "AFTERCASE_APP_VERSION")]
    app_version: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set up this device with the relay's address and your device token.
    Init {
        /// The relay, e.g. http://127.0.0.1:8080
        #[arg(long)]
        relay: String,
        /// The token from `aftercase-relay token`.
        #[arg(long)]
        token: String,
    },
    /// Record and look up cases (works offline).
    #[command(subcommand)]
    Case(CaseCommand),
    /// Send your changes to the relay and receive everyone else's.
    /// Evidence (photos, documents) is sent after the cases.
    Sync {
        /// Stay connected: receive changes as they happen, reconnect when the
        /// connection drops.
        #[arg(long)]
        watch: bool,
        /// Also download the evidence of your cases that this device does
        /// not hold (otherwise it is fetched when opened).
        #[arg(long)]
        evidence: bool,
    },
    /// Evidence by its hash.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// A technician's bookings on one day (store's local time), from the
    /// cases on this device, with scheduling conflicts marked. A
    /// technician sees only his own.
    Schedule {
        /// The technician's user id (all technicians when left out).
        #[arg(long)]
        tech: Option<String>,
        /// The day, YYYY-MM-DD (default today).
        #[arg(long)]
        date: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the cases where two devices moved the case in different
    /// directions and a supervisor has to choose, and the scheduling
    /// conflicts (one technician booked twice at once).
    Conflicts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or publish the after-sales policy (limits, deadlines, windows).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show what is waiting to be synced and when the last sync finished.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Write a piece of evidence to a file, fetching it from the relay if
    /// this device does not hold it.
    Get {
        /// Its SHA-256, as `case evidence` lists it.
        hash: String,
        /// The file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the policy this device decides under, as JSON.
    Show,
    /// Publish a new policy version from a JSON file (head office only). The
    /// file holds every field of `policy show` with a higher `version`.
    Publish {
        /// The JSON file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// Open a new case; prints its id on the last line.
    New {
        /// repair, installation, return_exchange, damage_claim or complaint.
        kind: CaseKind,
        /// The customer's name.
        #[arg(long)]
        customer_name: String,
        /// The customer's phone number.
        #[arg(long)]
        customer_phone: String,
        /// The product's SKU.
        #[arg(long)]
        sku: Option<String>,
        /// What the customer reports.
        #[arg(long)]
        description: Option<String>,
    },
    /// Add a note to the case's log (what you did, what you promised).
    Note {
        /// Case id.
        id: CaseId,
        /// The note.
        text: String,
    },
    /// Change a field, e.g. `case set ID priority high`.
    Set {
        /// Case id.
        id: CaseId,
        /// description, priority, category, channel, sale_channel,
        /// requested_remedy, safety_risk, customer_name, customer_phone,
        /// customer_address, customer_member_id, order_no, purchase_date,
        /// received_date or invoice_no.
        field: String,
        /// The new value.
        value: String,
    },
    /// Record a call, text or visit to the customer.
    Contact {
        /// Case id.
        id: CaseId,
        /// phone, sms or visit.
        #[arg(long)]
        channel: String,
        /// What came of it, e.g. "no answer" or "agreed visit Tuesday 10:00".
        #[arg(long)]
        outcome: String,
        /// outbound (the store reached out, the default) or inbound (the
        /// customer called or came in: no calling hours or daily limit).
        #[arg(long, default_value = "outbound")]
        direction: String,
        /// A supervisor's reason for calling outside 10:00-18:00 or beyond
        /// 3 calls a day. Without it such a call is still recorded, flagged.
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// Record the customer's satisfaction survey: each score from
    /// 1 (very dissatisfied) to 5 (very satisfied).
    Survey {
        /// Case id.
        id: CaseId,
        /// Product matched its description.
        #[arg(long)]
        description: u8,
        /// Service attitude.
        #[arg(long)]
        attitude: u8,
        /// Speed of service.
        #[arg(long)]
        speed: u8,
        /// Delivery and logistics.
        #[arg(long)]
        logistics: u8,
        /// What the customer said.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Move the case up the escalation ladder: store, supervisor,
    /// head_office, written_complaint, mediation, administrative_complaint
    /// (12315), arbitration, litigation.
    Escalate {
        /// Case id.
        id: CaseId,
        /// The step.
        level: String,
        /// External reference (complaint number, mediation file...).
        #[arg(long = "ref")]
        reference: Option<String>,
    },
    /// Decide who pays freight from what you know; prints the payer of each
    /// leg and the rule that decided it.
    Freight {
        /// Case id.
        id: CaseId,
        /// An explicit agreement names the payer: seller or customer.
        #[arg(long)]
        agreed_payer: Option<String>,
        /// The agreement would cut the customer's statutory rights.
        #[arg(long)]
        agreement_cuts_rights: bool,
        /// Quality problem, not as described, wrong item, late dispatch,
        /// undisclosed flaw, unclear freight terms, wrong return address or a
        /// refused return.
        #[arg(long)]
        seller_at_fault: bool,
        /// The customer caused the damage.
        #[arg(long)]
        customer_caused_damage: bool,
        /// The customer returns for their own reasons.
        #[arg(long)]
        own_reason: bool,
        /// The item shipped free.
        #[arg(long)]
        free_shipping: bool,
        /// The return qualifies for the 7-day no-reason return.
        #[arg(long)]
        no_reason_eligible: bool,
        /// The agreement says nothing about freight.
        #[arg(long)]
        agreement_silent: bool,
        /// Customer and store disagree on who pays.
        #[arg(long)]
        disputed: bool,
        /// The store picks the goods up after delivery damage.
        #[arg(long)]
        pickup_after_delivery_damage: bool,
        /// Supervisors: set the payers by hand (seller, customer or store),
        /// e.g. `--override seller,customer --reason "..."`.
        #[arg(long = "override", value_name = "OUTBOUND,RETURN")]
        override_payers: Option<String>,
        /// Why the rules are overridden.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move the case to its next step, e.g. `case transition ID confirmed`.
    /// `case show ID` lists the steps allowed from where it is.
    Transition {
        /// Case id.
        id: CaseId,
        /// The state to move to.
        state: String,
        /// Why (kept in the case log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Settle a conflict by choosing which move stands (supervisor, head office).
    Resolve {
        /// Case id.
        id: CaseId,
        /// Conflict id, from `aftercase conflicts`.
        conflict_id: String,
        /// The state that stands.
        #[arg(long)]
        choose: String,
    },
    /// Book a technician or installer for a repair or installation (store
    /// staff and supervisors). A confirmed repair is dispatched and a
    /// prepared installation scheduled with the booking; the case is
    /// assigned to the technician. Prints the booking id on the last line.
    Book {
        /// Case id.
        id: CaseId,
        /// The technician's user id (listed for your store in the policy).
        #[arg(long)]
        tech: String,
        /// Local start, "2026-12-08 10:00" (the store's time zone).
        #[arg(long)]
        at: String,
        /// Length, e.g. 90m, 2h, 1h30m.
        #[arg(long)]
        duration: String,
        /// The customer's visit window: the technician arrives within this
        /// long after the start (default 60m, at most the length).
        #[arg(long)]
        window: Option<String>,
        /// Where to go (a reference to the customer's address).
        #[arg(long)]
        address: Option<String>,
        /// Book outside working hours, with this reason (supervisor).
        #[arg(long = "override")]
        hours_override: Option<String>,
    },
    /// Move the case's appointment to a new time (and technician), with a
    /// reason; the visit-window deadline moves with it.
    Reschedule {
        /// Case id.
        id: CaseId,
        /// Local start, "2026-12-08 14:00".
        #[arg(long)]
        at: String,
        /// Why (customer request, store, technician unavailable, no-show, ...).
        #[arg(long)]
        reason: String,
        /// Another technician (default: the same).
        #[arg(long)]
        tech: Option<String>,
        /// A new length (default: the same).
        #[arg(long)]
        duration: Option<String>,
        /// The visit window (default 60m).
        #[arg(long)]
        window: Option<String>,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
        /// Book outside working hours, with this reason (supervisor).
        #[arg(long = "override")]
        hours_override: Option<String>,
    },
    /// Cancel the case's appointment, with a reason.
    CancelBooking {
        /// Case id.
        id: CaseId,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// The technician arrived (his own booking).
    Arrive {
        /// Case id.
        id: CaseId,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// The visit is done (his own booking).
    Complete {
        /// Case id.
        id: CaseId,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// The customer was not there (his own booking); counts toward the
    /// customer's no-shows.
    NoShow {
        /// Case id.
        id: CaseId,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// Give the case to a technician or installer (their user id). They
    /// receive only the cases assigned to them.
    Assign {
        /// Case id.
        id: CaseId,
        /// The technician's user id.
        technician: String,
    },
    /// Offer the customer compensation; prints the offer id on the last line.
    /// Above your limit the offer stays `proposed` until a supervisor or
    /// head office approves it.
    Offer {
        /// Case id.
        id: CaseId,
        /// virtual (coupon, points) or cash (refund, red packet, gift).
        #[arg(long)]
        tier: String,
        /// Amount in yuan, e.g. 100 or 49.90.
        #[arg(long)]
        amount: String,
        /// What the offer is for.
        #[arg(long)]
        note: Option<String>,
    },
    /// Attach a photo, video or PDF as evidence (its type is read from the
    /// bytes); prints its SHA-256 on the last line.
    Attach {
        /// Case id.
        id: CaseId,
        /// The file.
        file: PathBuf,
        /// photo, video, receipt, invoice, chat, test_report, waybill or signature.
        #[arg(long = "type")]
        kind: String,
        /// What it shows.
        #[arg(long)]
        caption: Option<String>,
    },
    /// List a case's evidence.
    Evidence {
        /// Case id.
        id: CaseId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a piece of evidence (supervisors and head office), with a reason.
    EvidenceRemove {
        /// Case id.
        id: CaseId,
        /// Its SHA-256, from `case evidence`.
        hash: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Drop this device's changes to a case the relay refused: the local
    /// copy is kept in the device's reject log and the relay's version is
    /// fetched at the next sync.
    Discard {
        /// Case id.
        id: CaseId,
    },
    /// Approve a proposed offer (within your limit).
    Approve {
        /// Case id.
        id: CaseId,
        /// Offer id.
        offer_id: String,
    },
    /// Reject a proposed offer (within your limit).
    RejectOffer {
        /// Case id.
        id: CaseId,
        /// Offer id.
        offer_id: String,
    },
    /// The customer turned the offer down.
    DeclineOffer {
        /// Case id.
        id: CaseId,
        /// Offer id.
        offer_id: String,
    },
    /// The customer took the offer.
    AcceptOffer {
        /// Case id.
        id: CaseId,
        /// Offer id.
        offer_id: String,
    },
    /// Take an offer back (an accepted one: supervisors, to settle two
    /// offers accepted at once).
    WithdrawOffer {
        /// Case id.
        id: CaseId,
        /// Offer id.
        offer_id: String,
    },
    /// List the cases on this device.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one case.
    Show {
        /// Case id.
        id: CaseId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Parses arguments, runs the command, prints a one-line reason on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init("warn");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aftercase: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The case's kind as `repair 维修` (`-` when it has none).
fn kind_text(v: &CaseView) -> String {
    v.kind
        .as_deref()
        .map_or_else(|| "-".into(), labels::kind_text)
}

/// The case's status as `dispatched 派工`: the code first, so scripts
/// matching the English word keep working.
fn status_text(v: &CaseView) -> Option<String> {
    let status = v.status.as_deref()?;
    Some(labels::state_text(v.kind.as_deref().unwrap_or(""), status))
}

fn print_case(v: &CaseView, policy: &aftercase_sync::policy::Policy) {
    let local = |ms: i64| aftercase_sync::rules::calendar::format_local(policy, ms);
    let or = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    println!("case     {} ({})", v.id, or(&v.case_no));
    println!(
        "kind     {}   status {}",
        kind_text(v),
        status_text(v).unwrap_or_else(|| "-".into())
    );
    if v.allowed_transitions.is_empty() {
        println!("next     (none)");
    } else {
        println!("next     {}", v.allowed_transitions.join(", "));
    }
    for c in v.conflicts.iter().filter(|c| c.status == "open") {
        println!(
            "CONFLICT {}: from {} to {} (by {}): a supervisor must choose with `case resolve`",
            c.id,
            c.from,
            c.options.join(" or "),
            c.proposed_by.join(" / ")
        );
    }
    println!(
        "store    {}   opened {} by {}",
        or(&v.store_id),
        or(&v.created_at),
        or(&v.created_by)
    );
    println!(
        "customer {}   {}",
        or(&v.customer.name),
        or(&v.customer.phone)
    );
    if !v.description.is_empty() {
        println!("problem  {}", v.description);
    }
    if let Some(a) = &v.assignee {
        println!("assigned {a}");
    }
    if let Some(s) = &v.sanbao {
        let remedies: Vec<&str> = s
            .remedies
            .iter()
            .map(|r| match r {
                aftercase_sync::rules::warranty::Remedy::Return => "return 退货",
                aftercase_sync::rules::warranty::Remedy::Exchange => "exchange 换货",
                aftercase_sync::rules::warranty::Remedy::Repair => "repair 维修",
            })
            .collect();
        println!(
            "三包     serial {}: repaired {} time(s) in warranty ({}); the customer may choose {}",
            s.serial,
            s.repairs,
            s.cases.join(", "),
            remedies.join(" or ")
        );
    }
    for b in &v.bookings {
        println!(
            "booking  {}  {} {}-{} (arrive by {})  {}{}",
            b.id,
            b.tech,
            local(b.start_ms),
            &local(b.end_ms())[11..],
            &local(b.window_end_ms)[11..],
            serde_json::to_value(b.status)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_default(),
            b.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    for c in &v.schedule_conflicts {
        println!(
            "CONFLICT {}: {} is booked twice {}-{} (this case and case {}): a supervisor reschedules one with `case reschedule`",
            c.id,
            c.tech,
            local(c.first.start.max(c.second.start)),
            &local(c.first.end.min(c.second.end))[11..],
            c.other(v.id.parse().unwrap_or(c.first.case))
        );
    }
    for t in &v.timers {
        let state = match (t.done, t.breached) {
            (true, false) => "met",
            (true, true) => "met late",
            (false, true) => "OVERDUE",
            (false, false) => "open",
        };
        let name = labels::text(&t.name, labels::timer(&t.name));
        println!("deadline {name:<22} due {}  {state}", t.due);
    }
    if let Some(f) = &v.freight {
        println!(
            "freight  outbound {}, return {} (rule {}: {})",
            f.outbound, f.return_leg, f.rule, f.rule_text
        );
    }
    if let Some(e) = &v.escalation {
        println!("escalated to {e}");
    }
    if let Some(s) = &v.survey {
        println!(
            "survey   description {}, attitude {}, speed {}, logistics {}",
            s.description, s.attitude, s.speed, s.logistics
        );
    }
    for o in &v.offers {
        println!(
            "offer    {}  {} ¥{}  {}  (by {})",
            o.id, o.tier, o.amount, o.status, o.proposed_by
        );
    }
    println!("log:");
    for e in &v.timeline {
        let what = e
            .text
            .clone()
            .or_else(|| e.field.as_ref().map(|f| format!("{f} changed")))
            .unwrap_or_default();
        println!(
            "  {}  {:<13} {}  ({} on {})",
            or(&e.at),
            e.kind,
            what,
            or(&e.author),
            or(&e.device)
        );
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.data_dir;
    let app_version = cli.app_version;
    // Only sync and policy publishing connect: they report the app version.
    let connecting = |dir: &std::path::Path| -> anyhow::Result<Device> {
        let device = Device::open(dir)?;
        Ok(match &app_version {
            Some(v) => device.with_app_version(v)?,
            None => device,
        })
    };
    match cli.command {
        Command::Init { relay, token } => {
            let cfg = Device::init(&dir, &relay, &token)?;
            println!(
                "device {} of store {} set up for {} ({}), relay {}",
                cfg.device, cfg.store, cfg.user, cfg.role, cfg.relay
            );
        }
        Command::Case(c) => {
            let device = Device::open(&dir)?;
            match c {
                CaseCommand::New {
                    kind,
                    customer_name,
                    customer_phone,
                    sku,
                    description,
                } => {
                    let id = device.create_case(
                        kind,
                        &customer_name,
                        &customer_phone,
                        sku,
                        description,
                    )?;
                    let no = device.case(id)?.and_then(|v| v.case_no).unwrap_or_default();
                    eprintln!("saved {kind} case {no}");
                    println!("{id}");
                }
                CaseCommand::Note { id, text } => {
                    device.add_note(id, &text)?;
                    eprintln!("note saved");
                }
                CaseCommand::Set { id, field, value } => {
                    let field: CaseField = field.parse()?;
                    device.set_field(id, field, &value)?;
                    eprintln!("{field} saved");
                }
                CaseCommand::Contact {
                    id,
                    channel,
                    outcome,
                    direction,
                    override_reason,
                } => {
                    let channel: ContactChannel = channel.parse()?;
                    let direction = direction.parse()?;
                    let flags = device.log_contact(
                        id,
                        channel,
                        direction,
                        &outcome,
                        override_reason.as_deref(),
                    )?;
                    if flags.is_empty() {
                        eprintln!("contact saved");
                    } else {
                        eprintln!(
                            "contact saved, flagged for head office: {}",
                            flags.join("; ")
                        );
                    }
                }
                CaseCommand::Survey {
                    id,
                    description,
                    attitude,
                    speed,
                    logistics,
                    comment,
                } => {
                    device.survey(
                        id,
                        &Survey {
                            description,
                            attitude,
                            speed,
                            logistics,
                            comment,
                        },
                    )?;
                    eprintln!("survey saved");
                }
                CaseCommand::Escalate {
                    id,
                    level,
                    reference,
                } => {
                    device.escalate(id, &level, reference.as_deref())?;
                    eprintln!("escalated to {level}");
                }
                CaseCommand::Freight {
                    id,
                    agreed_payer,
                    agreement_cuts_rights,
                    seller_at_fault,
                    customer_caused_damage,
                    own_reason,
                    free_shipping,
                    no_reason_eligible,
                    agreement_silent,
                    disputed,
                    pickup_after_delivery_damage,
                    override_payers,
                    reason,
                } => {
                    if let Some(payers) = override_payers {
                        let (out, ret) = payers.split_once(',').ok_or_else(|| {
                            anyhow::anyhow!(
                                "--override takes OUTBOUND,RETURN, e.g. seller,customer"
                            )
                        })?;
                        let reason =
                            reason.ok_or_else(|| anyhow::anyhow!("--override needs --reason"))?;
                        let f = device.override_freight(id, out, ret, &reason)?;
                        println!(
                            "outbound: {}  return: {}  ({})",
                            f.outbound, f.return_leg, f.rule_text
                        );
                        return Ok(());
                    }
                    let agreed_payer = match agreed_payer.as_deref() {
                        None => None,
                        Some("seller") => Some(Payer::Seller),
                        Some("customer") => Some(Payer::Customer),
                        Some(other) => {
                            anyhow::bail!("agreed payer {other:?}: use seller or customer")
                        }
                    };
                    let f = device.decide_freight(
                        id,
                        &FreightFacts {
                            agreed_payer,
                            agreement_cuts_statutory_rights: agreement_cuts_rights,
                            seller_at_fault,
                            customer_caused_damage,
                            customer_own_reason: own_reason,
                            free_shipping,
                            no_reason_eligible,
                            agreement_silent,
                            payer_disputed: disputed,
                            pickup_after_delivery_damage,
                        },
                    )?;
                    println!(
                        "outbound: {}  return: {}  (rule {}: {})",
                        f.outbound, f.return_leg, f.rule, f.rule_text
                    );
                }
                CaseCommand::Transition { id, state, reason } => {
                    let follow_up = device.transition(id, &state, reason.as_deref())?;
                    eprintln!("moved to {state}");
                    if let Some(new) = follow_up {
                        let kind = device.case(new)?.and_then(|v| v.kind).unwrap_or_default();
                        eprintln!("opened linked {kind} case {new}");
                    }
                }
                CaseCommand::Resolve {
                    id,
                    conflict_id,
                    choose,
                } => {
                    device.resolve(id, &conflict_id, &choose)?;
                    eprintln!("conflict {conflict_id} resolved: {choose}");
                }
                CaseCommand::Attach {
                    id,
                    file,
                    kind,
                    caption,
                } => {
                    let hash = device.attach(id, &file, &kind, caption.as_deref())?;
                    eprintln!("{kind} attached");
                    println!("{hash}");
                }
                CaseCommand::Evidence { id, json } => {
                    let v = device.case(id)?.ok_or_else(|| {
                        anyhow::anyhow!("no case {id} on this device (try `aftercase sync`)")
                    })?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v.evidence)?);
                    } else {
                        for e in &v.evidence {
                            let removed = e
                                .removed
                                .as_ref()
                                .map(|r| format!("  REMOVED: {}", r.reason))
                                .unwrap_or_default();
                            println!(
                                "{}  {:<11} {:>10} B  {:<16} {}{}",
                                e.hash,
                                e.kind,
                                e.size,
                                e.media_type,
                                e.caption.clone().unwrap_or_default(),
                                removed
                            );
                        }
                    }
                }
                CaseCommand::EvidenceRemove { id, hash, reason } => {
                    device.remove_evidence(id, &hash, &reason)?;
                    eprintln!("evidence removed");
                }
                CaseCommand::Offer {
                    id,
                    tier,
                    amount,
                    note,
                } => {
                    let offer = device.offer(id, &tier, &amount, note.as_deref())?;
                    let status = device
                        .case(id)?
                        .and_then(|v| v.offers.into_iter().find(|o| o.id == offer))
                        .map(|o| o.status)
                        .unwrap_or_default();
                    eprintln!("offer saved: {status}");
                    println!("{offer}");
                }
                CaseCommand::Book {
                    id,
                    tech,
                    at,
                    duration,
                    window,
                    address,
                    hours_override,
                } => {
                    let booking = device.book(
                        id,
                        &BookingRequest {
                            tech: tech.clone(),
                            at: at.clone(),
                            duration,
                            window,
                            address,
                            hours_override,
                        },
                    )?;
                    let status = device
                        .case(id)?
                        .and_then(|v| status_text(&v))
                        .unwrap_or_default();
                    eprintln!("booked {tech} at {at}; case is {status}");
                    println!("{booking}");
                }
                CaseCommand::Reschedule {
                    id,
                    at,
                    reason,
                    tech,
                    duration,
                    window,
                    booking,
                    hours_override,
                } => {
                    device.reschedule(
                        id,
                        booking.as_deref(),
                        &BookingRequest {
                            tech: tech.unwrap_or_default(),
                            at: at.clone(),
                            duration: duration.unwrap_or_default(),
                            window,
                            address: None,
                            hours_override,
                        },
                        &reason,
                    )?;
                    eprintln!("rescheduled to {at}");
                }
                CaseCommand::CancelBooking {
                    id,
                    reason,
                    booking,
                } => {
                    device.cancel_booking(id, booking.as_deref(), &reason)?;
                    eprintln!("booking cancelled");
                }
                CaseCommand::Arrive { id, booking } => {
                    device.record_visit(id, booking.as_deref(), "arrive")?;
                    eprintln!("arrival recorded");
                }
                CaseCommand::Complete { id, booking } => {
                    device.record_visit(id, booking.as_deref(), "complete")?;
                    eprintln!("visit completed");
                }
                CaseCommand::NoShow { id, booking } => {
                    device.record_visit(id, booking.as_deref(), "no_show")?;
                    eprintln!("no-show recorded");
                }
                CaseCommand::Assign { id, technician } => {
                    device.assign(id, &technician)?;
                    eprintln!("assigned to {technician}");
                }
                CaseCommand::Discard { id } => {
                    let kept = device.discard(id)?;
                    eprintln!(
                        "local changes to case {id} dropped ({kept} bytes kept in the reject log); the relay's version comes with the next sync"
                    );
                }
                CaseCommand::Approve { id, offer_id } => {
                    device.decide(id, &offer_id, Decision::Approve)?;
                    eprintln!("offer approved");
                }
                CaseCommand::RejectOffer { id, offer_id } => {
                    device.decide(id, &offer_id, Decision::Reject)?;
                    eprintln!("offer rejected");
                }
                CaseCommand::DeclineOffer { id, offer_id } => {
                    device.decide(id, &offer_id, Decision::Decline)?;
                    eprintln!("offer declined by the customer");
                }
                CaseCommand::AcceptOffer { id, offer_id } => {
                    device.decide(id, &offer_id, Decision::Accept)?;
                    eprintln!("offer accepted by the customer");
                }
                CaseCommand::WithdrawOffer { id, offer_id } => {
                    device.decide(id, &offer_id, Decision::Withdraw)?;
                    eprintln!("offer withdrawn");
                }
                CaseCommand::List { json } => {
                    let cases = device.cases()?;
                    if json {
                        print_json(&cases)?;
                    } else if cases.is_empty() {
                        println!("no cases on this device");
                    } else {
                        for v in cases {
                            println!(
                                "{}  {:<18} {:<20} {:<24} {}",
                                v.id,
                                v.case_no.clone().unwrap_or_default(),
                                kind_text(&v),
                                status_text(&v).unwrap_or_default(),
                                v.customer.name.unwrap_or_default()
                            );
                        }
                    }
                }
                CaseCommand::Show { id, json } => {
                    let v = device.case(id)?.ok_or_else(|| {
                        anyhow::anyhow!("no case {id} on this device (try `aftercase sync`)")
                    })?;
                    if json {
                        print_json(&v)?;
                    } else {
                        print_case(&v, &device.policy());
                        if let Some(phone) = &v.customer.phone {
                            let n = device.no_shows_of(phone)?;
                            if n > 0 {
                                println!("no-shows {n} by this customer (cases on this device)");
                            }
                        }
                    }
                }
            }
        }
        Command::Evidence(EvidenceCommand::Get { hash, output }) => {
            let raw = aftercase_sync::case::blob::parse_hash(&hash).ok_or_else(|| {
                anyhow::anyhow!(
                    "{hash} is not an evidence hash (64 hex digits, as `case evidence` lists)"
                )
            })?;
            let device = Device::open(&dir)?;
            let held = device.evidence_bytes(&hash)?;
            let found = device.case_of_evidence(&raw)?;
            // The store admits one opener at a time.
            drop(device);
            let bytes = match held {
                Some(b) => b,
                None => {
                    let (case, size) = found.ok_or_else(|| {
                        anyhow::anyhow!(
                            "no case on this device has evidence {hash} (try `aftercase sync`)"
                        )
                    })?;
                    let device = connecting(&dir)?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let want = aftercase_sync::replica::blobs::MissingBlob {
                        case,
                        hash: raw,
                        size,
                    };
                    let report = rt.block_on(device.sync_fetching(vec![want], |_| {}))?;
                    if let Some((_, why)) =
                        report.evidence_failures.iter().find(|(h, _)| *h == hash)
                    {
                        anyhow::bail!("could not fetch evidence {hash}: {why}");
                    }
                    if !report.evidence_supported {
                        anyhow::bail!(
                            "the relay does not transfer evidence yet (it runs an older version)"
                        );
                    }
                    device.evidence_bytes(&hash)?.ok_or_else(|| {
                        anyhow::anyhow!("evidence {hash} did not arrive; try again")
                    })?
                }
            };
            std::fs::write(&output, &bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
            eprintln!("{} bytes written to {}", bytes.len(), output.display());
        }
        Command::Sync { watch, evidence } => {
            let device = connecting(&dir)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            if watch {
                let err: SyncError = rt.block_on(device.run_live(|ev| match ev {
                    LiveEvent::Connected => eprintln!("connected to {}", device.config().relay),
                    LiveEvent::Synced(r) => eprintln!(
                        "synced: {} case(s) sent, {} received; watching for changes",
                        r.uploaded, r.downloaded
                    ),
                    LiveEvent::Received(case) => eprintln!("received a change to case {case}"),
                    LiveEvent::Progress(p) if p.total == 0 => show_evidence(&p.evidence),
                    LiveEvent::Progress(p) => {
                        eprintln!(
                            "receiving cases: {}/{} ({}%)",
                            p.received,
                            p.total,
                            p.percent()
                        )
                    }
                    LiveEvent::Retrying { reason, in_secs } => {
                        eprintln!("{reason}; retrying in {in_secs}s")
                    }
                    LiveEvent::Refused { case, code, reason } => {
                        eprintln!("relay refused changes to case {case} [{code}]: {reason}")
                    }
                    // The error it ends with is printed below.
                    LiveEvent::Stopped { .. } => {}
                }));
                return Err(err.into());
            }
            let mut last_percent = None;
            let mut last_evidence = None;
            let want = if evidence {
                device.missing_evidence()?
            } else {
                Vec::new()
            };
            let report = rt.block_on(device.sync_fetching(want, |p| {
                let pct = p.percent();
                if p.total > 0 && last_percent != Some(pct) {
                    eprintln!("receiving cases: {}/{} ({pct}%)", p.received, p.total);
                    last_percent = Some(pct);
                }
                let e = p.evidence;
                let done = (e.uploaded + e.failed, e.downloaded);
                if last_evidence != Some(done) {
                    show_evidence(&e);
                    last_evidence = Some(done);
                }
            }))?;
            println!(
                "sync complete: {} case(s) sent, {} received",
                report.uploaded, report.downloaded
            );
            let e = report.evidence;
            if e.upload_total + e.download_total > 0 {
                println!(
                    "evidence: {} of {} sent ({}), {} of {} received ({})",
                    e.uploaded,
                    e.upload_total,
                    mb(e.bytes_sent),
                    e.downloaded,
                    e.download_total,
                    mb(e.bytes_received)
                );
            }
            for (hash, why) in &report.evidence_failures {
                println!("evidence {hash}: {why}");
            }
            let waiting = device.status()?.evidence_pending;
            if waiting > 0 && !report.evidence_supported {
                println!("evidence: {waiting} piece(s) wait on this device: the relay does not transfer evidence yet (it runs an older version)");
            }
        }
        Command::Schedule { tech, date, json } => {
            let device = Device::open(&dir)?;
            let policy = device.policy();
            let rows = device.schedule(tech.as_deref(), date.as_deref())?;
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("no bookings");
            } else {
                for r in rows {
                    let b = &r.booking;
                    println!(
                        "{}-{}  {:<12} {:<10} {}  {}{}",
                        aftercase_sync::rules::calendar::format_local(&policy, b.start_ms),
                        &aftercase_sync::rules::calendar::format_local(&policy, b.end_ms())[11..],
                        b.tech,
                        serde_json::to_value(b.status)?.as_str().unwrap_or(""),
                        r.case_no.clone().unwrap_or_else(|| r.case.clone()),
                        r.kind.clone().unwrap_or_default(),
                        if r.conflicts.is_empty() {
                            String::new()
                        } else {
                            format!("  CONFLICT {}", r.conflicts.join(" "))
                        }
                    );
                }
            }
        }
        Command::Conflicts { json } => {
            let device = Device::open(&dir)?;
            let mut rows = Vec::new();
            let policy = device.policy();
            for c in device.schedule_conflicts()? {
                if !json {
                    let local =
                        |ms: i64| aftercase_sync::rules::calendar::format_local(&policy, ms);
                    println!(
                        "{}  {}  scheduling conflict {}: {} booked twice {} to {}",
                        c.first.case,
                        c.second.case,
                        c.id,
                        c.tech,
                        local(c.first.start.max(c.second.start)),
                        &local(c.first.end.min(c.second.end))[11..]
                    );
                }
                rows.push(serde_json::json!({
                    "case": c.first.case,
                    "other_case": c.second.case,
                    "conflict": c,
                }));
            }
            for v in device.cases()? {
                for c in v.conflicts.iter().filter(|c| c.status == "open") {
                    rows.push(serde_json::json!({
                        "case": v.id,
                        "case_no": v.case_no,
                        "kind": v.kind,
                        "conflict": c,
                    }));
                    if !json {
                        println!(
                            "{}  {}  conflict {}: {} -> {} (by {})",
                            v.id,
                            v.case_no.clone().unwrap_or_default(),
                            c.id,
                            c.from,
                            c.options.join(" or "),
                            c.proposed_by.join(" / ")
                        );
                    }
                }
            }
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("no open conflicts");
            }
        }
        Command::Policy(PolicyCommand::Show) => {
            let device = Device::open(&dir)?;
            print_json(&device.policy())?;
        }
        Command::Policy(PolicyCommand::Publish { file }) => {
            let json = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let device = connecting(&dir)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let v = rt.block_on(device.publish_policy(&json))?;
            println!("policy version {v} is in force");
        }
        Command::Status { json } => {
            let device = Device::open(&dir)?;
            let s = device.status()?;
            if json {
                print_json(&s)?;
            } else {
                println!("pending changes: {} case(s)", s.pending_cases);
                if let Some(oldest) = &s.oldest_pending {
                    println!("oldest pending:  {oldest}");
                }
                println!(
                    "last sync:       {}",
                    s.last_sync.as_deref().unwrap_or("never")
                );
                println!("relay:           {}", s.relay);
                println!(
                    "evidence:        {} waiting to upload, {} kept here ({})",
                    s.evidence_pending,
                    s.evidence_cached,
                    mb(s.evidence_cached_bytes)
                );
                for (hash, why) in &s.evidence_refused {
                    println!("  evidence {hash} refused by the relay: {why}");
                }
                if !s.refused.is_empty() {
                    println!("refused by the relay: {} case(s)", s.refused.len());
                    for r in &s.refused {
                        println!("  {}  [{}] {}", r.case, r.code, r.reason);
                    }
                    println!(
                        "  fix and sync again, or drop your changes with `aftercase case discard ID`"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Bytes in megabytes for people.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// One line of evidence progress.
fn show_evidence(e: &aftercase_sync::protocol::BlobProgress) {
    if e.upload_total > 0 {
        eprintln!(
            "sending evidence: {}/{} ({} of {})",
            e.uploaded,
            e.upload_total,
            mb(e.bytes_sent),
            mb(e.upload_bytes)
        );
    }
    if e.download_total > 0 {
        eprintln!(
            "receiving evidence: {}/{} ({})",
            e.downloaded,
            e.download_total,
            mb(e.bytes_received)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_names_every_environment_variable_the_cli_reads() {
        let help = Cli::command().render_help().to_string();
        for var in [crate::logging::ENV, "AFTERCASE_DATA_DIR"] {
            assert!(help.contains(var), "--help does not mention {var}:\n{help}");
        }
    }
}
