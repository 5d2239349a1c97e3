//! Runs one command: opens the device, dispatches, and turns a failure
//! into one line for people (and an error object under `--json`).

use crate::args::{Cli, Command, EvidenceCommand, PolicyCommand};
use crate::out::{self, local, Out};
use aftercase_client::{ClientError, Device, SyncError};
use clap::Parser;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// Parses arguments, runs the command, prints a one-line reason on failure.
pub fn main() -> ExitCode {
    // `aftercase case list | head` closes the pipe early: end quietly, as
    // other command-line tools do, instead of panicking in `println!`.
    // SAFETY: called before any thread is started; SIG_DFL is a valid
    // disposition for SIGPIPE.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    crate::logging::init("warn");
    let out = Out {
        lang: cli.lang,
        json: cli.json,
    };
    match run(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aftercase: {e:#}");
            if out.json {
                let _ = out::json(json!({
                    "error": { "code": error_code(&e), "message": format!("{e:#}") }
                }));
            }
            ExitCode::FAILURE
        }
    }
}

/// The stable code of a failure for programs.
fn error_code(e: &anyhow::Error) -> String {
    if let Some(c) = e.downcast_ref::<ClientError>() {
        return c.code().into();
    }
    if let Some(s) = e.downcast_ref::<SyncError>() {
        return match s {
            SyncError::Refused { code, .. } => code.clone(),
            other => other.code().into(),
        };
    }
    "invalid_input".into()
}

/// Opens the device, reporting the app version when it connects.
pub fn open(dir: &Path, app_version: Option<&str>) -> anyhow::Result<Device> {
    let device = Device::open(dir)?;
    Ok(match app_version {
        Some(v) => device.with_app_version(v)?,
        None => device,
    })
}

/// A single-threaded runtime for one connection.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Seconds since the Unix epoch now.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Refuses at once, with the remedy, to connect with a token whose own
/// expiry has passed: the relay would only refuse it.
pub fn check_token(device: &Device, out: Out) -> anyhow::Result<()> {
    let Some(exp) = device.config().token_expires_at() else {
        return Ok(());
    };
    if exp <= now_secs() {
        let when = local(&device.policy(), exp * 1000);
        match out.lang {
            crate::lang::Lang::Zh => anyhow::bail!(
                "设备令牌已于 {when} 过期：请向总部申请新令牌，再运行 `aftercase init --relay URL --token 新令牌`"
            ),
            crate::lang::Lang::En => anyhow::bail!(
                "the device token expired at {when}: ask head office for a new token and run `aftercase init --relay URL --token NEW_TOKEN`"
            ),
        }
    }
    Ok(())
}

fn run(cli: Cli, out: Out) -> anyhow::Result<()> {
    let dir = cli.data_dir;
    let app_version = cli.app_version.as_deref();
    match cli.command {
        Command::Init { relay, token } => {
            let cfg = Device::init(&dir, &relay, &token)?;
            if out.json {
                out::json(json!({
                    "device": cfg.device.to_string(),
                    "store": cfg.store.to_string(),
                    "user": cfg.user.to_string(),
                    "role": cfg.role.as_str(),
                    "relay": cfg.relay,
                }))?;
            } else {
                println!(
                    "{} {} {} {} {} {} ({}), {} {}",
                    out.t("设备", "device"),
                    cfg.device,
                    out.t("门店", "of store"),
                    cfg.store,
                    out.t("已设置给", "set up for"),
                    cfg.user,
                    out.lang.role(cfg.role),
                    out.t("中继", "relay"),
                    cfg.relay
                );
            }
        }
        Command::Case(c) => crate::cases::run(&Device::open(&dir)?, out, c)?,
        Command::Evidence(EvidenceCommand::Get { hash, output }) => {
            crate::sync::evidence_get(&dir, app_version, out, &hash, &output)?
        }
        Command::Sync { watch, evidence } => {
            let device = open(&dir, app_version)?;
            check_token(&device, out)?;
            if watch {
                return Err(crate::sync::watch(&device, out).into());
            }
            crate::sync::once(&device, out, evidence)?;
        }
        Command::Schedule { tech, date } => {
            let device = Device::open(&dir)?;
            crate::cases::schedule(&device, out, tech.as_deref(), date.as_deref())?
        }
        Command::Conflicts => crate::cases::conflicts(&Device::open(&dir)?, out)?,
        Command::Policy(PolicyCommand::Show) => {
            let device = Device::open(&dir)?;
            if out.json {
                out::json(json!({ "policy": device.policy() }))?;
            } else {
                // The policy itself, as `policy publish` takes it back.
                println!("{}", serde_json::to_string_pretty(&device.policy())?);
            }
        }
        Command::Policy(PolicyCommand::Publish { file }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let device = open(&dir, app_version)?;
            check_token(&device, out)?;
            let v = runtime()?.block_on(device.publish_policy(&text))?;
            if out.json {
                out::json(json!({ "version": v }))?;
            } else {
                println!(
                    "{} {v} {}",
                    out.t("政策版本", "policy version"),
                    out.t("已生效", "is in force")
                );
            }
        }
        Command::Status => crate::sync::status(&Device::open(&dir)?, out)?,
        Command::Wipe { yes } => {
            let device = Device::open(&dir)?;
            let pending = device.status()?.pending_cases;
            if !yes {
                anyhow::bail!(
                    "{}",
                    out.t(
                        &format!("这会删除本设备的全部案件和密钥（{pending} 个案件尚未同步）：确认请加 --yes"),
                        &format!("this deletes every case and key on this device ({pending} case(s) not synced yet): add --yes to confirm"),
                    )
                );
            }
            device.wipe()?;
            if out.json {
                out::json(json!({ "wiped": true, "unsynced_lost": pending }))?;
            } else {
                println!(
                    "{}",
                    out.t(
                        "本设备已清除：案件、证据、密钥和令牌均已删除",
                        "this device is wiped: its cases, evidence, keys and token are deleted"
                    )
                );
            }
        }
    }
    Ok(())
}
