//! Prometheus metrics. Labels carry only codes and route names, never identity data.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use cyberid_engine::{Observer, Verdict};
use cyberid_store_etcd::EtcdStats;
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
    /// What an etcd store asked of its clusters (`None` for the embedded store).
    pub(crate) etcd: Option<EtcdStats>,
}

/// The etcd store's counters, registered only on nodes that run on etcd. Set from the store's
/// own counters at each scrape.
#[derive(Debug, Default)]
struct EtcdMetrics {
    txns: Counter,
    keys: Counter,
    max_keys_per_txn: Gauge,
    retries: Counter,
    failed_calls: Counter,
    stalls: Counter,
    stalled_seconds: Counter<f64, AtomicU64>,
    stalled: Gauge,
    release_failures: Counter,
    reloads: Counter,
    revocation_lag: Gauge,
    revision: Gauge,
    view_age_seconds: Gauge<f64, AtomicU64>,
}

impl EtcdMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("etcd");
        for (name, help, counter) in [
            ("txns", "Nonce transactions committed", &metrics.txns),
            (
                "keys",
                "Nonce claims carried by those transactions",
                &metrics.keys,
            ),
            (
                "retries",
                "Requests sent again after no definite answer",
                &metrics.retries,
            ),
            (
                "failed_calls",
                "Nonce batches or revocation writes failed with a store error",
                &metrics.failed_calls,
            ),
            (
                "stalls",
                "Times calls began to fail after a success (elections, partitions)",
                &metrics.stalls,
            ),
            (
                "release_failures",
                "Nonce keys of a failed batch that could not be deleted again",
                &metrics.release_failures,
            ),
            (
                "reloads",
                "Full reloads of the revocation set",
                &metrics.reloads,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "stalled_seconds",
            "Total length of ended stalls",
            metrics.stalled_seconds.clone(),
        );
        for (name, help, gauge) in [
            (
                "max_keys_per_txn",
                "Most nonce claims one transaction carried",
                &metrics.max_keys_per_txn,
            ),
            ("stalled", "1 while a stall is under way", &metrics.stalled),
            (
                "revocation_lag",
                "Revocations the watch had not applied at the last freshness proof",
                &metrics.revocation_lag,
            ),
            (
                "revision",
                "The first cluster's revision at the last freshness proof",
                &metrics.revision,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "view_age_seconds",
            "Age of the last proof that the revocation view is current (no valid past 1 s)",
            metrics.view_age_seconds.clone(),
        );
        metrics
    }

    fn set(&self, stats: &EtcdStats) {
        let set = |counter: &Counter, value: u64| counter.inner().store(value, Ordering::Relaxed);
        set(&self.txns, stats.txns);
        set(&self.keys, stats.keys);
        set(&self.retries, stats.retries);
        set(&self.failed_calls, stats.failed_calls);
        set(&self.stalls, stats.stalls);
        set(&self.release_failures, stats.release_failures);
        set(&self.reloads, stats.reloads);
        self.stalled_seconds.inner().store(
            (stats.stalled_micros as f64 / 1e6).to_bits(),
            Ordering::Relaxed,
        );
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.max_keys_per_txn.set(as_gauge(stats.max_keys_per_txn));
        self.stalled.set(i64::from(stats.stalled));
        self.revocation_lag.set(as_gauge(stats.revocation_lag));
        self.revision.set(stats.revision);
        // Never proved: as stale as can be.
        self.view_age_seconds.set(
            stats
                .view_age
                .map_or(f64::INFINITY, |age| age.as_secs_f64()),
        );
    }
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
    etcd: Option<EtcdMetrics>,
}

fn latency_histogram() -> Histogram {
    // 10 µs to about 5 s.
    Histogram::new(exponential_buckets(1e-5, 2.0, 20))
}

impl Metrics {
    /// The metrics of a node; `clustered` adds the etcd store's.
    pub(crate) fn new(clustered: bool) -> Arc<Self> {
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
            "Time of one synced store write: a RocksDB group commit or revocation, or an etcd \
             nonce transaction (acknowledged after a majority's fsync)",
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
        let etcd = clustered.then(|| EtcdMetrics::register(&mut registry));
        Arc::new(Self {
            etcd,
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
        if let (Some(metrics), Some(stats)) = (&self.etcd, &sizes.etcd) {
            metrics.set(stats);
        }
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
        let metrics = Metrics::new(false);
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
        assert!(
            !text.contains("cyberid_etcd_"),
            "no etcd metrics on an embedded store"
        );
    }

    #[test]
    fn an_etcd_node_exports_its_store_counters() {
        let metrics = Metrics::new(true);
        let mut stats = EtcdStats::default();
        stats.txns = 10;
        stats.keys = 640;
        stats.stalls = 2;
        stats.stalled_micros = 1_500_000;
        stats.view_age = Some(Duration::from_millis(250));
        let text = metrics.render(Sizes {
            etcd: Some(stats),
            ..Sizes::default()
        });
        for line in [
            "cyberid_etcd_txns_total 10",
            "cyberid_etcd_keys_total 640",
            "cyberid_etcd_stalls_total 2",
            "cyberid_etcd_stalled_seconds_total 1.5",
            "cyberid_etcd_view_age_seconds 0.25",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
