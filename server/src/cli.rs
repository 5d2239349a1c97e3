//! The `aftercase-relay` command line.

use crate::auth::Keys;
use crate::config::ServeConfig;
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::{DeviceId, StoreId, UserId};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

/// The Aftercase relay: syncs after-sales cases between store devices and
/// gives head office the merged truth.
#[derive(Debug, Parser)]
#[command(name = "aftercase-relay", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where cases and the signing secret are stored.
        #[arg(long, default_value = "./data/relay")]
        data_dir: PathBuf,
        /// Most cases kept in memory at once; idle ones are evicted.
        #[arg(long, default_value = "65536")]
        cache_docs: NonZeroUsize,
        /// Memory to plan for, in MiB: bounds sled's page cache and the
        /// loaded cases (least recently used are evicted first).
        #[arg(long, default_value = "256", value_parser = clap::value_parser!(u64).range(32..))]
        memory_mib: u64,
        /// HTTP worker threads.
        #[arg(long, default_value = "2")]
        workers: usize,
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
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AFTERCASE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
            cache_docs,
            memory_mib,
            workers,
        } => {
            init_logging();
            let cfg = ServeConfig {
                listen,
                data_dir,
                cache_docs,
                memory_mib,
                workers: workers.max(1),
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
        } => {
            let (secret, _) = crate::secret::load_or_create(&data_dir)?;
            let keys = Keys::new(&secret);
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            let p = Principal {
                user,
                role,
                store,
                device,
            };
            let token = keys.issue(&p, now, ttl.as_secs())?;
            eprintln!(
                "token for {} ({}) of store {} on device {}, valid {}",
                p.user, p.role, p.store, p.device, ttl
            );
            println!("{token}");
            Ok(())
        }
    }
}
