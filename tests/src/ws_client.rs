//! A WebSocket sync connection to a real relay, for the load generator and
//! the benchmarks.

use aftercase_sync::protocol::MAX_FRAME_BYTES;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A sync connection to the relay.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a sync connection (`url` is the relay's `ws://.../v1/sync`) with
/// a bearer token, accepting frames up to the protocol's limit.
pub async fn connect(url: &str, token: &str) -> Result<Socket, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| "token is not a valid header value".to_string())?;
    req.headers_mut().insert("Authorization", auth);
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
        .await
        .map(|(s, _)| s)
        .map_err(|e| format!("connect: {e}"))
}
