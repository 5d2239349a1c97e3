//! Commands that talk to the relay (`sync`, `sync --watch`, `evidence
//! get`) and `status`, which tells what is waiting for them.

use crate::out::{self, local, local_text, Out};
use crate::progress::Bars;
use aftercase_client::{Device, LiveEvent, SyncError};
use aftercase_sync::case::CaseView;
use aftercase_sync::CaseId;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// `aftercase sync`: exchange everything once.
pub fn once(device: &Device, out: Out, evidence: bool) -> anyhow::Result<()> {
    let want = if evidence {
        device.missing_evidence()?
    } else {
        Vec::new()
    };
    let mut bars = Bars::new(out);
    let report = crate::run::runtime()?.block_on(device.sync_fetching(want, |p| bars.update(&p)));
    bars.finish();
    let report = report?;
    let e = report.evidence;
    let waiting = device.status()?.evidence_pending;
    if out.json {
        return out::json(json!({
            "sent": report.uploaded,
            "received": report.downloaded,
            "evidence": {
                "sent": e.uploaded,
                "to_send": e.upload_total,
                "bytes_sent": e.bytes_sent,
                "received": e.downloaded,
                "to_receive": e.download_total,
                "bytes_received": e.bytes_received,
                "failures": report.evidence_failures.iter()
                    .map(|(hash, why)| json!({"hash": hash, "reason": why}))
                    .collect::<Vec<_>>(),
                "supported_by_relay": report.evidence_supported,
                "waiting": waiting,
            },
        }));
    }
    println!(
        "{}: {} {}, {} {}",
        out.t("同步完成", "sync complete"),
        report.uploaded,
        out.t("个案件已发送", "case(s) sent"),
        report.downloaded,
        out.t("个已接收", "received")
    );
    if e.upload_total + e.download_total > 0 {
        let (sent, got) = (crate::out_mb(e.bytes_sent), crate::out_mb(e.bytes_received));
        let (up, up_of, down, down_of) =
            (e.uploaded, e.upload_total, e.downloaded, e.download_total);
        match out.lang {
            crate::lang::Lang::Zh => {
                println!("证据: 已发送 {up}/{up_of} ({sent}), 已接收 {down}/{down_of} ({got})")
            }
            crate::lang::Lang::En => println!(
                "evidence: {up} of {up_of} sent ({sent}), {down} of {down_of} received ({got})"
            ),
        }
    }
    for (hash, why) in &report.evidence_failures {
        println!("{} {hash}: {why}", out.t("证据", "evidence"));
    }
    if waiting > 0 && !report.evidence_supported {
        println!(
            "{}: {waiting} {}",
            out.t("证据", "evidence"),
            out.t(
                "件在本设备等待上传：中继版本较旧，尚不能传输证据",
                "piece(s) wait on this device: the relay does not transfer evidence yet (it runs an older version)"
            )
        );
    }
    Ok(())
}

/// What a person notices about a case: where it is and how much is
/// written in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: Option<String>,
    entries: usize,
    bookings: usize,
    offers: usize,
}

impl Seen {
    fn of(v: &CaseView) -> Seen {
        Seen {
            status: v.status.clone(),
            entries: v.timeline.len(),
            bookings: v.bookings.len(),
            offers: v.offers.len(),
        }
    }
}

/// One line saying what changed in `v` since `before`, or `None` when
/// nothing a person sees did (a sync round that only moved heads).
fn change_line(v: &CaseView, before: Option<&Seen>, out: Out) -> Option<String> {
    let now = Seen::of(v);
    if before == Some(&now) {
        return None;
    }
    let lang = out.lang;
    let kind = v.kind.as_deref();
    let no = v.case_no.clone().unwrap_or_else(|| v.id.clone());
    let head = format!(
        "{} {no} ({})",
        out.t("收到案件", "received a change to case"),
        lang.kind(kind)
    );
    let what = match before {
        None => out.t("新案件", "new case").to_string(),
        Some(b) if b.status != now.status => format!(
            "{} {} → {}",
            out.t("状态", "status"),
            b.status
                .as_deref()
                .map_or_else(|| "-".into(), |s| lang.state(kind, s)),
            now.status
                .as_deref()
                .map_or_else(|| "-".into(), |s| lang.state(kind, s)),
        ),
        Some(_) => match v.timeline.last() {
            Some(e) => format!(
                "{}{}{}",
                lang.entry(&e.kind),
                e.text
                    .as_ref()
                    .map(|t| format!(" \"{t}\""))
                    .unwrap_or_default(),
                e.author
                    .as_ref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default()
            ),
            None => out.t("已更新", "updated").to_string(),
        },
    };
    Some(format!(
        "{head}: {what}; {} `aftercase case show {no}`",
        out.t("详情", "see")
    ))
}

/// `aftercase sync --watch`: stays connected until the token is refused;
/// returns why it stopped.
pub fn watch(device: &Device, out: Out) -> SyncError {
    let rt = match crate::run::runtime() {
        Ok(rt) => rt,
        Err(e) => return SyncError::Session(e.to_string()),
    };
    let mut bars = Bars::new(out);
    let mut seen: Option<HashMap<String, Seen>> = None;
    let relay = device.config().relay.clone();
    let event = |kind: &str, fields: serde_json::Value| {
        let mut v = fields;
        v["event"] = kind.into();
        v["schema_version"] = out::SCHEMA_VERSION.into();
        // One object per line: a program reads the stream line by line.
        println!("{v}");
    };
    rt.block_on(device.run_live(|ev| match ev {
        LiveEvent::Connected => {
            if out.json {
                event("connected", json!({ "relay": relay }));
            } else {
                eprintln!("{} {relay}", out.t("已连接", "connected to"));
            }
        }
        LiveEvent::Synced(r) => {
            bars.finish();
            // What each case looked like, so a later change can be told
            // apart from a sync round that changed nothing visible.
            seen = device.cases().ok().map(|all| {
                all.iter().map(|v| (v.id.clone(), Seen::of(v))).collect()
            });
            if out.json {
                event(
                    "synced",
                    json!({ "sent": r.uploaded, "received": r.downloaded }),
                );
            } else {
                eprintln!(
                    "{}: {} {}, {} {}; {}",
                    out.t("已同步", "synced"),
                    r.uploaded,
                    out.t("个案件已发送", "case(s) sent"),
                    r.downloaded,
                    out.t("个已接收", "received"),
                    out.t("等待新的变更", "watching for changes")
                );
            }
        }
        LiveEvent::Received(case) => received(device, case, &mut seen, out, &event),
        LiveEvent::Progress(p) => bars.update(&p),
        LiveEvent::Retrying { reason, in_secs } => {
            if out.json {
                event("retrying", json!({ "reason": reason, "in_secs": in_secs }));
            } else {
                eprintln!(
                    "{reason}; {} {in_secs}s",
                    out.t("稍后重试，等待", "retrying in")
                );
            }
        }
        LiveEvent::Refused { case, code, reason } => {
            let no = device
                .case(case)
                .ok()
                .flatten()
                .and_then(|v| v.case_no)
                .unwrap_or_else(|| case.to_string());
            if out.json {
                event(
                    "refused",
                    json!({ "case": case.to_string(), "case_no": no, "code": code, "reason": reason }),
                );
            } else {
                eprintln!(
                    "{} {no}: {}: {reason}",
                    out.t("中继拒绝了案件", "relay refused changes to case"),
                    out.lang.refusal(&code)
                );
            }
        }
        LiveEvent::Stopped { code, reason } => {
            if out.json {
                event("stopped", json!({ "code": code, "reason": reason }));
            }
            // People read the error `main` prints.
        }
    }))
}

fn received(
    device: &Device,
    case: CaseId,
    seen: &mut Option<HashMap<String, Seen>>,
    out: Out,
    event: &dyn Fn(&str, serde_json::Value),
) {
    let Ok(Some(v)) = device.case(case) else {
        return;
    };
    let before = seen.as_ref().and_then(|m| m.get(&v.id)).cloned();
    let line = change_line(&v, before.as_ref(), out);
    if let Some(m) = seen.as_mut() {
        m.insert(v.id.clone(), Seen::of(&v));
    }
    let Some(line) = line else {
        return;
    };
    if out.json {
        event(
            "case_changed",
            json!({ "case": v.id, "case_no": v.case_no, "status": v.status }),
        );
    } else {
        eprintln!("{line}");
    }
}

/// `aftercase status`.
pub fn status(device: &Device, out: Out) -> anyhow::Result<()> {
    let s = device.status()?;
    let cfg = device.config();
    let expires = cfg.token_expires_at();
    let policy = device.policy();
    if out.json {
        let mut v = serde_json::to_value(&s)?;
        v["user"] = cfg.user.to_string().into();
        v["role"] = cfg.role.as_str().into();
        v["store"] = cfg.store.to_string().into();
        v["device"] = cfg.device.to_string().into();
        v["token_expires_at"] = expires
            .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
            .map(|t| t.to_rfc3339())
            .into();
        return out::json(v);
    }
    let lang = out.lang;
    println!(
        "{}{} ({}), {} {}, {} {}",
        out.t("本设备属于: ", "device of:       "),
        cfg.user,
        lang.role(cfg.role),
        out.t("门店", "store"),
        cfg.store,
        out.t("设备", "device"),
        cfg.device
    );
    if let Some(exp) = expires {
        let left = exp - crate::run::now_secs();
        let when = local(&policy, exp * 1000);
        if left <= 0 {
            println!(
                "{}{when} {}",
                out.t("令牌:       ", "token:           "),
                out.t(
                    "已过期：请向总部申请新令牌并重新运行 `aftercase init`",
                    "EXPIRED: ask head office for a new token and run `aftercase init` again"
                )
            );
        } else {
            println!(
                "{}{when} {} ({} {})",
                out.t("令牌:       ", "token:           "),
                out.t("到期", "expires"),
                left / 86_400,
                out.t("天后", "days left")
            );
        }
    }
    println!(
        "{}{} {}",
        out.t("待同步:     ", "pending changes: "),
        s.pending_cases,
        out.t("个案件", "case(s)")
    );
    if let Some(oldest) = &s.oldest_pending {
        println!(
            "{}{}",
            out.t("最早待同步: ", "oldest pending:  "),
            local_text(&policy, oldest)
        );
    }
    println!(
        "{}{}",
        out.t("上次同步:   ", "last sync:       "),
        s.last_sync.as_deref().map_or_else(
            || out.t("从未", "never").to_string(),
            |t| local_text(&policy, t)
        )
    );
    println!("{}{}", out.t("中继:       ", "relay:           "), s.relay);
    println!(
        "{}{} {}, {} {} ({})",
        out.t("证据:       ", "evidence:        "),
        s.evidence_pending,
        out.t("件待上传", "waiting to upload"),
        s.evidence_cached,
        out.t("件存于本机", "kept here"),
        crate::out_mb(s.evidence_cached_bytes)
    );
    for (hash, why) in &s.evidence_refused {
        println!(
            "  {} {hash} {}: {why}",
            out.t("证据", "evidence"),
            out.t("被中继拒绝", "refused by the relay")
        );
    }
    if !s.refused.is_empty() {
        println!(
            "{}: {} {}",
            out.t("被中继拒绝", "refused by the relay"),
            s.refused.len(),
            out.t("个案件", "case(s)")
        );
        for r in &s.refused {
            let no = device
                .case(r.case)?
                .and_then(|v| v.case_no)
                .unwrap_or_else(|| r.case.to_string());
            println!("  {no}  {}: {}", lang.refusal(&r.code), r.reason);
        }
        println!(
            "  {}",
            out.t(
                "修改后重新同步，或用 `aftercase case discard 案件号` 放弃本机的修改",
                "fix and sync again, or drop your changes with `aftercase case discard CASE`"
            )
        );
    }
    Ok(())
}

/// `aftercase evidence get`.
pub fn evidence_get(
    dir: &Path,
    app_version: Option<&str>,
    out: Out,
    hash: &str,
    output: &Path,
) -> anyhow::Result<()> {
    let raw = aftercase_sync::case::blob::parse_hash(hash).ok_or_else(|| {
        anyhow::anyhow!("{hash} is not an evidence hash (64 hex digits, as `case evidence` lists)")
    })?;
    let device = Device::open(dir)?;
    let held = device.evidence_bytes(hash)?;
    let found = device.case_of_evidence(&raw)?;
    // The store admits one opener at a time.
    drop(device);
    let bytes = match held {
        Some(b) => b,
        None => {
            let (case, size) = found.ok_or_else(|| {
                anyhow::anyhow!("no case on this device has evidence {hash} (try `aftercase sync`)")
            })?;
            let device = crate::run::open(dir, app_version)?;
            crate::run::check_token(&device, out)?;
            let want = aftercase_sync::replica::blobs::MissingBlob {
                case,
                hash: raw,
                size,
            };
            let mut bars = Bars::new(out);
            let report = crate::run::runtime()?
                .block_on(device.sync_fetching(vec![want], |p| bars.update(&p)));
            bars.finish();
            let report = report?;
            if let Some((_, why)) = report.evidence_failures.iter().find(|(h, _)| h == hash) {
                anyhow::bail!("could not fetch evidence {hash}: {why}");
            }
            if !report.evidence_supported {
                anyhow::bail!(
                    "the relay does not transfer evidence yet (it runs an older version)"
                );
            }
            device
                .evidence_bytes(hash)?
                .ok_or_else(|| anyhow::anyhow!("evidence {hash} did not arrive; try again"))?
        }
    };
    std::fs::write(output, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
    if out.json {
        out::json(json!({
            "hash": hash,
            "bytes": bytes.len(),
            "file": output.display().to_string(),
        }))?;
    } else {
        eprintln!(
            "{} {} {}",
            bytes.len(),
            out.t("字节已写入", "bytes written to"),
            output.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::Lang;

    #[test]
    fn a_watched_change_names_the_case_number_and_what_changed() {
        let zh = Out {
            lang: Lang::Zh,
            json: false,
        };
        let mut v = CaseView::from_doc(&automerge::Automerge::new(), "x");
        v.case_no = Some("S001-tab-b-7".into());
        v.kind = Some("repair".into());
        v.status = Some("confirmed".into());
        let first = change_line(&v, None, zh).unwrap();
        assert!(
            first.contains("S001-tab-b-7") && first.contains("新案件"),
            "{first}"
        );
        let before = Seen::of(&v);
        assert_eq!(
            change_line(&v, Some(&before), zh),
            None,
            "nothing visible changed"
        );
        v.status = Some("dispatched".into());
        let moved = change_line(&v, Some(&before), zh).unwrap();
        assert!(moved.contains("确认 → 派工"), "{moved}");
        let en = Out {
            lang: Lang::En,
            json: false,
        };
        let moved = change_line(&v, Some(&before), en).unwrap();
        assert!(
            moved.starts_with(
                "received a change to case S001-tab-b-7 (repair): status confirmed → dispatched"
            ),
            "{moved}"
        );
    }
}
