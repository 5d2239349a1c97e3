//! Which log events may be written, shared by the relay's and the device's
//! subscribers.
//!
//! Dependencies log request details at debug and trace level (actix-http
//! and hyper print headers, tungstenite prints the handshake with its
//! `Authorization` header and frame payloads, sled prints keys), which
//! would put tokens and customer data in the log. So whatever the operator
//! asks for, events from crates other than ours are capped at info. Our own
//! crates never log tokens or customer personal data at any level.

use tracing::Level;

/// Whether events of `target` may be logged at `level`: ours at any level,
/// everything else at info or less verbose.
pub fn allowed(target: &str, level: &Level) -> bool {
    let ours = target
        .split("::")
        .next()
        .is_some_and(|krate| krate.starts_with("aftercase"));
    ours || *level <= Level::INFO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_capped_at_info() {
        assert!(allowed("aftercase_server::ws", &Level::TRACE));
        assert!(allowed("aftercase_client::live", &Level::TRACE));
        assert!(allowed("aftercase_sync::relay", &Level::DEBUG));
        assert!(allowed("actix_http::h1", &Level::INFO));
        assert!(!allowed("actix_http::h1", &Level::DEBUG));
        assert!(!allowed("tungstenite::protocol", &Level::TRACE));
        assert!(!allowed("sled", &Level::TRACE));
        assert!(allowed("hyper", &Level::WARN));
    }
}
