//! A store relay's link to its upstream (`serve --upstream URL
//! --upstream-token TOKEN`): one WebSocket connection as the store relay's
//! own device, reconnected with backoff whenever it drops. Down, it takes
//! in what the upstream announces for the store (fetched whole, or pushed
//! as changes) and wakes the store's tablets. Up, it sends each tablet's
//! changes with that tablet's token ([`Frame::Relayed`]), one case at a
//! time, so the upstream judges and records them as the tablet's.
//!
//! Tablets in the shop never wait for the link: they sync with this relay,
//! and the link catches up when the upstream is reachable again. The
//! decisions (what is missing, what to send, in which runs) are the sync
//! crate's (`relay/edge.rs`); this file only moves frames.

use crate::state::{now_millis, AppState};
use aftercase_sync::access::Principal;
use aftercase_sync::blobs::{BlobStore, Held};
use aftercase_sync::protocol::{
    BearerToken, DocBytes, DocHeads, Frame, PieceKind, Pieces, Unsynced, FEATURE_BLOBS,
    FEATURE_KEYS, FEATURE_PUSH, FEATURE_UPLOAD, MAX_BLOB_CHUNK, MAX_FRAME_BYTES,
};
use aftercase_sync::relay::blobs::BlobCode;
use aftercase_sync::relay::{EdgeUpload, RelayOutput, RelaySession};
use aftercase_sync::{CaseId, StoreId};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Longest wait between attempts to reach the upstream.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Environment variable that sets `--upstream-token`.
pub const TOKEN_ENV: &str = "AFTERCASE_UPSTREAM_TOKEN";

/// The store relay's upstream and its identity there.
pub struct Edge {
    /// The upstream's base URL (`http://host:port`).
    pub url: String,
    /// The store relay's own token for the upstream.
    pub token: String,
    /// Who that token says the store relay is (its store is the one it
    /// serves).
    pub principal: Principal,
    /// Rung when a tablet connects with a new token, so changes held back
    /// for want of one are offered again.
    pub wake: tokio::sync::Notify,
}

impl Edge {
    /// The store this relay serves.
    pub fn store(&self) -> &StoreId {
        &self.principal.store
    }

    fn sync_url(&self) -> String {
        let base = if let Some(rest) = self.url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.url.clone()
        };
        format!("{}/v1/sync", base.trim_end_matches('/'))
    }
}

/// Whether a token's own expiry has passed on this clock: its changes wait
/// for the device to connect again with a fresh one rather than be refused.
fn expired(token: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<i64>,
    }
    jsonwebtoken::dangerous::insecure_decode::<Exp>(token)
        .ok()
        .and_then(|d| d.claims.exp)
        .is_some_and(|exp| exp <= chrono::Utc::now().timestamp())
}

/// Runs `f` on the relay's core threads, like a connection's frames. A
/// thread of the blocking pool per call would leave each one's allocator
/// memory behind as the pool's threads come and go, which a small box
/// cannot spare.
async fn on_core<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    state
        .core
        .run(f)
        .await
        .ok_or_else(|| anyhow::anyhow!("the relay's core stopped"))
}

/// Runs the link until the process ends.
pub fn spawn(state: Arc<AppState>, edge: Arc<Edge>) {
    actix_web::rt::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        // An outage is told once, not at every attempt.
        let mut told = false;
        loop {
            match Link::new(state.clone(), edge.clone()).await {
                Ok(link) => {
                    told = false;
                    backoff = Duration::from_millis(250);
                    if let Err(e) = link.run().await {
                        tracing::warn!(upstream = %edge.url, "upstream link lost: {e}; the store keeps syncing here");
                    }
                }
                Err(e) if !told => {
                    told = true;
                    tracing::warn!(upstream = %edge.url, "upstream unreachable: {e}; retrying every few seconds");
                }
                Err(e) => tracing::debug!(upstream = %edge.url, "upstream still unreachable: {e}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The case being passed up: its runs not yet answered.
struct InFlight {
    upload: EdgeUpload,
    /// Index of the run awaiting its answer.
    run: usize,
    /// Whether the upstream already asked for the case again once
    /// (it lacked what the runs depend on).
    retried: bool,
}

/// One connection to the upstream.
struct Link {
    state: Arc<AppState>,
    edge: Arc<Edge>,
    socket: Socket,
    /// The session the upstream's changes are committed in.
    session: Option<RelaySession>,
    /// Fetched cases not yet taken in, and the sequence announced with them.
    pending: HashSet<CaseId>,
    pending_up_to: Option<u64>,
    /// Pieces of large cases being joined.
    pieces: Pieces,
    in_flight: Option<InFlight>,
    /// Set when a run waits for its device's token: nothing more is sent
    /// until a tablet connects or the store changes.
    held_back: bool,
    /// The evidence blob being passed up.
    blob: Option<[u8; 32]>,
    /// Set when the upstream asked to offer blobs again later.
    blobs_later: bool,
}

impl Link {
    async fn new(state: Arc<AppState>, edge: Arc<Edge>) -> anyhow::Result<Link> {
        let mut req = edge.sync_url().as_str().into_client_request()?;
        req.headers_mut()
            .insert("Authorization", format!("Bearer {}", edge.token).parse()?);
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let (socket, _) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(resp) => anyhow::anyhow!(
                    "the upstream refused the store relay's token: HTTP {} {}",
                    resp.status(),
                    resp.body()
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                ),
                e => e.into(),
            })?;
        let principal = edge.principal.clone();
        let st = state.clone();
        let (session, cursor) = on_core(&state, move || {
            let relay = st.relay();
            let cursor = relay.upstream_cursor();
            (relay.upstream_session(principal), cursor)
        })
        .await?;
        let cursor = cursor?;
        let mut link = Link {
            state,
            edge,
            socket,
            session: Some(session),
            pending: HashSet::new(),
            pending_up_to: None,
            pieces: Pieces::default(),
            in_flight: None,
            held_back: false,
            blob: None,
            blobs_later: false,
        };
        link.send(Frame::Hello {
            cursor,
            policy_version: 0,
            app_version: format!(
                "aftercase-relay {} (store relay)",
                env!("CARGO_PKG_VERSION")
            ),
            unsynced: Unsynced::default(),
            features: vec![
                FEATURE_PUSH.into(),
                FEATURE_UPLOAD.into(),
                FEATURE_BLOBS.into(),
                FEATURE_KEYS.into(),
            ],
        })
        .await?;
        tracing::info!(upstream = %link.edge.url, cursor, "connected to the upstream");
        Ok(link)
    }

    async fn send(&mut self, frame: Frame) -> anyhow::Result<()> {
        self.socket
            .send(Message::Binary(frame.encode().into()))
            .await?;
        Ok(())
    }

    async fn run(mut self) -> anyhow::Result<()> {
        let mut local = self.state.subscribe(Some(self.edge.store()));
        let edge = self.edge.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        self.offer().await?;
        loop {
            tokio::select! {
                msg = self.socket.next() => match msg {
                    None => anyhow::bail!("the upstream closed the connection"),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Binary(bytes))) => {
                        let frame = Frame::decode(&bytes)
                            .map_err(|e| anyhow::anyhow!("a frame from the upstream does not decode: {e}"))?;
                        self.on_frame(frame).await?;
                    }
                    Some(Ok(Message::Close(reason))) => {
                        anyhow::bail!("the upstream closed the connection: {}", reason.map(|r| r.reason.to_string()).unwrap_or_default())
                    }
                    Some(Ok(_)) => {}
                },
                changed = local.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.held_back = false;
                    self.offer().await?;
                    self.offer_blob().await?;
                }
                _ = edge.wake.notified() => {
                    self.held_back = false;
                    self.offer().await?;
                }
                _ = tick.tick() => {
                    self.held_back = false;
                    self.blobs_later = false;
                    self.offer().await?;
                    self.offer_blob().await?;
                }
            }
        }
    }

    /// Runs `f` on the relay under its lock, off the executor.
    async fn relay<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut aftercase_sync::relay::Relay<crate::backend::RelayStorage>) -> T
            + Send
            + 'static,
    ) -> anyhow::Result<T> {
        let state = self.state.clone();
        on_core(&self.state, move || {
            let mut relay = state.relay();
            f(&mut relay)
        })
        .await
    }

    /// Sends the next run of changes made in the store, if nothing is
    /// awaiting an answer.
    async fn offer(&mut self) -> anyhow::Result<()> {
        while self.in_flight.is_none() && !self.held_back {
            let own = self.edge.principal.device.clone();
            let Some(upload) = self.relay(move |r| r.next_upload(&own)).await?? else {
                return Ok(());
            };
            self.in_flight = Some(InFlight {
                upload,
                run: 0,
                retried: false,
            });
            self.send_run().await?;
        }
        Ok(())
    }

    /// Sends the in-flight case's current run, or holds it back when its
    /// device's token is missing or expired.
    async fn send_run(&mut self) -> anyhow::Result<()> {
        let Some(f) = &self.in_flight else {
            return Ok(());
        };
        let run = &f.upload.runs[f.run];
        let token = match &run.token {
            Some(t) if !expired(t) => t.clone(),
            _ => {
                tracing::warn!(case = %f.upload.case, device = %run.device, "changes wait for their device to connect again: its token is missing or expired");
                self.in_flight = None;
                self.held_back = true;
                return Ok(());
            }
        };
        let frame = Frame::Relayed {
            token: BearerToken(token),
            doc: f.upload.case,
            changes: run.changes.clone(),
        };
        if f.run == 0 {
            // The case's key goes first, so the upstream opens and checks
            // its sealed customer data and head office can read it. The
            // upstream keeps it only for a case it does not hold yet.
            let case = f.upload.case;
            if let Some(key) = self.relay(move |r| r.case_key(case)).await?? {
                self.send(Frame::Keys {
                    keys: vec![aftercase_sync::protocol::DocKey { doc: case, key }],
                })
                .await?;
            }
        }
        self.send(frame).await
    }

    /// The upstream answered the in-flight run: go on with the next run or
    /// case.
    async fn answered(&mut self, stored: bool) -> anyhow::Result<()> {
        let Some(mut f) = self.in_flight.take() else {
            return Ok(());
        };
        if stored && f.run + 1 < f.upload.runs.len() {
            f.run += 1;
            self.in_flight = Some(f);
            return self.send_run().await;
        }
        let (seq, case, heads) = (f.upload.seq, f.upload.case, f.upload.heads);
        if stored {
            self.relay(move |r| r.upload_done(seq, case, &heads, true))
                .await??;
            self.offer_blob().await?;
        } else {
            self.relay(move |r| r.upload_skipped(seq)).await??;
        }
        self.offer().await
    }

    /// Offers the upstream the next evidence blob of a case passed up
    /// that this relay holds whole, if none is in flight. Blobs not here
    /// yet (the tablet has not uploaded them) wait for the next offer.
    async fn offer_blob(&mut self) -> anyhow::Result<()> {
        if self.blob.is_some() || self.blobs_later {
            return Ok(());
        }
        let wanted = self.relay(|r| r.evidence_to_pass(256)).await??;
        for (case, hash) in wanted {
            if let Ok(Held::Complete(_)) = self.state.blobs.held(&hash) {
                self.blob = Some(hash);
                return self.send(Frame::BlobOffer { doc: case, hash }).await;
            }
        }
        Ok(())
    }

    /// The upstream's answer about the blob in flight.
    async fn blob_frame(&mut self, frame: Frame) -> anyhow::Result<()> {
        match frame {
            Frame::BlobAt { hash, offset } if self.blob == Some(hash) => {
                let blobs = self.state.blobs.clone();
                let bytes = on_core(&self.state, move || {
                    blobs.read(&hash, offset, MAX_BLOB_CHUNK)
                })
                .await??;
                self.send(Frame::BlobChunk {
                    hash,
                    offset,
                    bytes,
                })
                .await?;
            }
            Frame::BlobStored { hash } if self.blob == Some(hash) => {
                self.blob = None;
                self.relay(move |r| r.evidence_passed(&hash)).await??;
                self.offer_blob().await?;
            }
            Frame::BlobRefused { hash, code, reason } if self.blob == Some(hash) => {
                self.blob = None;
                if BlobCode::is_transient(&code) {
                    self.blobs_later = true;
                } else {
                    tracing::warn!(code = %code, "the upstream refused an evidence blob: {reason}");
                    self.relay(move |r| r.evidence_passed(&hash)).await??;
                    self.offer_blob().await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_frame(&mut self, frame: Frame) -> anyhow::Result<()> {
        let in_flight_case = self.in_flight.as_ref().map(|f| f.upload.case);
        match frame {
            Frame::Announce { up_to, docs, .. } => self.announced(up_to, docs).await?,
            Frame::Snapshots { docs } => {
                for DocBytes { doc, bytes } in docs {
                    self.fetched(doc, bytes).await?;
                }
                self.settle_cursor().await?;
            }
            Frame::Piece {
                doc,
                kind,
                index,
                total,
                bytes,
            } => {
                let whole = self
                    .pieces
                    .join(doc, kind, index, total, bytes)
                    .map_err(|e| anyhow::anyhow!("from the upstream: {e}"))?;
                if let (Some(whole), PieceKind::Snapshot) = (whole, kind) {
                    self.fetched(doc, whole).await?;
                    self.settle_cursor().await?;
                }
            }
            Frame::Changes { doc, changes } => {
                // A push: taken in now; the announcement that follows names
                // the heads, and a push that could not apply is fetched.
                self.adopt(doc, changes).await?;
            }
            Frame::Stored { doc, .. } if Some(doc) == in_flight_case => self.answered(true).await?,
            Frame::Refused { doc, code, reason } => {
                if Some(doc) == in_flight_case {
                    tracing::warn!(case = %doc, code = %code, "the upstream refused changes made in the store: {reason}");
                    self.answered(false).await?;
                } else if self.pending.remove(&doc) {
                    tracing::warn!(case = %doc, code = %code, "the upstream refused a fetch: {reason}");
                    self.settle_cursor().await?;
                }
            }
            Frame::Sync { doc, .. } if Some(doc) == in_flight_case => {
                // The upstream lacks what the runs depend on: offer the
                // case's every change once more, then give up on it.
                let retried = self.in_flight.as_ref().is_some_and(|f| f.retried);
                if retried {
                    tracing::warn!(case = %doc, "the upstream could not apply the store's changes of a case");
                    self.answered(false).await?;
                } else {
                    self.in_flight = None;
                    self.relay(move |r| r.set_upstream_heads(doc, &[]))
                        .await??;
                    let own = self.edge.principal.device.clone();
                    if let Some(upload) = self.relay(move |r| r.next_upload(&own)).await?? {
                        self.in_flight = Some(InFlight {
                            upload,
                            run: 0,
                            retried: true,
                        });
                        self.send_run().await?;
                    }
                }
            }
            Frame::Policy { json } => {
                let published = self.relay(move |r| r.adopt_policy(&json)).await??;
                if published {
                    self.state.wake(None);
                }
            }
            f @ (Frame::BlobAt { .. } | Frame::BlobStored { .. } | Frame::BlobRefused { .. }) => {
                self.blob_frame(f).await?
            }
            Frame::Error { reason } => anyhow::bail!("the upstream ended the link: {reason}"),
            // Sync messages and the rest: the announcement that follows
            // names what to fetch.
            _ => {}
        }
        Ok(())
    }

    async fn announced(&mut self, up_to: u64, docs: Vec<DocHeads>) -> anyhow::Result<()> {
        let missing = self.relay(move |r| r.upstream_missing(&docs)).await??;
        self.pending_up_to = Some(self.pending_up_to.unwrap_or(0).max(up_to));
        if !missing.is_empty() {
            self.pending.extend(missing.iter().copied());
            self.send(Frame::Fetch { docs: missing }).await?;
        }
        self.settle_cursor().await
    }

    /// Once every fetched case is taken in (and durable), records the
    /// announced sequence as the cursor to resume from.
    async fn settle_cursor(&mut self) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            return Ok(());
        }
        if let Some(up_to) = self.pending_up_to.take() {
            self.relay(move |r| r.set_upstream_cursor(up_to)).await??;
        }
        Ok(())
    }

    /// A fetched case: its changes are taken in, and the upstream holds
    /// its heads.
    async fn fetched(&mut self, doc: CaseId, bytes: Vec<u8>) -> anyhow::Result<()> {
        let (changes, heads) = on_core(&self.state, move || {
            automerge::Automerge::load(&bytes).map(|d| {
                let changes: Vec<Vec<u8>> = d
                    .get_changes(&[])
                    .into_iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect();
                let heads: Vec<[u8; 32]> = d.get_heads().iter().map(|h| h.0).collect();
                (changes, heads)
            })
        })
        .await?
        .map_err(|e| anyhow::anyhow!("case {doc} from the upstream does not load: {e}"))?;
        self.adopt(doc, changes).await?;
        self.relay(move |r| r.set_upstream_heads(doc, &heads))
            .await??;
        self.pending.remove(&doc);
        Ok(())
    }

    /// Commits the upstream's changes of `doc` here, makes them durable and
    /// wakes the store's tablets.
    async fn adopt(&mut self, doc: CaseId, changes: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let Some(mut session) = self.session.take() else {
            anyhow::bail!("the upstream session was lost");
        };
        let state = self.state.clone();
        let (session, out) = on_core(&self.state, move || {
            let mut relay = state.relay();
            let out = relay.adopt(&mut session, doc, changes, now_millis());
            state.note_seq(&relay);
            let out = out.map(|mut out: RelayOutput| {
                if let (Some(case), Some(summary)) = (out.changed, out.summary.take()) {
                    state.stage_summary(relay.seq(), case, *summary);
                }
                out
            });
            (session, out)
        })
        .await?;
        self.session = Some(session);
        let out = out.map_err(|e| anyhow::anyhow!("case {doc} from the upstream: {e}"))?;
        if out.needs_flush {
            let ticket = self.state.ticket();
            self.state.make_durable(ticket).await?;
            self.state.wake(out.changed_store.as_ref());
        }
        Ok(())
    }
}
