//! Wiring: open storage, build state, serve, and stop cleanly on SIGTERM
//! or Ctrl-C.

use crate::api::routes;
use crate::auth::Keys;
use crate::backend::{Database, RelayStorage};
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::limits::ConnLimits;
use crate::metrics::Metrics;
use crate::revoke::Revocations;
use crate::state::{AppState, Settings};
use crate::{access_log, refresh, revoke, secret, ws};
use actix_web::{middleware, web, App, HttpServer};
use aftercase_sync::blobs::DirBlobs;
use aftercase_sync::relay::readmodel::ReadModel;
use aftercase_sync::relay::Relay;
use anyhow::Context;
use std::sync::Arc;

/// Seconds the server waits, after a stop signal, for connections to end
/// before dropping them. Sync connections close themselves at once (see
/// `ws::SHUTDOWN_DRAIN`), so this only bounds a stuck one; actix's default
/// is 30 s, longer than a process supervisor usually waits.
const SHUTDOWN_TIMEOUT: u64 = 5;

/// Opens the relay's storage and serves until SIGTERM or Ctrl-C, then stops
/// accepting, closes every sync connection with "going away", flushes
/// storage and returns. `on_listen` is told the bound address (useful with
/// port 0).
pub async fn run(
    cfg: ServeConfig,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let (secret, source) = secret::load_or_create(&cfg.data_dir)?;
    match &source {
        secret::Source::Env => tracing::info!("token signing secret from {}", secret::ENV),
        secret::Source::File(p) => tracing::info!("token signing secret from {}", p.display()),
        secret::Source::Created(p) => tracing::info!(
            "no signing secret configured: created a random one in {} (set {} to use your own)",
            p.display(),
            secret::ENV
        ),
    }
    // Opening reads the whole store (the read model): on a blocking thread,
    // where PostgreSQL's client may run its own runtime.
    let (storage, mut relay, read_model) = {
        let cfg = cfg.clone();
        web::block(move || open_relay(&cfg)).await??
    };
    // Storage that opens below the durable watermark lost acknowledged
    // changes (see watermark.rs): say so, and never hand out a sequence
    // number a device may already have been told.
    let restored = cfg.data_dir.join(crate::watermark::RESTORED);
    if restored.exists() {
        let from = relay.seq();
        relay.resume_after(from.saturating_add(crate::watermark::RESTORE_JUMP))?;
        std::fs::remove_file(&restored)?;
        tracing::info!(from, to = relay.seq(), "serving a restored backup: the change sequence moves past anything tablets were told since");
    }
    let lost = match crate::watermark::read(&cfg.data_dir) {
        Some(w) if relay.seq() < w => {
            let message = crate::watermark::lost_message(relay.seq(), w);
            tracing::error!("{message}");
            relay.resume_after(w + crate::watermark::MARGIN)?;
            Some(message)
        }
        _ => None,
    };
    // sled creates its files with the process umask: tighten the whole
    // directory now that they exist (the secret and revocations are
    // created 0600 already).
    aftercase_sync::storage::perms::restrict_tree(&cfg.data_dir)?;
    let revocations = Revocations::load(&cfg.data_dir)?;
    if !revocations.is_empty() {
        tracing::info!(in_force = revocations.len(), "revocations loaded");
    }
    let state = web::Data::new(AppState::new(
        relay,
        storage,
        read_model,
        Settings {
            keys: Keys::new(&secret),
            revocations,
            limits: ConnLimits::new(cfg.max_device_connections, cfg.max_user_connections),
            budget_bytes: cfg.send_budget_bytes(),
            write_timeout: cfg.write_timeout,
            metrics: Arc::new(Metrics::new()?),
            blobs: Arc::new(DirBlobs::open(&cfg.data_dir.join("blobs"))?),
        },
    ));
    state.health.note_durable(state.seq());
    // The guard notes the quarantined cases as it is dropped.
    drop(state.relay());
    if let Some(message) = lost {
        state.health.data_lost(message);
    }
    crate::watermark::spawn(state.clone().into_inner(), cfg.data_dir.clone());
    revoke::watch(cfg.data_dir.clone(), state.revocations().clone());
    // Other relays on the same PostgreSQL database: their commits reach
    // this relay's devices and head office through the follower.
    if let Database::Postgres(url) = &cfg.database {
        crate::follow::spawn(
            state.clone().into_inner(),
            url.clone(),
            cfg.database.describe(),
        );
    }
    if let Some((url, token)) = &cfg.upstream {
        let principal = state.keys_verify(token).map_err(|e| {
            anyhow::anyhow!(
                "the --upstream-token does not verify with this relay's signing secret ({e}): \
                 a store relay checks its tablets' tokens with the chain's secret, so set \
                 AFTERCASE_JWT_SECRET as the upstream has it"
            )
        })?;
        let edge = Arc::new(crate::upstream::Edge {
            url: url.clone(),
            token: token.clone(),
            principal,
            wake: tokio::sync::Notify::new(),
        });
        tracing::info!(upstream = %url, store = %edge.principal.store, device = %edge.principal.device, "store relay: syncing the store with its upstream");
        let _ = state.edge.set(edge.clone());
        crate::upstream::spawn(state.clone().into_inner(), edge);
    }
    actix_web::rt::spawn(refresh::refresh(state.clone().into_inner()));
    crate::retention::spawn(state.clone().into_inner());
    let app_state = state.clone();
    let server =
        HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(access_log::record))
                .app_data(app_state.clone())
                .app_data(web::PathConfig::default())
                // Deserialization errors would quote the query; answer plainly.
                .app_data(web::QueryConfig::default().error_handler(|_, _| {
                    ApiError::BadRequest("malformed query string".into()).into()
                }))
                // Every route is in the one table the OpenAPI tests check.
                .configure(routes::configure)
        })
        .workers(cfg.workers)
        // Signals are handled below, so connections hear of the shutdown.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        // A handle on each connection's socket lets a sync connection whose
        // device stopped reading be shut down (see ws::SocketHandle).
        .on_connect(|conn, ext| {
            if let Some(socket) = ws::SocketHandle::of(conn) {
                ext.insert(socket);
            }
        })
        // Sync frames are small and latency matters: without this, Nagle's
        // algorithm holds a frame back until the previous one is acknowledged
        // (measured: fan-out p90 23.8 ms before, see BENCHMARKS.md).
        .tcp_nodelay(true)
        .bind(cfg.listen)?;
    if let Some(addr) = server.addrs().first() {
        on_listen(*addr);
    }
    let server = server.run();
    let handle = server.handle();
    let stopping = state.clone();
    actix_web::rt::spawn(async move {
        let why = stop_requested().await;
        tracing::info!("{why}: shutting down (closing connections, then flushing storage)");
        stopping.begin_shutdown();
        handle.stop(true).await;
    });
    server.await?;
    // Every connection has ended: whatever was applied and not yet flushed
    // (writes whose acknowledgement was never sent) is made durable now.
    let flushing = state.clone();
    web::block(move || flushing.flush_all()).await??;
    tracing::info!("relay stopped");
    Ok(())
}

/// Opens the configured storage, the relay on it and head office's read
/// model. Blocks.
fn open_relay(cfg: &ServeConfig) -> anyhow::Result<(RelayStorage, Relay<RelayStorage>, ReadModel)> {
    let storage = cfg
        .database
        .open(cfg.sled_cache_bytes(), false)
        .with_context(|| format!("cannot open {}", cfg.database.describe()))?;
    let mut relay = Relay::open(storage.clone(), cfg.cache_docs)?;
    relay.set_cache_budget(cfg.doc_cache_bytes());
    relay.set_recent_budget(cfg.recent_bytes());
    relay.set_hot_states(cfg.hot_states());
    // Other relays may commit to a PostgreSQL database (follow.rs).
    if matches!(cfg.database, Database::Postgres(_)) {
        relay.follow_others();
    }
    // Customer phones are kept in the read model only as a salted hash.
    relay.init_customer_salt(rand::random())?;
    // A store relay keeps no head-office read model: head office reads the
    // chain's relay, and a small box has no memory to spare for one.
    let read_model = if cfg.upstream.is_some() {
        ReadModel::new()
    } else {
        let model = aftercase_sync::relay::load_read_model(&storage)?;
        tracing::info!(cases = model.len(), "read model loaded");
        model
    };
    tracing::info!(
        seq = relay.seq(),
        "relay storage opened: {}",
        cfg.database.describe()
    );
    Ok((storage, relay, read_model))
}

/// Waits for SIGTERM (what service managers and container runtimes send)
/// or Ctrl-C; says which.
async fn stop_requested() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: never report a Ctrl-C that
            // did not happen.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = ctrl_c => "Ctrl-C",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stop the relay with Ctrl-C");
                ctrl_c.await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c.await;
        "Ctrl-C"
    }
}
