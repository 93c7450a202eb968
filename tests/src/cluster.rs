//! Nodes on an etcd cluster under load: the store URL of a test cluster, a load generator that
//! records every answer, and a proxy that cuts a node off from its cluster.
//!
//! The load sends each certificate once, and every fourth one to every node at once (a
//! double spend across nodes). It records what each request got, so that a test can check
//! the one invariant that matters under any fault: no certificate is ever `valid` twice, and
//! every one that was is `replayed` afterwards, on every node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cyberid::Client;
use cyberid_engine::{Clock, IssueRequest, Issuer, PlatformId, SystemClock, WebNumber};
use cyberid_store_etcd::testing::{Cluster, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::node::{Node, SHOP};

/// `etcd://` URL of `endpoints` (`http://host:port`), under a prefix of this test's own.
pub fn store_url(endpoints: &[String], name: &str) -> String {
    let hosts: Vec<&str> = endpoints
        .iter()
        .map(|endpoint| endpoint.trim_start_matches("http://"))
        .collect();
    format!("etcd://{}/test/{}", hosts.join(","), unique_name(name))
}

/// Starts a 3-member cluster off the async workers.
pub async fn start_cluster() -> Cluster {
    tokio::task::spawn_blocking(|| Cluster::start_for_test().unwrap())
        .await
        .unwrap()
}

/// Two nodes of one deployment on the store at `url`, whose history began before the
/// certificates they will see were issued.
pub async fn two_nodes(url: &str) -> (Node, Node) {
    let begins = SystemClock.now() - 100;
    let configure = |config: &mut cyberid::ServeConfig| {
        config.store = url.to_owned();
        config.auth_log = false;
        config.etcd_history_begins = begins;
    };
    let a = Node::start(configure).await;
    let b = a.start_sibling(configure).await;
    (a, b)
}

/// Each node's current address; a node restarted on another port is updated in place.
#[derive(Debug)]
pub struct Targets(Vec<Mutex<SocketAddr>>);

impl Targets {
    /// The nodes at these addresses.
    pub fn new(addresses: &[SocketAddr]) -> Arc<Self> {
        Arc::new(Self(addresses.iter().copied().map(Mutex::new).collect()))
    }

    /// Node `node`'s address.
    pub fn get(&self, node: usize) -> SocketAddr {
        *self.0[node].lock().unwrap()
    }

    /// Node `node` now listens at `address`.
    pub fn set(&self, node: usize, address: SocketAddr) {
        *self.0[node].lock().unwrap() = address;
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What one request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 `valid`.
    Valid,
    /// 200 `invalid`, `replayed`.
    Replayed,
    /// 200 `invalid` for another reason (the code is in the panic message of [`send`] if
    /// unexpected; the load only ever sees `revoked` for a revoked holder).
    Revoked,
    /// 503 with Retry-After: the node could not get a definite answer.
    Unavailable,
    /// No answer at all: the connection failed (the node was killed).
    Lost,
}

/// Sends `certificate` to the node at `address` over `client` (connecting first if there is
/// none); what it got. Anything but the outcomes above (a 500, a 503 without Retry-After, a
/// 4xx) panics with the answer: it is a bug.
pub async fn send(
    client: &mut Option<Client>,
    address: SocketAddr,
    api_key: &str,
    certificate: &str,
) -> Outcome {
    if client.is_none() {
        match Client::connect(address).await {
            Ok(connected) => *client = Some(connected),
            Err(_) => return Outcome::Lost,
        }
    }
    let connection = client.as_mut().expect("connected above");
    let answer = connection
        .call(
            hyper::Method::POST,
            "/v1/verify",
            Some(api_key),
            Some(serde_json::json!({ "certificate": certificate })),
        )
        .await;
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(_) => {
            *client = None;
            return Outcome::Lost;
        }
    };
    match (
        status.as_u16(),
        body["verdict"].as_str(),
        body["reason"].as_str(),
    ) {
        (200, Some("valid"), _) => Outcome::Valid,
        (200, Some("invalid"), Some("replayed")) => Outcome::Replayed,
        (200, Some("invalid"), Some("revoked")) => Outcome::Revoked,
        (503, _, _) => {
            assert!(
                connection
                    .last_headers()
                    .contains_key(hyper::header::RETRY_AFTER),
                "503 without Retry-After: {body}"
            );
            Outcome::Unavailable
        }
        _ => panic!("unexpected answer {status}: {body}"),
    }
}

/// One request of the load and what it got.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Index of the certificate in [`Answers::certificates`].
    pub certificate: usize,
    /// Which node it was sent to.
    pub node: usize,
    /// When it was sent.
    pub sent: Instant,
    /// When the answer came.
    pub answered: Instant,
    /// What it got.
    pub outcome: Outcome,
}

/// Verifications sent to every node of `targets` from `workers` connections each, until
/// stopped.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    certificates: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<Vec<Answer>>>,
}

impl Load {
    /// Starts `workers` tasks, worker `w` sending to node `w % nodes` over its own
    /// connection, certificates from `issuer` for fresh Web Numbers. Every fourth certificate
    /// also goes to each other node at the same moment, each on a connection of its own, so
    /// that a node that hangs or dies never slows the others' load.
    pub fn start(
        targets: Arc<Targets>,
        api_key: &str,
        issuer: Arc<Issuer>,
        workers: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let certificates = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|worker| {
                let (stop, certificates) = (stop.clone(), certificates.clone());
                let (targets, issuer, api_key) =
                    (targets.clone(), issuer.clone(), api_key.to_owned());
                tokio::spawn(async move {
                    let node = worker % targets.len();
                    let mut client = None;
                    let mut answers = Vec::new();
                    let mut doubles = Vec::new();
                    for round in 0usize.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let mut request = IssueRequest::new(WebNumber::generate().unwrap());
                        request.audience = Some(SHOP.parse::<PlatformId>().unwrap());
                        let text = issuer.issue(&request, SystemClock.now()).unwrap().to_text();
                        let index = {
                            let mut all = certificates.lock().unwrap();
                            all.push(text.clone());
                            all.len() - 1
                        };
                        let sent = Instant::now();
                        if round % 4 == 3 {
                            for other in (0..targets.len()).filter(|&other| other != node) {
                                let (address, text, api_key) =
                                    (targets.get(other), text.clone(), api_key.clone());
                                doubles.push(tokio::spawn(async move {
                                    let outcome = send(&mut None, address, &api_key, &text).await;
                                    Answer {
                                        certificate: index,
                                        node: other,
                                        sent,
                                        answered: Instant::now(),
                                        outcome,
                                    }
                                }));
                            }
                        }
                        let outcome = send(&mut client, targets.get(node), &api_key, &text).await;
                        answers.push(Answer {
                            certificate: index,
                            node,
                            sent,
                            answered: Instant::now(),
                            outcome,
                        });
                        if outcome == Outcome::Lost {
                            // A killed node: do not spin on its closed port.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    for double in doubles {
                        answers.push(double.await.expect("a double spend panicked"));
                    }
                    answers
                })
            })
            .collect();
        Self {
            stop,
            certificates,
            workers,
        }
    }

    /// Stops the load; every answer it got.
    pub async fn stop(self) -> Answers {
        self.stop.store(true, Ordering::SeqCst);
        let mut answers = Vec::new();
        for worker in self.workers {
            answers.extend(worker.await.expect("a load worker panicked"));
        }
        answers.sort_by_key(|answer| answer.answered);
        let certificates = std::mem::take(&mut *self.certificates.lock().unwrap());
        Answers {
            answers,
            certificates,
        }
    }
}

/// Everything the load sent and got.
#[derive(Debug)]
pub struct Answers {
    /// In the order they came.
    pub answers: Vec<Answer>,
    /// The certificates sent, by index.
    pub certificates: Vec<String>,
}

impl Answers {
    /// Indices of the certificates answered `valid`; panics if any was answered `valid` twice.
    pub fn valid_once(&self) -> Vec<usize> {
        let mut valid: HashMap<usize, usize> = HashMap::new();
        for answer in &self.answers {
            if answer.outcome == Outcome::Valid
                && let Some(earlier) = valid.insert(answer.certificate, answer.node)
            {
                panic!(
                    "certificate {} answered valid twice (nodes {earlier} and {})",
                    answer.certificate, answer.node
                );
            }
        }
        let mut indices: Vec<usize> = valid.into_keys().collect();
        indices.sort_unstable();
        indices
    }

    /// How many answers had `outcome` (on `node`, if given).
    pub fn count(&self, outcome: Outcome, node: Option<usize>) -> usize {
        self.answers
            .iter()
            .filter(|a| a.outcome == outcome && node.is_none_or(|node| a.node == node))
            .count()
    }

    /// The longest time without a `valid` answer from any node, between the first and the
    /// last `valid`: how long the fault stopped the deployment.
    pub fn longest_stall(&self) -> Duration {
        let valid: Vec<Instant> = self
            .answers
            .iter()
            .filter(|a| a.outcome == Outcome::Valid)
            .map(|a| a.answered)
            .collect();
        valid
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default()
    }

    /// Answers `valid` from requests sent after `instant`.
    pub fn valid_sent_after(&self, instant: Instant, node: Option<usize>) -> usize {
        self.answers
            .iter()
            .filter(|a| {
                a.outcome == Outcome::Valid && a.sent > instant && node.is_none_or(|n| a.node == n)
            })
            .count()
    }

    /// A one-line summary for the test log.
    pub fn summary(&self) -> String {
        format!(
            "{} certificates, {} answers: {} valid, {} replayed, {} unavailable (503), {} lost; \
             longest stall {:?}",
            self.certificates.len(),
            self.answers.len(),
            self.count(Outcome::Valid, None),
            self.count(Outcome::Replayed, None),
            self.count(Outcome::Unavailable, None),
            self.count(Outcome::Lost, None),
            self.longest_stall()
        )
    }
}

/// Sends every certificate of `certificates` to node `address` (on four connections, each
/// request again while the node answers 503 or nothing) and asserts each is `replayed`.
pub async fn assert_spent(address: SocketAddr, api_key: &str, certificates: Vec<String>) {
    let certificates = Arc::new(certificates);
    let mut checkers = Vec::new();
    for part in 0..4 {
        let (certificates, api_key) = (certificates.clone(), api_key.to_owned());
        checkers.push(tokio::spawn(async move {
            let mut client = None;
            for text in certificates.iter().skip(part).step_by(4) {
                let mut outcome = Outcome::Lost;
                for _ in 0..200 {
                    outcome = send(&mut client, address, &api_key, text).await;
                    if !matches!(outcome, Outcome::Unavailable | Outcome::Lost) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert_eq!(
                    outcome,
                    Outcome::Replayed,
                    "{address} on an acknowledged certificate"
                );
            }
        }));
    }
    for checker in checkers {
        checker.await.unwrap();
    }
}

/// A TCP proxy in front of one etcd member that can be cut: while cut, it passes no byte in
/// either direction but keeps every connection open, as a network partition looks to the
/// node (no reset, only silence), and it accepts new connections without forwarding them.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free loopback port to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let accept = {
            let cut = cut.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let cut = cut.clone();
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::spawn(pump(in_read, out_write, cut.clone()));
                        tokio::spawn(pump(out_read, in_write, cut));
                    });
                }
            })
        };
        Self {
            address,
            cut,
            accept,
        }
    }

    /// `http://` URL of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops passing bytes.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Passes bytes again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies bytes from `from` to `to`, holding them while `cut` is set.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        // Bytes read just before a cut are held too, as a dropped packet would be.
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
