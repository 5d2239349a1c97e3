//! The relay's Prometheus metrics, served at `GET /metrics`.
//!
//! Typical workflow: [`Metrics::new`] registers everything once at startup;
//! the WebSocket endpoint, group commit, the relay lock and the HTTP
//! middleware record into it as they go; the `/metrics` handler calls
//! [`Metrics::render`]. Every label has a small fixed set of values (frame
//! types, refusal codes, route patterns, HTTP methods and statuses), so no
//! user, device, store or case id ever becomes a label: the page names no
//! customer and no secret, and its size does not grow with the fleet.

use aftercase_sync::protocol::RefusalCode;
use aftercase_sync::relay::CacheStats;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::time::Duration;

/// Buckets, in seconds, for work that is usually well under a millisecond
/// but may take seconds under load (frame handling, flushes, requests).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets, in seconds, for how long other devices wait to hear of a change.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Registering a metric failed (a programming error: a bad or repeated name).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every metric the relay exports, registered in its own registry (not the
/// process-wide default, so tests and embedders can hold several).
pub struct Metrics {
    registry: Registry,
    connections: IntGauge,
    frames_received: IntCounterVec,
    frames_sent: IntCounterVec,
    bytes_received: IntCounterVec,
    bytes_sent: IntCounterVec,
    core_seconds: HistogramVec,
    commit_seconds: Histogram,
    flush_seconds: Histogram,
    refusals: IntCounterVec,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    cache_evictions: IntCounter,
    cached_docs: IntGauge,
    announce_lag: Histogram,
    devices_with_unsynced: IntGauge,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
}

impl Metrics {
    /// Creates and registers every metric; call once at startup.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        let connections = IntGauge::new(
            "aftercase_sync_connections",
            "Live WebSocket sync connections.",
        )?;
        reg(Box::new(connections.clone()))?;
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let frames_received = counter_vec(
            "aftercase_frames_received_total",
            "Sync frames received from devices, by frame type.",
            &["frame"],
        )?;
        let frames_sent = counter_vec(
            "aftercase_frames_sent_total",
            "Sync frames handed to device sockets, by frame type.",
            &["frame"],
        )?;
        let bytes_received = counter_vec(
            "aftercase_frame_bytes_received_total",
            "Bytes of sync frames received, by frame type.",
            &["frame"],
        )?;
        let bytes_sent = counter_vec(
            "aftercase_frame_bytes_sent_total",
            "Bytes of sync frames sent, by frame type.",
            &["frame"],
        )?;
        let refusals = counter_vec(
            "aftercase_refusals_total",
            "Refused frames sent to devices, by refusal code.",
            &["code"],
        )?;
        for code in RefusalCode::ALL {
            // Every code exists from the start, so a rate over it is defined.
            refusals.with_label_values(&[code.as_str()]);
        }
        let http_requests = counter_vec(
            "aftercase_http_requests_total",
            "HTTP requests answered, by method, route pattern and status.",
            &["method", "route", "status"],
        )?;
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let core_seconds = histogram_vec(
            "aftercase_relay_core_seconds",
            "Time a frame (or a wake-up's announcement) spends in the relay core, \
             waiting for its lock included, encoding of the answer included.",
            &["frame"],
        )?;
        let http_seconds = histogram_vec(
            "aftercase_http_request_seconds",
            "Time to answer an HTTP request, by route pattern.",
            &["route"],
        )?;
        let commit_seconds = histogram(
            "aftercase_commit_seconds",
            "Time an applied write waits until a group flush made it durable.",
            LATENCY_BUCKETS,
        )?;
        let flush_seconds = histogram(
            "aftercase_flush_seconds",
            "Time one storage flush takes.",
            LATENCY_BUCKETS,
        )?;
        let announce_lag = histogram(
            "aftercase_announce_lag_seconds",
            "Time from a change being applied to the wake-up of the \
             connections of its store (the flush in between included).",
            LAG_BUCKETS,
        )?;
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let cache_hits = counter(
            "aftercase_doc_cache_hits_total",
            "Uses of a case that found its document loaded.",
        )?;
        let cache_misses = counter(
            "aftercase_doc_cache_misses_total",
            "Uses of a case that read its document from storage.",
        )?;
        let cache_evictions = counter(
            "aftercase_doc_cache_evictions_total",
            "Loaded documents dropped to stay within the cache's bounds.",
        )?;
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let cached_docs = gauge(
            "aftercase_doc_cache_documents",
            "Documents loaded in the relay's cache.",
        )?;
        let devices_with_unsynced = gauge(
            "aftercase_devices_with_unsynced_work",
            "Connected devices that reported local changes not yet accepted by the relay.",
        )?;
        Ok(Metrics {
            registry,
            connections,
            frames_received,
            frames_sent,
            bytes_received,
            bytes_sent,
            core_seconds,
            commit_seconds,
            flush_seconds,
            refusals,
            cache_hits,
            cache_misses,
            cache_evictions,
            cached_docs,
            announce_lag,
            devices_with_unsynced,
            http_requests,
            http_seconds,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut out = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)?;
        Ok(out)
    }

    /// Counts a live sync connection until the returned guard is dropped;
    /// hold it for the connection's whole life, so every way out of it
    /// counts it down.
    pub fn connection_opened(&self) -> ConnectionGauge {
        self.connections.inc();
        ConnectionGauge(self.connections.clone())
    }

    /// A frame of type `frame` (`Frame::name`) and `bytes` long arrived.
    pub fn frame_received(&self, frame: &'static str, bytes: usize) {
        self.frames_received.with_label_values(&[frame]).inc();
        self.bytes_received
            .with_label_values(&[frame])
            .inc_by(bytes as u64);
    }

    /// A frame was handed to a device's socket; `refusal` is the code of a
    /// `Refused` frame.
    pub fn frame_sent(&self, frame: &'static str, bytes: usize, refusal: Option<&str>) {
        self.frames_sent.with_label_values(&[frame]).inc();
        self.bytes_sent
            .with_label_values(&[frame])
            .inc_by(bytes as u64);
        if let Some(code) = refusal {
            self.refusals
                .with_label_values(&[refusal_label(code)])
                .inc();
        }
    }

    /// `frame` (a frame type, or `announce` for a wake-up) spent `took` in
    /// the relay core.
    pub fn core_time(&self, frame: &'static str, took: Duration) {
        self.core_seconds
            .with_label_values(&[frame])
            .observe(took.as_secs_f64());
    }

    /// A write waited `took` until it was durable.
    pub fn commit_time(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// One storage flush took `took`.
    pub fn flush_time(&self, took: Duration) {
        self.flush_seconds.observe(took.as_secs_f64());
    }

    /// A store's connections were woken `lag` after the change was applied.
    pub fn announce_lag(&self, lag: Duration) {
        self.announce_lag.observe(lag.as_secs_f64());
    }

    /// Copies the relay core's cache counters; call with the relay lock
    /// held (the counters only grow, and holding the lock keeps two
    /// callers from adding the same difference twice).
    pub fn note_cache(&self, stats: CacheStats, cached_docs: usize) {
        let catch_up = |c: &IntCounter, total: u64| c.inc_by(total.saturating_sub(c.get()));
        catch_up(&self.cache_hits, stats.hits);
        catch_up(&self.cache_misses, stats.misses);
        catch_up(&self.cache_evictions, stats.evictions);
        self.cached_docs
            .set(i64::try_from(cached_docs).unwrap_or(i64::MAX));
    }

    /// Sets how many connected devices reported work the relay has not yet
    /// accepted. Whoever tracks the devices' reports calls this whenever
    /// the number changes; until then it stays 0.
    pub fn set_devices_with_unsynced(&self, n: u64) {
        self.devices_with_unsynced
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// An HTTP request was answered. `route` must be a route pattern (or
    /// `unmatched`), never the path a client sent.
    /// `method` is a standard method or `other` (see `method_label`).
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        // A status is three digits (actix's `StatusCode` is 100-999): a
        // bounded label.
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[method, route, &status])
            .inc();
        self.http_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }
}

/// Counts one live connection while it exists (see
/// [`Metrics::connection_opened`]).
pub struct ConnectionGauge(IntGauge);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A refusal code as a label: the relay's own codes, anything else `other`
/// (the label set stays the fixed list of codes).
fn refusal_label(code: &str) -> &'static str {
    code.parse::<RefusalCode>()
        .map(RefusalCode::as_str)
        .unwrap_or("other")
}

/// A request method as a label or log field: a client may send any token
/// as its method, so only the standard ones are kept.
pub(crate) fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}
