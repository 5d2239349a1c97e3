//! Keeps the read model current when what a summary depends on changes
//! without a commit: a new policy (deadlines move), a newer summary schema
//! after an upgrade, or cases stored before the read model existed. Cases
//! are derived again a few at a time under the relay's lock, so sync goes
//! on between them.

use crate::state::AppState;
use actix_web::web;
use aftercase_sync::relay::summary::SUMMARY_SCHEMA;
use aftercase_sync::relay::CaseFilter;
use aftercase_sync::CaseId;
use std::collections::HashSet;
use std::sync::Arc;

/// Cases derived per hold of the relay's lock.
const STEP: usize = 32;

/// One pass at a time: a pass started while another runs waits for it.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Derives again every summary that is missing or stale, then returns.
pub async fn refresh(state: Arc<AppState>) {
    let _one = RUNNING.lock().await;
    let st = state.clone();
    let todo = web::block(move || {
        let relay = st.relay();
        let version = relay.policy().0.version;
        let all = relay.list(&CaseFilter::default())?;
        drop(relay);
        let model = st.read_model();
        let mut todo: HashSet<CaseId> = model.stale(version, SUMMARY_SCHEMA).into_iter().collect();
        todo.extend(
            all.into_iter()
                .map(|(id, _)| id)
                .filter(|id| model.get(*id).is_none()),
        );
        Ok::<_, aftercase_sync::storage::StorageError>((
            todo.into_iter().collect::<Vec<_>>(),
            version,
        ))
    })
    .await;
    let (todo, _) = match todo {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "read model refresh could not list the cases");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "read model refresh failed");
            return;
        }
    };
    if todo.is_empty() {
        return;
    }
    tracing::info!(
        cases = todo.len(),
        "deriving case summaries again for the read model"
    );
    for chunk in todo.chunks(STEP) {
        let ids = chunk.to_vec();
        let st = state.clone();
        let done = web::block(move || {
            let mut relay = st.relay();
            let version = relay.policy().0.version;
            let mut fresh = Vec::new();
            for id in ids {
                match relay.current_summary(id) {
                    Ok(Some(s)) => fresh.push((id, s)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, case = %id, "could not derive a case summary")
                    }
                }
            }
            drop(relay);
            st.refresh_summaries(fresh, version, SUMMARY_SCHEMA);
        })
        .await;
        if done.is_err() {
            return;
        }
    }
    tracing::info!("read model current");
}
