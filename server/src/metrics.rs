//! Prometheus metrics. Labels carry only codes and route names, never identity data.

use std::sync::Arc;
use std::time::Duration;

use cyberid_engine::{Observer, Verdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabel {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Point-in-time sizes, read when metrics are scraped.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sizes {
    pub(crate) queue_depth: usize,
    pub(crate) live_nonces: usize,
    pub(crate) revoked_web_numbers: usize,
    pub(crate) revoked_certificates: usize,
    pub(crate) revoked_keys: usize,
    pub(crate) connections: usize,
    pub(crate) ready: bool,
}

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    verdicts: Family<VerdictLabel, Counter>,
    responses: Family<ResponseLabel, Counter>,
    latency: Family<RouteLabel, Histogram>,
    batch_size: Histogram,
    batch_seconds: Histogram,
    store_sync_seconds: Histogram,
    queue_depth: Gauge,
    live_nonces: Gauge,
    revoked: Family<KindLabel, Gauge>,
    connections: Gauge,
    ready: Gauge,
}

fn latency_histogram() -> Histogram {
    // 10 µs to about 5 s.
    Histogram::new(exponential_buckets(1e-5, 2.0, 20))
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("cyberid");
        let verdicts = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "verifications",
            "Verification verdicts: valid, or the reason code of an invalid one",
            verdicts.clone(),
        );
        let responses = Family::<ResponseLabel, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP responses by route and status",
            responses.clone(),
        );
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request headers to response, by route",
            latency.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "batch_size",
            "Verifications per signature batch",
            batch_size.clone(),
        );
        let batch_seconds = latency_histogram();
        registry.register(
            "batch_check_duration_seconds",
            "Time to check one batch's signatures across the verification threads",
            batch_seconds.clone(),
        );
        let store_sync_seconds = latency_histogram();
        registry.register(
            "store_sync_duration_seconds",
            "Time of one synced RocksDB write (a nonce group commit or a revocation)",
            store_sync_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Verifications waiting for a batch",
            queue_depth.clone(),
        );
        let live_nonces = Gauge::default();
        registry.register(
            "live_nonces",
            "Replay nonces held (certificates used and not yet expired)",
            live_nonces.clone(),
        );
        let revoked = Family::<KindLabel, Gauge>::default();
        registry.register(
            "revoked",
            "Entries of the revocation set: web_number (suspended or revoked), certificate, key",
            revoked.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when the node serves verifications",
            ready.clone(),
        );
        Arc::new(Self {
            registry,
            verdicts,
            responses,
            latency,
            batch_size,
            batch_seconds,
            store_sync_seconds,
            queue_depth,
            live_nonces,
            revoked,
            connections,
            ready,
        })
    }

    pub(crate) fn verdict(&self, verdict: &Verdict) {
        let label = match verdict.reason() {
            None => "valid",
            Some(reason) => reason.code(),
        };
        self.verdicts
            .get_or_create(&VerdictLabel { verdict: label })
            .inc();
    }

    pub(crate) fn response(&self, route: &'static str, status: u16, took: Duration) {
        self.responses
            .get_or_create(&ResponseLabel { route, status })
            .inc();
        self.latency
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with the point-in-time gauges set from `sizes`.
    pub(crate) fn render(&self, sizes: Sizes) -> String {
        let as_gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.queue_depth.set(as_gauge(sizes.queue_depth));
        self.live_nonces.set(as_gauge(sizes.live_nonces));
        for (kind, value) in [
            ("web_number", sizes.revoked_web_numbers),
            ("certificate", sizes.revoked_certificates),
            ("key", sizes.revoked_keys),
        ] {
            self.revoked
                .get_or_create(&KindLabel { kind })
                .set(as_gauge(value));
        }
        self.connections.set(as_gauge(sizes.connections));
        self.ready.set(i64::from(sizes.ready));
        let mut text = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Observer for Metrics {
    fn batch_checked(&self, size: usize, took: Duration) {
        self.batch_size.observe(size as f64);
        self.batch_seconds.observe(took.as_secs_f64());
    }

    fn store_synced(&self, took: Duration) {
        self.store_sync_seconds.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use cyberid_engine::Reason;

    use super::*;

    #[test]
    fn verdicts_and_sizes_appear_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.verdict(&Verdict::Invalid {
            reason: Reason::Replayed,
        });
        metrics.response("verify", 200, Duration::from_micros(150));
        metrics.batch_checked(16, Duration::from_micros(200));
        let text = metrics.render(Sizes {
            queue_depth: 3,
            live_nonces: 42,
            ready: true,
            ..Sizes::default()
        });
        assert!(
            text.contains("cyberid_verifications_total{verdict=\"replayed\"} 1"),
            "{text}"
        );
        assert!(text.contains("cyberid_http_responses_total{route=\"verify\",status=\"200\"} 1"));
        assert!(text.contains("cyberid_live_nonces 42"));
        assert!(text.contains("cyberid_queue_depth 3"));
        assert!(text.contains("cyberid_batch_size_count 1"));
        assert!(text.contains("cyberid_ready 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
