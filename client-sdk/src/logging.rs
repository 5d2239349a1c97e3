//! The `aftercase` command line's log subscriber.
//!
//! Dependencies log request details at debug and trace level (tungstenite
//! prints the handshake request with its `Authorization` header and frame
//! payloads, sled prints keys), which would put the device token and
//! customer data in the log. This mirrors `aftercase_server::logging`; the
//! two binaries share no crate where it could live (the core does no IO). So whatever
//! `AFTERCASE_LOG` asks for, events from crates other than ours are capped
//! at info. Our own crates never log tokens or customer personal data at
//! any level.

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Environment variable holding the filter, e.g. `debug` or `aftercase_sync=trace`.
pub const ENV: &str = "AFTERCASE_LOG";

/// Whether events of `target` may be logged at `level`: ours at any level,
/// everything else at info or less verbose.
pub fn allowed(target: &str, level: &Level) -> bool {
    let ours = target
        .split("::")
        .next()
        .is_some_and(|krate| krate.starts_with("aftercase"));
    ours || *level <= Level::INFO
}

/// Installs the subscriber (stderr), with `default` when `AFTERCASE_LOG` is unset.
pub fn init(default: &str) {
    let env = EnvFilter::try_from_env(ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let cap = filter_fn(|meta| allowed(meta.target(), meta.level()));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(env.and(cap)),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_capped_at_info() {
        assert!(allowed("aftercase_client::live", &Level::TRACE));
        assert!(allowed("aftercase_sync::relay", &Level::DEBUG));
        assert!(allowed("actix_http::h1", &Level::INFO));
        assert!(!allowed("actix_http::h1", &Level::DEBUG));
        assert!(!allowed("tungstenite::protocol", &Level::TRACE));
        assert!(!allowed("sled", &Level::TRACE));
        assert!(allowed("hyper", &Level::WARN));
    }
}
