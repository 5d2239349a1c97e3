//! The WebSocket connection to the relay.

use crate::config::DeviceConfig;
use crate::error::SyncError;
use aftercase_sync::protocol::MAX_FRAME_BYTES;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;

/// The socket type.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Whether the token's own `exp` claim has passed on this device's clock.
/// Read only to name the remedy when the relay has refused the token: the
/// relay's verdict is what counts, never this device's clock.
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

/// Connects and authenticates. A 401 becomes [`SyncError::TokenRejected`]
/// ([`SyncError::TokenExpired`] when the token's expiry has passed),
/// or [`SyncError::Revoked`] when the relay says the token was revoked; a
/// 429 becomes [`SyncError::TooManyConnections`]. The relay's own words are
/// kept in each.
pub async fn connect(cfg: &DeviceConfig) -> Result<Socket, SyncError> {
    let url = cfg.sync_url();
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| SyncError::Unreachable {
            url: cfg.relay.clone(),
            reason: e.to_string(),
        })?;
    let auth = format!("Bearer {}", cfg.token)
        .parse()
        .map_err(|_| SyncError::TokenRejected("the stored token has invalid characters".into()))?;
    req.headers_mut().insert("Authorization", auth);
    let ws_cfg = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    match tokio_tungstenite::connect_async_with_config(req, Some(ws_cfg), true).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(resp)) => {
            let json = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
            let field = |name: &str| {
                json.as_ref()
                    .and_then(|v| v.get(name).and_then(|e| e.as_str()).map(str::to_string))
            };
            let body = field("error").unwrap_or_else(|| format!("HTTP {}", resp.status()));
            if field("code").as_deref() == Some("device_lost") {
                Err(SyncError::DeviceLost(body))
            } else if field("code").as_deref() == Some("revoked") {
                Err(SyncError::Revoked(body))
            } else if resp.status() == 401 && expired(&cfg.token) {
                Err(SyncError::TokenExpired(body))
            } else if resp.status() == 401 || resp.status() == 403 {
                Err(SyncError::TokenRejected(body))
            } else if resp.status() == 429 {
                Err(SyncError::TooManyConnections(body))
            } else {
                Err(SyncError::Unreachable {
                    url: cfg.relay.clone(),
                    reason: body,
                })
            }
        }
        Err(e) => Err(SyncError::Unreachable {
            url: cfg.relay.clone(),
            reason: e.to_string(),
        }),
    }
}
