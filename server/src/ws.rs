//! The WebSocket sync endpoint: authenticates, then shuttles frames between
//! the socket and the relay core.
//!
//! Each connection has a reader (this module's `run`) and a sender task.
//! The reader decodes a frame, hands it to the relay core on one of the
//! core threads (`core_pool`: the core takes the relay lock and does CPU
//! work), encodes the answer there too, reserves its size from the
//! relay-wide send budget and queues it for the sender. The sender waits for the group flush the
//! answer depends on and hands the frames to the socket. A device that
//! stops reading is dropped after the write timeout, whether its frames
//! wait for the socket or for budget, so it never makes the relay hold
//! unbounded memory.

use crate::auth::Verified;
use crate::backend::RelayStorage;
use crate::error::{clip, ApiError};
use crate::limits::{ConnSlot, SendBudget};
use crate::metrics::ConnectionGauge;
use crate::revoke::Revocations;
use crate::state::{now_millis, AppState};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use aftercase_sync::access::Principal;
use aftercase_sync::protocol::RefusalCode;
use aftercase_sync::protocol::{
    error_for_version, DecodeError, Frame, SessionError, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use aftercase_sync::relay::blobs::BlobSession;
use aftercase_sync::relay::{Relay, RelayOutput, RelaySession};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit};

/// Most cases the core accepts in one `Fetch` (its own limit; a larger
/// fetch is passed through whole so the core refuses it as before).
const FETCH_LIMIT: usize = 1000;

/// A fetch is handled this many cases at a time, each part reserving send
/// budget before the next is read from storage, so one fetch of large
/// cases never sits in memory whole: 8 cases at the 4 MiB case limit are
/// 32 MiB, a connection's own share of the send budget.
const FETCH_PART: usize = 8;

/// Longest wait for the close frames of a connection the relay ends.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// After the relay ended a connection, how long the device has to close
/// its side before the socket is shut down under it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The reason given to a device that does not read what it asked for.
const TOO_SLOW: &str = "connection dropped: the device did not read its data in time";

/// The reason given to every device when the relay stops (close code 1001,
/// "going away"); devices reconnect with backoff.
const SHUTTING_DOWN: &str = "the relay is shutting down; reconnect in a moment";

/// When the relay stops, the longest a connection waits for the frames it
/// already handled to go out before it closes: the whole shutdown must fit
/// in the server's shutdown timeout (see `app::SHUTDOWN_TIMEOUT`).
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// A duplicate handle on a connection's TCP socket, taken when the
/// connection is accepted. It lets the relay shut down a connection whose
/// peer stopped reading: actix has no write timeout of its own, so without
/// this, bytes already handed to actix would wait for that peer forever.
#[derive(Clone)]
pub struct SocketHandle(Arc<std::net::TcpStream>);

impl SocketHandle {
    /// Duplicates the socket of an accepted connection (`None` if it is not
    /// a TCP stream or the descriptor cannot be duplicated).
    pub fn of(conn: &dyn std::any::Any) -> Option<SocketHandle> {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let tcp = conn.downcast_ref::<actix_web::rt::net::TcpStream>()?;
            let fd = tcp.as_fd().try_clone_to_owned().ok()?;
            Some(SocketHandle(Arc::new(std::net::TcpStream::from(fd))))
        }
        #[cfg(not(unix))]
        {
            let _ = conn;
            None
        }
    }

    /// Ends the connection in both directions; the peer's reads and writes
    /// fail and actix drops the connection with whatever it still buffered.
    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// `GET /v1/sync`: upgrade to a sync connection. A missing, bad or revoked
/// token is answered with 401, and a device or user over its connection
/// limit with 429, before the upgrade.
pub async fn sync(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    let verified = state.authenticate(header)?;
    crate::access_log::note_principal(&req, &verified.principal);
    if let Some(edge) = state.edge.get() {
        admit_to_store_relay(&state, edge, &verified, header).await?;
    }
    let slot = state.limits.open(&verified.principal).map_err(|e| {
        tracing::info!(device = %verified.principal.device, "sync connection refused: {e}");
        ApiError::TooManyRequests(e.to_string())
    })?;
    let socket = req.conn_data::<SocketHandle>().cloned();
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::BadRequest(clip(&e.to_string())))?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let p = &verified.principal;
    tracing::info!(user = %p.user, device = %p.device, store = %p.store, role = %p.role, "sync connection opened");
    let own_budget = SendBudget::new(state.per_connection_budget);
    let conn = Conn {
        _live: state.metrics.connection_opened(),
        state: state.into_inner(),
        verified,
        _slot: slot,
        socket,
        own_budget,
        peer_version: AtomicU8::new(PROTOCOL_VERSION),
    };
    actix_web::rt::spawn(conn.run(session, stream));
    Ok(response)
}

/// A store relay serves its own store's tablets only (head office reads
/// the upstream), and keeps each one's token to relay its changes with.
async fn admit_to_store_relay(
    state: &web::Data<AppState>,
    edge: &Arc<crate::upstream::Edge>,
    verified: &Verified,
    header: Option<&str>,
) -> Result<(), ApiError> {
    let p = &verified.principal;
    if &p.store != edge.store() || p.role == aftercase_sync::access::Role::HeadOffice {
        return Err(ApiError::Forbidden(format!(
            "this is the store relay of store {}: a {} of store {} syncs with the chain's relay",
            edge.store(),
            p.role,
            p.store
        )));
    }
    let token = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let device = p.device.clone();
    let st = state.clone();
    web::block(move || st.relay().remember_token(&device, &token))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    edge.wake.notify_one();
    Ok(())
}

/// Frames on their way to the device, with the write they acknowledge.
struct Outgoing {
    /// Group-commit ticket that must be durable before the frames go out.
    ticket: Option<u64>,
    /// Store whose connections to wake once the write is durable.
    wake: Option<aftercase_sync::StoreId>,
    /// When the write was applied, for the announce lag.
    applied: Instant,
    /// Encoded frames.
    frames: Vec<Encoded>,
    /// Their share of the relay's and the connection's send budgets,
    /// returned once they are handed over.
    _budget: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

/// Sends frames in order, each batch only once the write it acknowledges is
/// on disk. Running beside the reader lets the connection keep handling
/// frames while a flush is under way, so a burst of uploads shares flushes.
/// Gives up (`Err`) when the socket does not take a frame within
/// `write_timeout`.
/// Once `cut` is set it sends nothing more but still makes every queued
/// write durable and wakes its store, so other devices hear of it.
async fn sender(
    state: Arc<AppState>,
    mut session: Session,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    cut: Arc<AtomicBool>,
) -> Result<(), String> {
    while let Some(out) = rx.recv().await {
        if let Some(ticket) = out.ticket {
            if let Err(e) = state.make_durable(ticket).await {
                tracing::error!(error = %e, "relay storage failed to flush");
                return Err("relay storage failure, retry later".into());
            }
            wake(&state, out.wake.as_ref(), out.applied);
        }
        if cut.load(Ordering::SeqCst) {
            continue;
        }
        for f in out.frames {
            let (len, name, refusal) = (f.bytes.len(), f.name, f.refusal);
            let failed =
                match tokio::time::timeout(state.write_timeout, session.binary(f.bytes)).await {
                    Ok(Ok(())) => {
                        state.metrics.frame_sent(name, len, refusal.as_deref());
                        continue;
                    }
                    Ok(Err(_closed)) => Ok(()),
                    Err(_) => Err(TOO_SLOW.to_string()),
                };
            settle_rest(&state, rx).await;
            return failed;
        }
    }
    Ok(())
}

/// The connection is going away: make the writes still queued durable and
/// wake their stores, sending nothing.
async fn settle_rest(state: &Arc<AppState>, mut rx: tokio::sync::mpsc::Receiver<Outgoing>) {
    rx.close();
    while let Some(out) = rx.recv().await {
        if let Some(ticket) = out.ticket {
            match state.make_durable(ticket).await {
                Ok(()) => wake(state, out.wake.as_ref(), out.applied),
                Err(e) => {
                    tracing::error!(error = %e, "relay storage failed to flush");
                    return;
                }
            }
        }
    }
}

/// Wakes the connections that may see a durable change of `store` (see
/// [`AppState::wake`]) and records how long after `applied` that was.
fn wake(state: &AppState, store: Option<&aftercase_sync::StoreId>, applied: Instant) {
    state.wake(store);
    if store.is_some() {
        state.metrics.announce_lag(applied.elapsed());
    }
}

/// Why the reader stopped.
enum End {
    /// The device went away or closed; nothing to tell it.
    Quiet,
    /// The relay ends the connection and tells the device why, after
    /// sending what was already handled.
    Close(CloseCode, String),
    /// The relay ends the connection at once (the device is revoked or
    /// does not read): nothing queued is sent, only the reason.
    Cut(CloseCode, String),
    /// As `Cut`, for a device reported lost: it is told to wipe what it
    /// holds ([`Frame::Wipe`]) before the connection closes.
    Wipe(String),
}

/// One live sync connection.
struct Conn {
    state: Arc<AppState>,
    verified: Verified,
    /// Counted against the device's and user's limits while it lives.
    _slot: ConnSlot,
    socket: Option<SocketHandle>,
    /// Counts this connection in the live-connections gauge while it lives.
    _live: ConnectionGauge,
    /// This connection's own cap on bytes waiting to be sent, so one device
    /// that stops reading cannot take the whole relay-wide budget.
    own_budget: SendBudget,
    /// The protocol version the device's frames carry, once one did not
    /// match: the closing `Error` frame is encoded so that device reads it
    /// ("update the app") instead of failing on the version byte.
    peer_version: AtomicU8,
}

type Core = Relay<RelayStorage>;

/// A frame handled (or announcement made) by the core, encoded.
struct Handled {
    session: RelaySession,
    result: Result<Output, SessionError>,
}

struct Output {
    frames: Vec<Encoded>,
    bytes: usize,
    needs_flush: bool,
    changed_store: Option<aftercase_sync::StoreId>,
    policy_published: bool,
}

/// One encoded frame with what the metrics need to know of it.
struct Encoded {
    bytes: Bytes,
    /// `Frame::name`.
    name: &'static str,
    /// The code of a `Refused` frame.
    refusal: Option<String>,
}

/// Encodes frames in protocol `version`, the device's.
fn encode(frames: &[Frame], version: u8) -> (Vec<Encoded>, usize) {
    let encoded: Vec<Encoded> = frames
        .iter()
        .map(|f| Encoded {
            bytes: Bytes::from(f.encode_for(version)),
            name: f.name(),
            refusal: match f {
                Frame::Refused { code, .. } => Some(code.clone()),
                _ => None,
            },
        })
        .collect();
    let bytes = encoded.iter().map(|e| e.bytes.len()).sum();
    (encoded, bytes)
}

/// Waits until the relay begins to shut down.
async fn going_away(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stopping| *stopping).await.is_err() {
        // The state is gone, so the relay is stopping anyway; other
        // branches end the connection.
        std::future::pending::<()>().await;
    }
}

/// Waits until the revocations in force refuse this connection's token;
/// returns how the connection ends (a device reported lost is told to
/// wipe itself).
async fn revoked(rx: &mut watch::Receiver<Arc<Revocations>>, v: &Verified) -> End {
    loop {
        let refused = rx.borrow_and_update().check(v);
        if let Err(r) = refused {
            return match r {
                crate::revoke::Revoked::Lost(_) => End::Wipe(r.to_string()),
                _ => End::Cut(CloseCode::Policy, r.to_string()),
            };
        }
        if rx.changed().await.is_err() {
            // The relay is shutting down; other branches end the connection.
            std::future::pending::<()>().await;
        }
    }
}

impl Conn {
    /// Runs `f` on the relay core on a core thread, giving the session
    /// back with the result. `op` names the work for the metrics: the frame
    /// type, or `announce`.
    async fn core(
        &self,
        op: &'static str,
        session: RelaySession,
        f: impl FnOnce(&mut Core, &mut RelaySession) -> Result<RelayOutput, SessionError>
            + Send
            + 'static,
    ) -> Option<Handled> {
        let state = self.state.clone();
        let mut session = session;
        let version = self.peer_version.load(Ordering::Relaxed);
        let pool = self.state.clone();
        pool.core
            .run(move || {
                let started = Instant::now();
                let result = {
                    let mut relay = state.relay();
                    let mut r = f(&mut relay, &mut session);
                    state.note_seq(&relay);
                    if let Ok(out) = &mut r {
                        if let (Some(case), Some(summary)) = (out.changed, out.summary.take()) {
                            state.stage_summary(relay.seq(), case, *summary);
                        }
                    }
                    r
                };
                // Encoding is CPU work too: done here, after the lock is released.
                let result = result.map(|out| {
                    let (frames, bytes) = encode(&out.frames, version);
                    Output {
                        frames,
                        bytes,
                        needs_flush: out.needs_flush,
                        changed_store: out.changed_store,
                        policy_published: out.policy_published,
                    }
                });
                state.metrics.core_time(op, started.elapsed());
                Handled { session, result }
            })
            .await
    }

    /// Reserves budget for `out` and queues it for the sender. `Err` ends
    /// the connection.
    async fn queue(
        &self,
        out: Output,
        tx: &tokio::sync::mpsc::Sender<Outgoing>,
    ) -> Result<(), End> {
        if out.policy_published {
            // Wake everyone; the sessions send the policy.
            self.state.wake(None);
            // Deadlines may have moved: derive the summaries again.
            actix_web::rt::spawn(crate::refresh::refresh(self.state.clone()));
        }
        // The core applied the write just before this call.
        let applied = Instant::now();
        let ticket = out.needs_flush.then(|| self.state.ticket());
        if out.frames.is_empty() && ticket.is_none() {
            return Ok(());
        }
        // A revocation must not wait for a slow device's budget.
        let mut revocations = self.state.revocations().subscribe();
        let reserve = async {
            let own = self.own_budget.reserve(out.bytes).await?;
            let shared = self.state.budget.reserve(out.bytes).await?;
            Ok::<_, tokio::sync::AcquireError>((own, shared))
        };
        let budget = tokio::select! {
            permit = tokio::time::timeout(self.state.write_timeout, reserve) => match permit {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(_)) | Err(_) => Err(End::Cut(CloseCode::Again, TOO_SLOW.into())),
            },
            end = revoked(&mut revocations, &self.verified) => Err(end),
        };
        let budget = match budget {
            Ok(b) => b,
            Err(end) => {
                self.settle(ticket, out.changed_store);
                return Err(end);
            }
        };
        let queued = Outgoing {
            ticket,
            applied,
            wake: out.changed_store,
            frames: out.frames,
            _budget: Some(budget),
        };
        tx.send(queued).await.map_err(|refused| {
            let Outgoing { ticket, wake, .. } = refused.0;
            self.settle(ticket, wake);
            End::Quiet
        })
    }

    /// A write was applied but its answer will not be sent: still make it
    /// durable and wake the store's connections, or other devices would
    /// hear of it only after the next write.
    fn settle(&self, ticket: Option<u64>, store: Option<aftercase_sync::StoreId>) {
        let Some(ticket) = ticket else {
            return;
        };
        let state = self.state.clone();
        actix_web::rt::spawn(async move {
            match state.make_durable(ticket).await {
                Ok(()) => state.wake(store.as_ref()),
                Err(e) => tracing::error!(error = %e, "relay storage failed to flush"),
            }
        });
    }

    /// Handles one binary message from the device. `Err` ends the connection.
    async fn frame(
        &self,
        rs: &mut Option<RelaySession>,
        bytes: Bytes,
        tx: &tokio::sync::mpsc::Sender<Outgoing>,
    ) -> Result<(), End> {
        let (version, frame) = Frame::decode_versioned(&bytes).map_err(|e| {
            if let DecodeError::Version { got } = e {
                self.peer_version.store(got, Ordering::Relaxed);
            }
            End::Close(CloseCode::Policy, e.to_string())
        })?;
        self.peer_version.store(version, Ordering::Relaxed);
        if let Some(s) = rs.as_mut() {
            s.set_peer_version(version);
        }
        self.state.metrics.frame_received(frame.name(), bytes.len());
        drop(bytes);
        if BlobSession::is_blob_frame(&frame) {
            return self.blob(rs, frame, tx).await;
        }
        if let Frame::Relayed {
            token,
            doc,
            changes,
        } = frame
        {
            return self.relayed(rs, token, doc, changes, tx).await;
        }
        // A fetch is handled in parts (see FETCH_PART); anything else whole.
        let parts: Vec<Frame> = match frame {
            Frame::Fetch { docs } if docs.len() > FETCH_PART && docs.len() <= FETCH_LIMIT => {
                // Each case once, whatever the device asked.
                let mut seen = std::collections::HashSet::new();
                let docs: Vec<_> = docs.into_iter().filter(|d| seen.insert(*d)).collect();
                docs.chunks(FETCH_PART)
                    .map(|c| Frame::Fetch { docs: c.to_vec() })
                    .collect()
            }
            other => vec![other],
        };
        for part in parts {
            let Some(session) = rs.take() else {
                return Err(End::Quiet);
            };
            let op = part.name();
            let handled = self
                .core(op, session, move |relay, s| {
                    relay.handle(s, part, now_millis())
                })
                .await
                .ok_or_else(|| End::Close(CloseCode::Error, "relay busy, retry later".into()))?;
            *rs = Some(handled.session);
            self.answer(handled.result, tx).await?;
        }
        Ok(())
    }

    /// Queues the frames of a handled frame, or ends the connection: a
    /// storage failure with "retry later", a protocol error with its reason.
    async fn answer(
        &self,
        result: Result<Output, SessionError>,
        tx: &tokio::sync::mpsc::Sender<Outgoing>,
    ) -> Result<(), End> {
        match result {
            Ok(out) => self.queue(out, tx).await,
            Err(SessionError::Storage(e)) => {
                tracing::error!(error = %e, "relay storage failed");
                self.state.health.storage_error(&e);
                Err(End::Close(
                    CloseCode::Error,
                    "relay storage failure, retry later".into(),
                ))
            }
            Err(e) => Err(End::Close(CloseCode::Policy, clip_reason(&e.to_string()))),
        }
    }

    /// Handles a store relay's [`Frame::Relayed`]: the author's token is
    /// checked as on a connection of the author's own (signature, expiry,
    /// revocation) and the changes are judged and recorded as theirs. A
    /// token that does not pass refuses the case, not the connection: the
    /// store relay's other authors go on.
    async fn relayed(
        &self,
        rs: &mut Option<RelaySession>,
        token: aftercase_sync::protocol::BearerToken,
        doc: aftercase_sync::CaseId,
        changes: Vec<Vec<u8>>,
        tx: &tokio::sync::mpsc::Sender<Outgoing>,
    ) -> Result<(), End> {
        let author = match self
            .state
            .authenticate(Some(&format!("Bearer {}", token.0)))
        {
            Ok(v) => v.principal,
            Err(e) => {
                let code = match e {
                    ApiError::Revoked(_) => RefusalCode::Revoked,
                    _ => RefusalCode::Forbidden,
                };
                tracing::info!(case = %doc, via = %self.verified.principal.device, "refused a relayed upload: the author's token did not pass");
                let refusal = Frame::Refused {
                    doc,
                    code: code.as_str().to_string(),
                    reason: format!("the author's token was not accepted: {e}"),
                };
                let version = self.peer_version.load(Ordering::Relaxed);
                let (frames, bytes) = encode(&[refusal], version);
                return self
                    .queue(
                        Output {
                            frames,
                            bytes,
                            needs_flush: false,
                            changed_store: None,
                            policy_published: false,
                        },
                        tx,
                    )
                    .await;
            }
        };
        let Some(session) = rs.take() else {
            return Err(End::Quiet);
        };
        let handled = self
            .core("relayed", session, move |relay, s| {
                relay.relayed(s, author, doc, changes, now_millis())
            })
            .await
            .ok_or_else(|| End::Close(CloseCode::Error, "relay busy, retry later".into()))?;
        *rs = Some(handled.session);
        self.answer(handled.result, tx).await
    }

    /// Handles a blob frame: the access decision under the relay's lock
    /// (only when the session has none cached), the transfer itself
    /// outside it, so one device's photo upload never holds up another
    /// device's case sync. The chunk is written before the next frame is
    /// read, so a device with 500 photos is held back by TCP, not buffered.
    async fn blob(
        &self,
        rs: &mut Option<RelaySession>,
        frame: Frame,
        tx: &tokio::sync::mpsc::Sender<Outgoing>,
    ) -> Result<(), End> {
        let Some(mut session) = rs.take() else {
            return Err(End::Quiet);
        };
        let state = self.state.clone();
        let version = self.peer_version.load(Ordering::Relaxed);
        let op = frame.name();
        let (session, result) = web::block(move || {
            let started = Instant::now();
            let result = (|| {
                if !session.hello_done() {
                    return Err(SessionError::Protocol(
                        "the first frame must be hello".into(),
                    ));
                }
                let grant = match session.blobs_mut().needs_grant(&frame) {
                    Some((case, hash, access)) => {
                        let p = session.principal().clone();
                        let mut relay = state.relay();
                        Some(
                            relay
                                .blob_grant(&p, case, &hash, access)
                                .map_err(SessionError::Storage)?,
                        )
                    }
                    None => None,
                };
                session
                    .blobs_mut()
                    .handle(state.blobs.as_ref(), frame, grant)
            })();
            state.metrics.core_time(op, started.elapsed());
            let result = result.map(|frames| {
                let (frames, bytes) = encode(&frames, version);
                Output {
                    frames,
                    bytes,
                    needs_flush: false,
                    changed_store: None,
                    policy_published: false,
                }
            });
            (session, result)
        })
        .await
        .map_err(|_| End::Close(CloseCode::Error, "relay busy, retry later".into()))?;
        *rs = Some(session);
        self.answer(result, tx).await
    }

    /// Announces what changed for this connection's device.
    async fn announce(
        &self,
        rs: &mut Option<RelaySession>,
        tx: &tokio::sync::mpsc::Sender<Outgoing>,
    ) -> Result<(), End> {
        let Some(session) = rs.take() else {
            return Err(End::Quiet);
        };
        let handled = self
            .core("announce", session, |relay, s| {
                relay
                    .announce(s)
                    .map(|frames| RelayOutput {
                        frames,
                        ..Default::default()
                    })
                    .map_err(SessionError::Storage)
            })
            .await
            .ok_or_else(|| End::Close(CloseCode::Error, "relay busy, retry later".into()))?;
        *rs = Some(handled.session);
        match handled.result {
            Ok(out) => self.queue(out, tx).await,
            Err(e) => {
                tracing::error!(error = %e, "announce failed");
                Err(End::Close(
                    CloseCode::Error,
                    "relay storage failure, retry later".into(),
                ))
            }
        }
    }

    async fn run(self, mut session: Session, mut stream: actix_ws::AggregatedMessageStream) {
        let principal: Principal = self.verified.principal.clone();
        let state = self.state.clone();
        let p = principal.clone();
        let Ok(rs) = web::block(move || state.relay().session(p)).await else {
            return;
        };
        let mut rs = Some(rs);
        let mut changes = self.state.subscribe(match principal.role {
            aftercase_sync::access::Role::HeadOffice => None,
            _ => Some(&principal.store),
        });
        let mut revocations = self.state.revocations().subscribe();
        let mut stopping = self.state.shutdown_signal();
        let (tx, rx) = tokio::sync::mpsc::channel::<Outgoing>(64);
        let cut = Arc::new(AtomicBool::new(false));
        let mut sending =
            actix_web::rt::spawn(sender(self.state.clone(), session.clone(), rx, cut.clone()));
        let mut sender_result: Option<Result<(), String>> = None;
        let now_secs = chrono::Utc::now().timestamp().max(0) as u64;
        let expires = tokio::time::sleep(Duration::from_secs(
            self.verified.exp.saturating_sub(now_secs),
        ));
        tokio::pin!(expires);
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(20),
            Duration::from_secs(20),
        );
        let write_timeout = self.state.write_timeout;
        let end: End = loop {
            let step = tokio::select! {
                msg = stream.recv() => match msg {
                    None => Err(End::Quiet),
                    Some(Err(e)) => Err(End::Close(CloseCode::Policy, format!("bad websocket frame: {}", clip(&e.to_string())))),
                    Some(Ok(AggregatedMessage::Binary(bytes))) => {
                        self.frame(&mut rs, bytes, &tx).await
                    }
                    Some(Ok(AggregatedMessage::Text(_))) => {
                        Err(End::Close(CloseCode::Unsupported, "text frames are not part of the sync protocol".into()))
                    }
                    Some(Ok(AggregatedMessage::Ping(p))) => {
                        match tokio::time::timeout(write_timeout, session.pong(&p)).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(_)) => Err(End::Quiet),
                            Err(_) => Err(End::Cut(CloseCode::Again, TOO_SLOW.into())),
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
                    Some(Ok(AggregatedMessage::Close(_))) => Err(End::Quiet),
                },
                changed = changes.changed() => match changed {
                    Err(_) => Err(End::Quiet),
                    Ok(()) => self.announce(&mut rs, &tx).await,
                },
                end = revoked(&mut revocations, &self.verified) => {
                    tracing::info!(device = %principal.device, "closing a revoked connection");
                    Err(end)
                }
                done = &mut sending => {
                    let r = done.unwrap_or(Ok(()));
                    let end = match &r {
                        Err(reason) => End::Close(CloseCode::Again, reason.clone()),
                        Ok(()) => End::Quiet,
                    };
                    sender_result = Some(r);
                    Err(end)
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(write_timeout, session.ping(b"")).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(_)) => Err(End::Quiet),
                        Err(_) => Err(End::Cut(CloseCode::Again, TOO_SLOW.into())),
                    }
                }
                _ = &mut expires => Err(End::Close(CloseCode::Policy, "token expired".into())),
                _ = going_away(&mut stopping) => Err(End::Close(CloseCode::Away, SHUTTING_DOWN.into())),
            };
            if let Err(end) = step {
                break end;
            }
        };
        // Let everything already handled go out (once durable) before
        // closing, unless the device is the reason for closing: a revoked
        // device gets nothing more, and a slow one cannot take it.
        drop(tx);
        // A cut sender is left to finish on its own: it sends nothing more
        // but still makes queued writes durable. When the relay stops, the
        // wait is short: its writes are durable however it ends (the last
        // step of a shutdown is a flush), only their acknowledgement is lost
        // and the device uploads again after reconnecting.
        let drain = match end {
            End::Close(CloseCode::Away, _) => write_timeout.min(SHUTDOWN_DRAIN),
            _ => write_timeout,
        };
        let end = match (sender_result, &end) {
            (Some(_), _) => end,
            (None, End::Cut(_, _) | End::Wipe(_)) => {
                cut.store(true, Ordering::SeqCst);
                end
            }
            (None, _) => match tokio::time::timeout(drain, &mut sending).await {
                Ok(Ok(Err(reason))) => End::Close(CloseCode::Error, reason),
                Ok(_) => end,
                Err(_) => {
                    cut.store(true, Ordering::SeqCst);
                    if matches!(end, End::Close(CloseCode::Away, _)) {
                        end
                    } else {
                        End::Close(CloseCode::Again, TOO_SLOW.into())
                    }
                }
            },
        };
        if let Some(rs) = rs {
            let state = self.state.clone();
            let saved = web::block(move || state.relay().end_session(rs)).await;
            if let Ok(Err(e)) = saved {
                tracing::warn!(error = %e, "could not persist sync states");
            }
        }
        // The device is told why before closing, in the protocol too, in
        // its own protocol version so an old app can read it; a device
        // reported lost is told to wipe itself.
        let version = self.peer_version.load(Ordering::Relaxed);
        let told = |reason: &str, wipe: bool| -> (&'static str, Vec<u8>) {
            if wipe && version > aftercase_sync::protocol::OLDEST_VERSION {
                let f = Frame::Wipe {
                    reason: reason.to_string(),
                };
                ("wipe", f.encode_for(version))
            } else {
                ("error", error_for_version(version, reason))
            }
        };
        let closing = match end {
            End::Close(code, reason) | End::Cut(code, reason) => {
                let frame = (code == CloseCode::Policy).then(|| told(&reason, false));
                Some((code, reason, frame))
            }
            End::Wipe(reason) => {
                tracing::info!("telling a device reported lost to wipe itself");
                let frame = Some(told(&reason, true));
                Some((CloseCode::Policy, reason, frame))
            }
            End::Quiet => None,
        };
        let closed_in_time = match closing {
            Some((code, reason, frame)) => {
                tracing::info!(%reason, "closing sync connection");
                tokio::time::timeout(CLOSE_WAIT, async {
                    if let Some((name, bytes)) = frame {
                        let len = bytes.len();
                        if session.binary(bytes).await.is_ok() {
                            self.state.metrics.frame_sent(name, len, None);
                        }
                    }
                    let _ = session
                        .close(Some(CloseReason {
                            code,
                            description: Some(reason),
                        }))
                        .await;
                })
                .await
                .is_ok()
            }
            None => tokio::time::timeout(CLOSE_WAIT, session.close(None))
                .await
                .is_ok(),
        };
        if let Some(socket) = self.socket.clone() {
            if closed_in_time {
                // The close frame is queued; if the device still has not
                // taken it after the grace period, stop waiting for it.
                actix_web::rt::spawn(async move {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                    socket.shutdown();
                });
            } else {
                socket.shutdown();
            }
        }
        tracing::info!(device = %principal.device, "sync connection closed");
    }
}

/// Reasons echo what a device sent at most clipped (they go back to it and
/// into the log).
fn clip_reason(reason: &str) -> String {
    if reason.chars().count() <= 200 && !reason.chars().any(char::is_control) {
        reason.to_string()
    } else {
        let mut out: String = reason
            .chars()
            .take(200)
            .flat_map(|c| {
                let v: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                v
            })
            .collect();
        out.push('…');
        out
    }
}
