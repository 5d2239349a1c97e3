//! Wiring: open storage, build state, serve.

use crate::auth::Keys;
use crate::config::ServeConfig;
use crate::state::AppState;
use crate::{http, secret, ws};
use actix_web::{web, App, HttpServer};
use aftercase_sync::relay::Relay;
use aftercase_sync::storage::SledStorage;

/// Opens the relay's storage and serves until shut down. `on_listen` is told
/// the bound address (useful with port 0).
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
    let storage = SledStorage::open_with_cache(&cfg.db_dir(), cfg.sled_cache_bytes())?;
    let mut relay = Relay::open(storage.clone(), cfg.cache_docs)?;
    relay.set_cache_budget(cfg.doc_cache_bytes());
    tracing::info!(
        seq = relay.seq(),
        "relay storage opened at {}",
        cfg.db_dir().display()
    );
    let state = web::Data::new(AppState::new(relay, storage, Keys::new(&secret)));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PathConfig::default())
            .route("/healthz", web::get().to(http::healthz))
            .route("/v1/sync", web::get().to(ws::sync))
            .route("/v1/cases", web::get().to(http::list_cases))
            .route("/v1/cases/{id}", web::get().to(http::get_case))
            .route("/v1/cases/{id}/doc", web::get().to(http::get_doc))
            .route("/v1/policy", web::get().to(http::get_policy))
    })
    .workers(cfg.workers)
    // Sync frames are small and latency matters: without this, Nagle's
    // algorithm holds a frame back until the previous one is acknowledged
    // (measured: fan-out p90 23.8 ms before, see BENCHMARKS.md).
    .tcp_nodelay(true)
    .bind(cfg.listen)?;
    if let Some(addr) = server.addrs().first() {
        on_listen(*addr);
    }
    server.run().await?;
    Ok(())
}
