//! The WebSocket sync endpoint: authenticates, then shuttles frames between
//! the socket and the relay core.

use crate::error::ApiError;
use crate::state::{now_millis, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use aftercase_sync::protocol::{Frame, SessionError, MAX_FRAME_BYTES};
use std::time::Duration;

/// `GET /v1/sync`: upgrade to a sync connection. A missing or bad token is
/// answered with 401 before the upgrade.
pub async fn sync(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    let (principal, exp) = state.keys.verify_header(header)?;
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    tracing::info!(user = %principal.user, device = %principal.device, store = %principal.store, role = %principal.role, "sync connection opened");
    actix_web::rt::spawn(run(state.into_inner(), principal, exp, session, stream));
    Ok(response)
}

async fn close(session: Session, code: CloseCode, reason: String) {
    tracing::info!(%reason, "closing sync connection");
    let _ = session
        .close(Some(CloseReason {
            code,
            description: Some(reason),
        }))
        .await;
}

/// Frames on their way to the device, with the write they acknowledge.
struct Outgoing {
    /// Group-commit ticket that must be durable before the frames go out.
    ticket: Option<u64>,
    /// Store whose connections to wake once the write is durable.
    wake: Option<aftercase_sync::StoreId>,
    frames: Vec<Frame>,
}

/// Sends frames in order, each batch only once the write it acknowledges is
/// on disk. Running beside the reader lets the connection keep handling
/// frames while a flush is under way, so a burst of uploads shares flushes.
async fn sender(
    state: std::sync::Arc<AppState>,
    mut session: Session,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
) -> Result<(), String> {
    while let Some(out) = rx.recv().await {
        if let Some(ticket) = out.ticket {
            if let Err(e) = state.make_durable(ticket).await {
                tracing::error!(error = %e, "relay storage failed to flush");
                return Err("relay storage failure, retry later".into());
            }
            state.wake(out.wake.as_ref());
        }
        for f in out.frames {
            if session.binary(f.encode()).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn run(
    state: std::sync::Arc<AppState>,
    principal: aftercase_sync::access::Principal,
    exp: u64,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let mut rs = state.relay().session(principal);
    let mut changes = state.subscribe(match rs.principal().role {
        aftercase_sync::access::Role::HeadOffice => None,
        _ => Some(&rs.principal().store),
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Outgoing>(64);
    let sending = actix_web::rt::spawn(sender(state.clone(), session.clone(), rx));
    let now_secs = chrono::Utc::now().timestamp().max(0) as u64;
    let expires = tokio::time::sleep(Duration::from_secs(exp.saturating_sub(now_secs)));
    tokio::pin!(expires);
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(20),
        Duration::from_secs(20),
    );
    let outcome: Option<(CloseCode, String)> = loop {
        tokio::select! {
            msg = stream.recv() => match msg {
                None => break None,
                Some(Err(e)) => break Some((CloseCode::Policy, format!("bad websocket frame: {e}"))),
                Some(Ok(AggregatedMessage::Binary(bytes))) => {
                    let frame = match Frame::decode(&bytes) {
                        Ok(f) => f,
                        Err(e) => break Some((CloseCode::Policy, e.to_string())),
                    };
                    let result = state.relay().handle(&mut rs, frame, now_millis());
                    match result {
                        Ok(out) => {
                            if let Some(case) = out.changed {
                                tracing::debug!(%case, "case changed");
                            }
                            if out.policy_published {
                                // Wake everyone; the sessions send the policy.
                                state.wake(None);
                            }
                            let ticket = out.needs_flush.then(|| state.ticket());
                            let queued = Outgoing { ticket, wake: out.changed_store, frames: out.frames };
                            if tx.send(queued).await.is_err() {
                                break None;
                            }
                        }
                        Err(SessionError::Storage(e)) => {
                            tracing::error!(error = %e, "relay storage failed");
                            break Some((CloseCode::Error, "relay storage failure, retry later".into()));
                        }
                        Err(e) => break Some((CloseCode::Policy, e.to_string())),
                    }
                }
                Some(Ok(AggregatedMessage::Text(_))) => {
                    break Some((CloseCode::Unsupported, "text frames are not part of the sync protocol".into()))
                }
                Some(Ok(AggregatedMessage::Ping(p))) => {
                    if session.pong(&p).await.is_err() { break None; }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(_))) => break None,
            },
            changed = changes.changed() => {
                if changed.is_err() { break None; }
                let frames = state.relay().announce(&mut rs);
                match frames {
                    Ok(frames) if frames.is_empty() => {}
                    Ok(frames) => {
                        if tx.send(Outgoing { ticket: None, wake: None, frames }).await.is_err() {
                            break None;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "announce failed");
                        break Some((CloseCode::Error, "relay storage failure, retry later".into()));
                    }
                }
            }
            _ = ping.tick() => {
                if session.ping(b"").await.is_err() { break None; }
            }
            _ = &mut expires => break Some((CloseCode::Policy, "token expired".into())),
        }
    };
    // Let everything already handled go out (once durable) before closing.
    drop(tx);
    let outcome = match sending.await {
        Ok(Err(reason)) => Some((CloseCode::Error, reason)),
        _ => outcome,
    };
    let device = rs.principal().device.clone();
    if let Err(e) = state.relay().end_session(rs) {
        tracing::warn!(error = %e, "could not persist sync states");
    }
    match outcome {
        Some((code, reason)) => {
            if code == CloseCode::Policy {
                // Tell the device why before closing, in the protocol too.
                let _ = session
                    .binary(
                        Frame::Error {
                            reason: reason.clone(),
                        }
                        .encode(),
                    )
                    .await;
            }
            close(session, code, reason).await
        }
        None => {
            let _ = session.close(None).await;
        }
    }
    tracing::info!(%device, "sync connection closed");
}
