//! The store's settings, checked when the store connects.

use std::time::Duration;

use cyberid_engine::Error;

use crate::layout::MAX_NODE_ID;

/// Settings of an [`EtcdStore`](crate::EtcdStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// The cluster's client URLs (`http://host:port`); the client balances over them and
    /// fails over between them.
    pub endpoints: Vec<String>,
    /// Further clusters that share the nonces with the first, each a list of client URLs.
    /// Empty (the default): every nonce lives on `endpoints`. Otherwise the certificate-id
    /// space is split evenly over `endpoints` (place 0) and these (places 1...), so that the
    /// stress rate does not rest on one Raft group; the deployment's meta keys and the whole
    /// revocation set stay on the first. The list is fixed for the life of a deployment: each
    /// cluster records its place, and a node that lists them otherwise is refused.
    pub nonce_clusters: Vec<Vec<String>>,
    /// Every key of this deployment starts with it (`/cyberid` by default), so that one
    /// cluster can hold several deployments or test runs side by side. No trailing `/`.
    pub prefix: String,
    /// This node's name, stored with every nonce it consumes so that an operator can tell which
    /// node answered `valid`: 1 to 64 characters from A-Z a-z 0-9 `- _ . :`. Uniqueness is not
    /// required for correctness (write ids carry a random per-process part).
    pub node_id: String,
    /// The cluster's `--max-txn-ops` (128 unless it was started with another value). etcd
    /// counts a nested transaction's operations against what its parent leaves, so one
    /// transaction carries at most `max_txn_ops - 1` claims (127), and a revocation batch at
    /// most `max_txn_ops - 1` operations besides the counter (one log entry per record and one
    /// state key per distinct target). A larger nonce batch is sent as several transactions,
    /// which is no longer all-or-nothing (see `docs/store.md`): keep the pipeline's `max_batch`
    /// at or below `max_txn_ops - 1`.
    pub max_txn_ops: usize,
    /// How long one request to the cluster may take before it counts as unanswered.
    pub request_timeout: Duration,
    /// How many times a request without a definite answer (timeout, no leader, lost
    /// connection) is sent in all, with the same write id, before the call fails with a
    /// retryable `store` error. At least 1.
    pub attempts: u32,
    /// Longest a batch of nonces may wait for the cluster, retries included. Past it the
    /// batch fails with a retryable error (503 to the platform) instead of holding the node's
    /// queue through an election or a partition. A transaction whose answer was lost at the
    /// deadline may still have consumed its certificates: a platform's retry with the same
    /// `Idempotency-Key` is still answered `valid`.
    pub call_deadline: Duration,
    /// Width of a nonce expiry bucket, seconds: each node holds one etcd lease per bucket.
    pub bucket_seconds: u64,
    /// How long, seconds, a nonce's key outlives its claim's `retain_until`: at least half of
    /// this is guaranteed (see `docs/store.md`). It covers clock differences between nodes and
    /// etcd; a lease is never shortened by etcd (a new leader extends leases).
    pub lease_margin: u64,
    /// How often the node runs [`expire`](cyberid_engine::NonceStore::expire) on its own, at
    /// its clock's time: it forgets past buckets and raises the expiry horizon.
    pub expiry_interval: Duration,
    /// Bound on the live nonces this node has written (its share of the cluster's key space):
    /// a batch that could pass it is refused whole with `nonce_store_full` before anything is
    /// written. The cluster holds at most the sum over its nodes.
    pub max_live_nonces: usize,
    /// For a new deployment only (no history key under the prefix yet): when its history
    /// begins. `None` is the moment the first node connects. Every other node reads the
    /// deployment's value; its own is ignored.
    pub history_begins: Option<u64>,
    /// How often the node proves its revocation view current with a linearizable read.
    pub freshness_interval: Duration,
    /// How old the last proof may be before [`check_current`] fails, so that the node answers
    /// no `valid` on a view that may miss an acknowledged revocation.
    ///
    /// [`check_current`]: cyberid_engine::RevocationSet::check_current
    pub max_staleness: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            nonce_clusters: Vec::new(),
            prefix: "/cyberid".into(),
            node_id: "cyberid".into(),
            max_txn_ops: 128,
            request_timeout: Duration::from_secs(1),
            attempts: 4,
            call_deadline: Duration::from_secs(2),
            bucket_seconds: 60,
            lease_margin: 300,
            expiry_interval: Duration::from_secs(10),
            max_live_nonces: 1_000_000,
            history_begins: None,
            freshness_interval: Duration::from_millis(250),
            max_staleness: Duration::from_secs(1),
        }
    }
}

impl EtcdOptions {
    /// Options for the clusters named by an `etcd://host:port[,host:port...][/prefix]` URL
    /// (the form `cyberid serve --store` takes), with defaults for everything else. Further
    /// nonce clusters follow the first after `+`:
    /// `etcd://a1:2379,a2:2379,a3:2379+b1:2379,b2:2379,b3:2379/prefix`.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or(Error::Config("an etcd store URL starts with etcd://"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let mut clusters = hosts.split('+').map(|cluster| {
            cluster
                .split(',')
                .filter(|host| !host.is_empty())
                .map(|host| format!("http://{host}"))
                .collect::<Vec<String>>()
        });
        let endpoints = clusters.next().unwrap_or_default();
        let options = Self {
            endpoints,
            nonce_clusters: clusters.collect(),
            prefix: if prefix.is_empty() {
                Self::default().prefix
            } else {
                prefix.into()
            },
            ..Self::default()
        };
        options.validate()?;
        Ok(options)
    }

    /// How many clusters hold nonces: the first and the further ones.
    pub fn nonce_cluster_count(&self) -> usize {
        1 + self.nonce_clusters.len()
    }

    /// Most claims in one transaction: a nested transaction gets the operations its parent
    /// leaves (`max_txn_ops` minus the parent's own), and each claim's needs one.
    pub fn claims_per_txn(&self) -> usize {
        self.max_txn_ops.saturating_sub(1).max(1)
    }

    /// Checks every setting; [`EtcdStore::connect`](crate::EtcdStore::connect) calls it.
    pub fn validate(&self) -> Result<(), Error> {
        let well_formed = |endpoints: &[String]| {
            !endpoints.is_empty()
                && endpoints.iter().all(|endpoint| {
                    (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                        && endpoint.len() > "https://".len()
                })
        };
        if !well_formed(&self.endpoints) || !self.nonce_clusters.iter().all(|c| well_formed(c)) {
            return Err(Error::Config(
                "each etcd cluster is one or more http://host:port URLs",
            ));
        }
        if self.nonce_clusters.len() > 255 {
            return Err(Error::Config("at most 256 nonce clusters"));
        }
        if !self.prefix.starts_with('/')
            || self.prefix.ends_with('/')
            || self.prefix.len() > 128
            || !self.prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::Config(
                "the etcd key prefix starts with /, does not end with /, and is at most 128 \
                 printable ASCII characters",
            ));
        }
        if !(1..=MAX_NODE_ID).contains(&self.node_id.len())
            || !self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(Error::Config(
                "a node id is 1 to 64 characters from A-Z a-z 0-9 - _ . :",
            ));
        }
        if self.max_txn_ops < 4 {
            return Err(Error::Config("max_txn_ops is at least 4"));
        }
        if self.request_timeout.is_zero() || self.attempts == 0 || self.call_deadline.is_zero() {
            return Err(Error::Config(
                "request_timeout, attempts and call_deadline must be positive",
            ));
        }
        if self.expiry_interval.is_zero() {
            return Err(Error::Config("expiry_interval must be positive"));
        }
        if self.bucket_seconds == 0 || self.lease_margin < 2 {
            return Err(Error::Config(
                "bucket_seconds is positive and lease_margin at least 2 seconds",
            ));
        }
        if self.freshness_interval.is_zero() || self.max_staleness <= self.freshness_interval {
            return Err(Error::Config(
                "max_staleness must be longer than a positive freshness_interval",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_endpoints_and_a_prefix() {
        let options =
            EtcdOptions::from_url("etcd://10.0.0.1:2379,10.0.0.2:2379/prod/cyberid/").unwrap();
        assert_eq!(
            options.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(options.prefix, "/prod/cyberid");
        let plain = EtcdOptions::from_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(plain.prefix, "/cyberid");
        assert!(EtcdOptions::from_url("http://127.0.0.1:2379").is_err());
        assert!(EtcdOptions::from_url("etcd:///cyberid").is_err());
        let split = EtcdOptions::from_url("etcd://a:1,b:2+c:3+d:4,e:5/p").unwrap();
        assert_eq!(split.endpoints, ["http://a:1", "http://b:2"]);
        assert_eq!(
            split.nonce_clusters,
            [
                vec!["http://c:3".to_owned()],
                vec!["http://d:4".into(), "http://e:5".into()]
            ]
        );
        assert!(EtcdOptions::from_url("etcd://a:1++c:3/p").is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(EtcdOptions::default().validate().is_ok());
        for options in [
            EtcdOptions {
                prefix: "cyberid".into(),
                ..EtcdOptions::default()
            },
            EtcdOptions {
                prefix: "/cyberid/".into(),
                ..EtcdOptions::default()
            },
            EtcdOptions {
                node_id: "node a".into(),
                ..EtcdOptions::default()
            },
            EtcdOptions {
                max_txn_ops: 1,
                ..EtcdOptions::default()
            },
            EtcdOptions {
                attempts: 0,
                ..EtcdOptions::default()
            },
            EtcdOptions {
                max_staleness: Duration::from_millis(100),
                ..EtcdOptions::default()
            },
        ] {
            assert_eq!(options.validate().unwrap_err().code(), "config");
        }
    }
}
