//! The `aftercase-relay` command line.

use crate::auth::Keys;
use crate::backend::Database;
use crate::config::ServeConfig;
use crate::revoke::Target;
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::{DeviceId, StoreId, UserId};
use clap::{ArgGroup, Parser, Subcommand};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

/// The environment variables the relay reads, shown by `--help` (a test
/// checks each one the code reads is named here).
const ENVIRONMENT: &str = "\
Environment:
  AFTERCASE_LOG         Log filter, e.g. debug or aftercase_server=trace
                        (default info). Other crates stay at info or less
                        whatever it says. RUST_LOG is not read.
  AFTERCASE_JWT_SECRET  Token-signing secret, at least 32 bytes (serve,
                        token). Unset: a random one kept in
                        DATA_DIR/jwt-secret, created on first use.
  AFTERCASE_DATABASE_URL
                        The PostgreSQL database of serve and reindex, as
                        --database (keeps its password off the command
                        line). Unset: sled in DATA_DIR/db.
  AFTERCASE_UPSTREAM_TOKEN
                        A store relay's token for its upstream, as
                        --upstream-token (keeps it off the command line).";

/// The Aftercase relay: syncs after-sales cases between store devices and
/// gives head office the merged truth.
#[derive(Debug, Parser)]
#[command(name = "aftercase-relay", version, after_help = ENVIRONMENT)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay.
    ///
    /// Serves GET /metrics for Prometheus without a token (keep the port on
    /// a private network). SIGTERM or Ctrl-C closes live connections with
    /// 1001 "going away", flushes storage and exits.
    #[command(after_help = ENVIRONMENT)]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the signing secret, revocations, evidence files and (by
        /// default) the cases are stored.
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// Store cases in this PostgreSQL database
        /// (postgres://user:password@host:port/dbname) instead of sled in
        /// the data directory.
        #[arg(long, env = crate::backend::ENV, hide_env_values = true)]
        database: Option<String>,
        /// Most cases kept in memory at once; idle ones are evicted.
        #[arg(long, default_value = "65536")]
        cache_docs: NonZeroUsize,
        /// Memory to plan for, in MiB: bounds sled's page cache and the
        /// loaded cases (least recently used are evicted first).
        #[arg(long, default_value = "256", value_parser = clap::value_parser!(u64).range(16..))]
        memory_mib: u64,
        /// HTTP worker threads.
        #[arg(long, default_value = "2")]
        workers: usize,
        /// Most live sync connections per device; more are refused (429).
        #[arg(long, default_value = "4", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections_per_device: u32,
        /// Most live sync connections per user, across their devices.
        #[arg(long, default_value = "32", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections_per_user: u32,
        /// A connection whose frames cannot be handed to its socket (the
        /// device stopped reading) within this time is dropped, e.g. 30s.
        #[arg(long, default_value = "30s")]
        write_timeout: humantime::Duration,
        /// MiB of frames that may wait to be sent, across all connections;
        /// a connection that cannot get its share within --write-timeout is
        /// dropped instead of growing memory.
        #[arg(long, default_value = "256", value_parser = clap::value_parser!(u64).range(1..))]
        send_budget_mib: u64,
        /// Run as a store relay: serve the shop's tablets here and sync the
        /// store's cases with this relay (http://host:port) whenever it can
        /// be reached. Needs --upstream-token.
        #[arg(long, requires = "upstream_token")]
        upstream: Option<String>,
        /// This store relay's own token for the upstream: a staff or
        /// supervisor token of the store, for a device id naming this box.
        /// Tablets of that store only may connect here.
        #[arg(long, env = crate::upstream::TOKEN_ENV, hide_env_values = true, requires = "upstream")]
        upstream_token: Option<String>,
    },
    /// Print a signed device token (last line of output).
    Token {
        /// The relay's data directory (holds the signing secret).
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// User id of the person.
        #[arg(long)]
        user: UserId,
        /// staff, technician, supervisor or head_office.
        #[arg(long)]
        role: Role,
        /// The store the device belongs to.
        #[arg(long)]
        store: StoreId,
        /// The device id.
        #[arg(long)]
        device: DeviceId,
        /// How long the token is valid, e.g. 12h, 30d.
        #[arg(long, default_value = "30d")]
        ttl: humantime::Duration,
        /// Create a new signing secret in the data directory if it has
        /// none. Without it, a data directory with no secret is refused: a
        /// token signed with a new secret would work with no relay.
        #[arg(long)]
        init_secret: bool,
    },
    /// Rebuild the read model (each case's summary for head office's lists)
    /// from the stored documents. Run it with the relay stopped (its
    /// database is held open by a running relay).
    Reindex {
        /// The relay's data directory.
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// The relay's PostgreSQL database, if it runs on one.
        #[arg(long, env = crate::backend::ENV, hide_env_values = true)]
        database: Option<String>,
    },
    /// Revoke a device, a user or one token. Tokens issued up to now for
    /// that device or user are refused from then on, and their live
    /// connections are closed within about two seconds; tokens issued
    /// later work. Safe while the relay runs (it is not stopped or opened).
    #[command(group(ArgGroup::new("what").required(true).args(["device", "user", "token"])))]
    Revoke {
        /// The relay's data directory (where `serve` keeps its data).
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// Revoke every token issued so far for this device.
        #[arg(long)]
        device: Option<DeviceId>,
        /// Revoke every token issued so far for this user.
        #[arg(long)]
        user: Option<UserId>,
        /// Revoke the one token with this id (printed by `token`).
        #[arg(long)]
        token: Option<String>,
    },
    /// Devices: report one lost.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Check that every stored case loads and matches head office's read
    /// model. A damaged case is quarantined (its tablets are refused it,
    /// the rest of the store keeps syncing) and named; exits 1 if any is.
    /// Asks the running relay; with --offline, opens the data directory
    /// itself (the relay must be stopped).
    Verify {
        /// The relay's data directory.
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// The running relay.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        relay: String,
        /// Open the data directory instead of asking a running relay.
        #[arg(long)]
        offline: bool,
        /// The relay's PostgreSQL database, with --offline, if it runs on one.
        #[arg(long, env = crate::backend::ENV, hide_env_values = true)]
        database: Option<String>,
    },
    /// Copy a running relay's data into DIR, consistently, while it serves:
    /// its cases (read while the relay is held, so no commit falls half
    /// inside), the evidence files, the signing secret and the
    /// revocations. Restore by serving DIR: `serve --data-dir DIR`.
    Backup {
        /// Where to write the copy (created; must be empty).
        dir: PathBuf,
        /// The relay's data directory (signing secret, evidence files).
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// The running relay.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        relay: String,
    },
    /// Erase a customer's personal data (name, phone, address, member
    /// number) from every case of theirs, in every copy of the cases'
    /// history: the running relay destroys each case's key, and every
    /// tablet destroys its copy when it next syncs. The rest of each case
    /// stays. Asks the running relay as head office, with a token signed
    /// for one minute from the data directory's secret; recorded in each
    /// case's audit under --by.
    #[command(group(ArgGroup::new("whom").required(true).args(["customer_phone", "case"])))]
    Erase {
        /// The relay's data directory (holds the signing secret).
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// The running relay.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        relay: String,
        /// Every case whose customer has this phone number.
        #[arg(long)]
        customer_phone: Option<String>,
        /// One case, by id or case number.
        #[arg(long)]
        case: Option<String>,
        /// The head-office user the erasure is recorded under.
        #[arg(long, default_value = "privacy-officer")]
        by: UserId,
    },
}

/// What `aftercase-relay device` does.
#[derive(Debug, Subcommand)]
enum DeviceAction {
    /// Report a device lost: every token issued so far for it is revoked
    /// (live connections close within about two seconds), and when it
    /// connects again with one of them it is told to wipe every case and
    /// key it holds, which it does before anything else. A token issued
    /// later works (the device was found and enrolled again). Safe while
    /// the relay runs.
    Lost {
        /// The device id.
        device: DeviceId,
        /// The relay's data directory (where `serve` keeps its data).
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
    },
}

/// Parses arguments, runs the command, maps errors to a one-line message.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aftercase-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            database,
            cache_docs,
            memory_mib,
            workers,
            max_connections_per_device,
            max_connections_per_user,
            write_timeout,
            send_budget_mib,
            upstream,
            upstream_token,
        } => {
            crate::logging::init("info");
            crate::alloc::plan(memory_mib);
            let database = Database::choose(database.as_deref(), &data_dir)?;
            let cfg = ServeConfig {
                listen,
                data_dir,
                database,
                cache_docs,
                memory_mib,
                workers: workers.max(1),
                max_device_connections: max_connections_per_device as usize,
                max_user_connections: max_connections_per_user as usize,
                write_timeout: write_timeout.into(),
                send_budget_mib,
                upstream: upstream.zip(upstream_token),
            };
            actix_web::rt::System::new().block_on(crate::app::run(cfg, |addr| {
                tracing::info!("listening on http://{addr}");
                println!("aftercase-relay listening on http://{addr}");
            }))
        }
        Command::Token {
            data_dir,
            user,
            role,
            store,
            device,
            ttl,
            init_secret,
        } => {
            let secret = match crate::secret::load(&data_dir)? {
                Some((s, _)) => s,
                None if init_secret => crate::secret::load_or_create(&data_dir)?.0,
                None => anyhow::bail!(
                    "{} holds no signing secret, so no relay would accept this token: \
                     point --data-dir at the directory the relay serves (`serve --data-dir`), \
                     set AFTERCASE_JWT_SECRET as the relay has it, or pass --init-secret \
                     to create one there before the relay first starts",
                    data_dir.display()
                ),
            };
            let keys = Keys::new(&secret);
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            let p = Principal {
                user,
                role,
                store,
                device,
            };
            let (token, id) = keys.issue(&p, now, ttl.as_secs())?;
            eprintln!(
                "token {id} for {} ({}) of store {} on device {}, valid {}",
                p.user, p.role, p.store, p.device, ttl
            );
            println!("{token}");
            Ok(())
        }
        Command::Reindex { data_dir, database } => {
            let database = Database::choose(database.as_deref(), &data_dir)?;
            if let Database::Sled(db) = &database {
                anyhow::ensure!(db.exists(), "no relay data in {}", data_dir.display());
            }
            let storage = database
                .open(64 << 20, true)
                .map_err(|e| anyhow::anyhow!("{e} (is the relay still running?)"))?;
            let mut relay = aftercase_sync::relay::Relay::open(
                storage,
                std::num::NonZeroUsize::new(64).unwrap_or(std::num::NonZeroUsize::MIN),
            )?;
            let n = relay.reindex()?;
            println!("read model rebuilt: {n} case(s)");
            Ok(())
        }
        Command::Device {
            action: DeviceAction::Lost { device, data_dir },
        } => {
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            let path = crate::revoke::write(&data_dir, Target::Device(device.clone()), now, true)?;
            println!(
                "device {device} reported lost ({}): its tokens are refused within about a second, and when it connects again it wipes every case and key it holds",
                path.display()
            );
            Ok(())
        }
        Command::Erase {
            data_dir,
            relay,
            customer_phone,
            case,
            by,
        } => erase(&data_dir, &relay, customer_phone, case, by),
        Command::Verify {
            data_dir,
            relay,
            offline,
            database,
        } => crate::ops::verify(&data_dir, &relay, offline, database.as_deref()),
        Command::Backup {
            dir,
            data_dir,
            relay,
        } => crate::ops::backup(&dir, &data_dir, &relay),
        Command::Revoke {
            data_dir,
            device,
            user,
            token,
        } => {
            let (target, what) = match (device, user, token) {
                (Some(d), _, _) => (Target::Device(d.clone()), format!("device {d}")),
                (_, Some(u), _) => (Target::User(u.clone()), format!("user {u}")),
                (_, _, Some(t)) => {
                    let what = format!("token {}", crate::error::clip(&t));
                    (Target::Token(t), what)
                }
                // clap's required group guarantees one of the three.
                (None, None, None) => anyhow::bail!("name a --device, --user or --token"),
            };
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            let path = crate::revoke::write(&data_dir, target, now, false)?;
            println!(
                "revoked {what} ({}); a running relay refuses it within about a second",
                path.display()
            );
            Ok(())
        }
    }
}

/// A token of one minute for `user` as head office, signed with the data
/// directory's secret: how the operator's commands ask the running relay.
pub(crate) fn operator_token(
    data_dir: &std::path::Path,
    user: UserId,
    tool: &str,
) -> anyhow::Result<String> {
    let Some((secret, _)) = crate::secret::load(data_dir)? else {
        anyhow::bail!(
            "{} holds no signing secret: point --data-dir at the directory the relay serves, or set AFTERCASE_JWT_SECRET as the relay has it",
            data_dir.display()
        );
    };
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let p = Principal {
        user,
        role: Role::HeadOffice,
        store: StoreId::new("HQ")?,
        device: DeviceId::new(tool)?,
    };
    Ok(Keys::new(&secret).issue(&p, now, 60)?.0)
}

/// Sends `req`; the answer's bytes, or the relay's refusal in words.
pub(crate) fn ask(relay: &str, req: reqwest::blocking::RequestBuilder) -> anyhow::Result<Vec<u8>> {
    let resp = req.send().map_err(|e| {
        anyhow::anyhow!("the relay at {relay} did not answer ({e}); is it running?")
    })?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .map_err(|e| anyhow::anyhow!("reading the relay's answer: {e}"))?;
    if !status.is_success() {
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let why = json["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        anyhow::bail!("the relay refused ({status}): {why}");
    }
    Ok(bytes.to_vec())
}

/// `aftercase-relay erase`: `POST /v1/erasures` to the running relay as
/// head office, with a token of one minute.
fn erase(
    data_dir: &std::path::Path,
    relay: &str,
    customer_phone: Option<String>,
    case: Option<String>,
    by: UserId,
) -> anyhow::Result<()> {
    let token = operator_token(data_dir, by, "aftercase-relay-erase")?;
    let url = format!("{}/v1/erasures", relay.trim_end_matches('/'));
    let body = serde_json::json!({ "customer_phone": customer_phone, "case": case });
    let answer = ask(
        relay,
        reqwest::blocking::Client::new()
            .post(&url)
            .bearer_auth(token)
            .json(&body),
    )?;
    let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let erased = json["erased"].as_array().cloned().unwrap_or_default();
    for c in &erased {
        let no = c["case_no"].as_str().unwrap_or("-");
        let id = c["case"].as_str().unwrap_or("?");
        if c["history_sealed"].as_bool() == Some(true) {
            println!("erased {no} ({id})");
        } else {
            println!(
                "erased {no} ({id}): written by an app older than sealing, so its history still holds the old values"
            );
        }
    }
    for id in json["already_erased"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        println!("already erased {}", id.as_str().unwrap_or("?"));
    }
    println!(
        "{} case(s) erased; tablets destroy their copies of the keys when they next sync",
        erased.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_names_every_environment_variable_the_relay_reads() {
        let help = Cli::command().render_help().to_string();
        for var in [crate::logging::ENV, crate::secret::ENV, crate::backend::ENV] {
            assert!(help.contains(var), "--help does not mention {var}:\n{help}");
        }
        let mut cmd = Cli::command();
        let serve = cmd
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        assert!(serve.contains(crate::secret::ENV) && serve.contains("/metrics"));
    }
}
