//! Knowing the data is sound, and keeping a copy: `POST /v1/verify` checks
//! every stored case, `GET /v1/backup` is a consistent copy of the relay's
//! storage taken while it serves (what `aftercase-relay verify` and
//! `aftercase-relay backup` ask for).

use super::cases::{blocking, principal};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::relay::soundness::VerifyReport;
use aftercase_sync::storage::Storage;

fn head_office(p: &Principal, what: &str) -> Result<(), ApiError> {
    if p.role == Role::HeadOffice {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only head office may {what}, not a {}",
            p.role
        )))
    }
}

/// Check every stored case.
///
/// `POST /v1/verify` (head office): loads every stored case and compares
/// it with its read-model row. A case whose bytes do not load is
/// quarantined (its devices are refused it, the rest of its store syncs);
/// a missing or different row is rewritten from the document. Holds the
/// relay for the pass (about a millisecond per case).
#[utoipa::path(
    post,
    path = "/v1/verify",
    tag = "relay",
    responses(
        (status = 200, description = "What was checked and found.", body = VerifyReport),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Not head office.", body = ErrorBody),
    )
)]
pub async fn verify(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    head_office(&p, "verify the relay's data")?;
    let report = blocking(&state, |s| {
        let mut relay = s.relay();
        let mut report = relay.verify()?;
        report.storage_lost = s.health.lost();
        s.note_seq(&relay);
        for case in &report.read_model_fixed {
            if let Ok(case) = case.parse() {
                if let Some(summary) = relay.summary(case)? {
                    s.stage_summary(relay.seq(), case, summary);
                }
            }
        }
        Ok(report)
    })
    .await?;
    let ticket = state.ticket();
    state.make_durable(ticket).await?;
    if report.is_sound() {
        tracing::info!(
            cases = report.cases,
            fixed = report.read_model_fixed.len(),
            "verified the stored cases: all load"
        );
    } else {
        tracing::error!(
            cases = report.cases,
            damaged = report.damaged.len(),
            "verified the stored cases: some are damaged and quarantined"
        );
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Appends one key and value, each as a 4-byte big-endian length and the
/// bytes.
fn frame(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    for part in [k, v] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
}

/// A consistent copy of the relay's storage.
///
/// `GET /v1/backup` (head office): every key and value of the relay's
/// storage, read while the relay is held, so no commit falls half inside:
/// each as a 4-byte big-endian length and the key, then the same for the
/// value. `aftercase-relay backup DIR` writes it into a data directory
/// with the evidence files, the signing secret and the revocations.
#[utoipa::path(
    get,
    path = "/v1/backup",
    tag = "relay",
    responses(
        (status = 200, description = "The storage's keys and values.", content(("application/octet-stream"))),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Not head office.", body = ErrorBody),
    )
)]
pub async fn backup(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    head_office(&p, "take a backup")?;
    let body = blocking(&state, |s| {
        // Held while reading: every commit is one batch under this lock.
        let relay = s.relay();
        let all = s.storage().scan_prefix(b"")?;
        drop(relay);
        let mut out = Vec::with_capacity(all.iter().map(|(k, v)| k.len() + v.len() + 8).sum());
        for (k, v) in &all {
            frame(&mut out, k, v);
        }
        Ok((all.len(), out))
    })
    .await?;
    tracing::info!(keys = body.0, bytes = body.1.len(), "backup taken");
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(body.1))
}
