//! The `aftercase` command line's arguments: what a store worker, a
//! technician or a script may type.

use crate::lang::Lang;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The environment variables `aftercase` reads besides those of its flags
/// (clap lists `AFTERCASE_DATA_DIR` beside `--data-dir`).
const ENVIRONMENT: &str = "\
Environment:
  AFTERCASE_DATA_DIR  Same as --data-dir.
  AFTERCASE_LANG      Same as --lang.
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
    pub data_dir: PathBuf,
    /// The app this command line runs for, reported to the relay when it
    /// syncs (head office sees which devices run what); the library's own
    /// version is always added.
    #[arg(long, global = true, env = "AFTERCASE_APP_VERSION")]
    pub app_version: Option<String>,
    /// Language of what people read: zh (中文, the default) or en. JSON
    /// keeps the stable English codes whatever this says.
    #[arg(long, global = true, env = crate::lang::ENV, default_value = "zh")]
    pub lang: Lang,
    /// Print JSON for programs (every command; see "JSON output" in the
    /// README): one object with a `schema_version` field.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    },
    /// List the cases where two devices moved the case in different
    /// directions and a supervisor has to choose, and the scheduling
    /// conflicts (one technician booked twice at once).
    Conflicts,
    /// Show or publish the after-sales policy (limits, deadlines, windows).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show who this device belongs to, when its token expires, what is
    /// waiting to be synced and when the last sync finished.
    Status,
    /// Wipe this device: every case key, every case, every piece of
    /// evidence, the relay address and the token. Work not yet synced is
    /// lost. What a device reported lost does by itself when it next
    /// reaches the relay.
    Wipe {
        /// Confirms the wipe (nothing happens without it).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
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
pub enum PolicyCommand {
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
pub enum CaseCommand {
    /// Open a new case; prints its case number on the last line (with
    /// `--json`, its id as well).
    New {
        /// repair (维修), installation (安装), return_exchange (退换货),
        /// damage_claim (破损理赔) or complaint (投诉).
        kind: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// The note.
        text: String,
    },
    /// Change a field, e.g. `case set ID priority high`.
    Set {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// The step.
        level: String,
        /// External reference (complaint number, mediation file...).
        #[arg(long = "ref")]
        reference: Option<String>,
    },
    /// Decide who pays freight from what you know; prints the payer of each
    /// leg and the rule that decided it.
    Freight {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// The state to move to.
        state: String,
        /// Why (kept in the case log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Settle a conflict by choosing which move stands (supervisor, head office).
    Resolve {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// The technician arrived (his own booking).
    Arrive {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// The visit is done (his own booking).
    Complete {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// The customer was not there (his own booking); counts toward the
    /// customer's no-shows.
    NoShow {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Which booking (default: the current appointment).
        #[arg(long)]
        booking: Option<String>,
    },
    /// Give the case to a technician or installer (their user id). They
    /// receive only the cases assigned to them.
    Assign {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// The technician's user id.
        technician: String,
    },
    /// Offer the customer compensation; prints the offer id on the last line.
    /// Above your limit the offer stays `proposed` until a supervisor or
    /// head office approves it.
    Offer {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
    },
    /// Remove a piece of evidence (supervisors and head office), with a reason.
    EvidenceRemove {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
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
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
    },
    /// Approve a proposed offer (within your limit).
    Approve {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Offer id.
        offer_id: String,
    },
    /// Reject a proposed offer (within your limit).
    RejectOffer {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Offer id.
        offer_id: String,
    },
    /// The customer turned the offer down.
    DeclineOffer {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Offer id.
        offer_id: String,
    },
    /// The customer took the offer.
    AcceptOffer {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Offer id.
        offer_id: String,
    },
    /// Take an offer back (an accepted one: supervisors, to settle two
    /// offers accepted at once).
    WithdrawOffer {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
        /// Offer id.
        offer_id: String,
    },
    /// List the cases on this device, oldest first, with a marker on
    /// overdue and conflicted ones; the filters narrow it down.
    List {
        /// Only cases in this state (its code or its name, e.g. dispatched
        /// or 派工).
        #[arg(long)]
        status: Option<String>,
        /// Only cases of this kind (repair or 维修, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only cases with a deadline missed and still open.
        #[arg(long)]
        overdue: bool,
        /// Only cases with an open conflict (workflow or scheduling).
        #[arg(long)]
        conflicts: bool,
        /// Only cases assigned to this technician (user id).
        #[arg(long, value_name = "USER")]
        assigned_to: Option<String>,
    },
    /// Show one case.
    Show {
        /// Case number (S001-tab-a-1), or its id or a unique start of it.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_names_every_environment_variable_the_cli_reads() {
        let help = Cli::command().render_help().to_string();
        for var in [crate::logging::ENV, crate::lang::ENV, "AFTERCASE_DATA_DIR"] {
            assert!(help.contains(var), "--help does not mention {var}:\n{help}");
        }
    }

    #[test]
    fn the_language_and_json_flags_are_taken_anywhere() {
        let cli =
            Cli::try_parse_from(["aftercase", "case", "list", "--lang", "en", "--json"]).unwrap();
        assert_eq!(cli.lang, Lang::En);
        assert!(cli.json);
        let cli = Cli::try_parse_from(["aftercase", "status"]).unwrap();
        assert_eq!(cli.lang, Lang::Zh, "Chinese unless asked otherwise");
        assert!(Cli::try_parse_from(["aftercase", "--lang", "fr", "status"]).is_err());
    }
}
