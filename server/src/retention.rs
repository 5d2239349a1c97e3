//! Retention (PIPL): the policy's `erase_personal_data_after_days` runs by
//! itself. Every [`EVERY`] the relay erases the personal data of cases
//! closed longer ago than that, as the erasure of `POST /v1/erasures`
//! does, recorded under the user `retention`. A store relay leaves it to
//! the chain's relay (its erasures reach the store through the sync).

use crate::state::{now_millis, AppState};
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::relay::EraseEntropy;
use aftercase_sync::{DeviceId, StoreId, UserId};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// How often retention looks for cases to erase.
pub const EVERY: Duration = Duration::from_secs(600);

/// Who retention's erasures are recorded under.
fn retention() -> Option<Principal> {
    Some(Principal {
        user: UserId::new("retention").ok()?,
        role: Role::HeadOffice,
        store: StoreId::new("HQ").ok()?,
        device: DeviceId::new("relay").ok()?,
    })
}

/// Erases what the policy's retention says is due; returns how many.
pub async fn run_once(state: &Arc<AppState>) -> anyhow::Result<usize> {
    let Some(by) = retention() else {
        return Ok(0);
    };
    let st = state.clone();
    let stores = actix_web::web::block(move || -> anyhow::Result<Vec<_>> {
        let mut relay = st.relay();
        let due = relay.due_for_erasure(now_millis())?;
        let mut stores = Vec::new();
        for case in due {
            let entropy = EraseEntropy {
                actor: rand::rng().random(),
                nonce: rand::rng().random(),
            };
            match relay.erase(case, &by, now_millis(), entropy) {
                Ok(mut out) => {
                    st.note_seq(&relay);
                    if let Some(summary) = out.summary.take() {
                        st.stage_summary(relay.seq(), case, *summary);
                    }
                    stores.push(out.changed_store);
                }
                Err(e) => {
                    tracing::warn!(case = %case, error = %e, "retention could not erase a case")
                }
            }
        }
        Ok(stores)
    })
    .await??;
    if !stores.is_empty() {
        let ticket = state.ticket();
        state.make_durable(ticket).await?;
        for store in &stores {
            state.wake(store.as_ref());
        }
        tracing::info!(
            erased = stores.len(),
            "retention erased the personal data of closed cases"
        );
    }
    Ok(stores.len())
}

/// Runs retention every [`EVERY`] for the life of the relay (not on a
/// store relay).
pub fn spawn(state: Arc<AppState>) {
    if state.edge.get().is_some() {
        return;
    }
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&state).await {
                tracing::warn!(error = %e, "retention failed; trying again later");
            }
        }
    });
}
