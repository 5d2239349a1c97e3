//! The `aftercase` command line's log subscriber: whatever `AFTERCASE_LOG`
//! asks for, other crates' events are capped at info
//! ([`aftercase_sync::logs::allowed`]), so neither the device token nor
//! customer data reaches the log.

use aftercase_sync::logs::allowed;
use std::io::IsTerminal;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Environment variable holding the filter, e.g. `debug` or `aftercase_sync=trace`.
pub const ENV: &str = "AFTERCASE_LOG";

/// Installs the subscriber (stderr), with `default` when `AFTERCASE_LOG` is unset.
pub fn init(default: &str) {
    let env = EnvFilter::try_from_env(ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let cap = filter_fn(|meta| allowed(meta.target(), meta.level()));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a person at a terminal: in a file or
                // a log collector they are noise around every field.
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(env.and(cap)),
        )
        .try_init();
}
