//! A test node: a data directory with a key, platforms and an authority, served by
//! `cyberid::Server` on port 0 over a real RocksDB store in a temporary directory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use cyberid::{Client, DataDir, Scope, ServeConfig, Server};
use cyberid_engine::{
    Assurance, CertificateFields, CertificateId, Claims, Clock, IssueRequest, Issuer, IssuerPolicy,
    PlatformId, SystemClock, WebNumber,
};
use serde_json::{Value, json};

/// Platform allowed to verify and issue.
pub const SHOP: &str = "shop.example";
/// Platform allowed to verify only, with a rate limit of [`READER_RATE`] per second.
pub const READER: &str = "reader.example";
/// The reader's requests per second.
pub const READER_RATE: u32 = 3;
/// The authority.
pub const AUTHORITY: &str = "ops";
/// The enrollment agent.
pub const AGENT: &str = "app-backend";
/// How far before its creation the test store's history begins: certificates issued earlier
/// than this (and still unexpired) are answered `history_unavailable`.
pub const HISTORY_MARGIN: u64 = 100;

/// API keys and signing key of a prepared data directory.
#[derive(Debug)]
pub struct Prepared {
    /// `shop.example`'s API key (verify, issue).
    pub shop_key: String,
    /// `reader.example`'s API key (verify, rate limited).
    pub reader_key: String,
    /// The authority's API key.
    pub authority_key: String,
    /// The enrollment agent's API key.
    pub agent_key: String,
    /// Signs certificates as the node's issuing key does, with any fields.
    pub issuer: Arc<Issuer>,
    /// When the store was created.
    pub created: u64,
}

/// Creates a data directory at `root` with one issuing key, the two platforms, the authority,
/// and a store whose history begins [`HISTORY_MARGIN`] seconds before now.
pub fn prepare(root: &Path) -> Prepared {
    let now = SystemClock.now();
    let dir = DataDir::open_or_init(root).unwrap();
    let key_id = dir.generate_key(true, now).unwrap();
    let shop_key = dir
        .add_platform(
            &SHOP.parse().unwrap(),
            &[Scope::Verify, Scope::Issue],
            Some(0),
            now,
        )
        .unwrap();
    let reader_key = dir
        .add_platform(
            &READER.parse().unwrap(),
            &[Scope::Verify],
            Some(READER_RATE),
            now,
        )
        .unwrap();
    let authority_key = dir.add_authority(AUTHORITY, now).unwrap();
    let agent_key = dir.add_enrollment_agent(AGENT, now).unwrap();
    cyberid::create_store(&dir, now - HISTORY_MARGIN).unwrap();
    let issuing = dir.issuing_key().unwrap();
    assert_eq!(issuing.key_id(), key_id);
    let issuer = Arc::new(Issuer::new(issuing, IssuerPolicy::default()).unwrap());
    Prepared {
        shop_key,
        reader_key,
        authority_key,
        agent_key,
        issuer,
        created: now,
    }
}

/// Copies a data directory's keys and credentials (everything but the store).
fn copy_credentials(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_name() == "store" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_credentials(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A running test node.
#[derive(Debug)]
pub struct Node {
    /// Keeps the data directory alive.
    pub dir: tempfile::TempDir,
    /// The server; `None` once shut down.
    pub server: Option<Server>,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its credentials and key.
    pub prepared: Prepared,
}

impl Node {
    /// Prepares a data directory and starts a node on it, with `configure` applied to the
    /// settings.
    pub async fn start(configure: impl FnOnce(&mut ServeConfig)) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let prepared = prepare(dir.path());
        Self::serve(dir, prepared, configure).await
    }

    /// Starts another node of the same deployment: the same issuer key, platforms and
    /// authority (copied from this node's data directory; the embedded store is not), with
    /// `configure` applied to its settings.
    pub async fn start_sibling(&self, configure: impl FnOnce(&mut ServeConfig)) -> Node {
        let dir = self.sibling_dir();
        let prepared = Prepared {
            shop_key: self.prepared.shop_key.clone(),
            reader_key: self.prepared.reader_key.clone(),
            authority_key: self.prepared.authority_key.clone(),
            agent_key: self.prepared.agent_key.clone(),
            issuer: self.prepared.issuer.clone(),
            created: self.prepared.created,
        };
        Self::serve(dir, prepared, configure).await
    }

    /// A data directory for another node of the same deployment: this one's keys and
    /// credentials, without its embedded store.
    pub fn sibling_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        copy_credentials(self.dir.path(), dir.path());
        dir
    }

    /// Serves the data directory on a free loopback port, once the node is ready.
    async fn serve(
        dir: tempfile::TempDir,
        prepared: Prepared,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Node {
        let mut config = ServeConfig::default();
        config.data_dir = dir.path().to_path_buf();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        configure(&mut config);
        let server = Server::start(config).await.unwrap();
        server.ready().await.unwrap();
        Node {
            address: server.local_addr(),
            dir,
            server: Some(server),
            prepared,
        }
    }

    /// A new keep-alive connection.
    pub async fn client(&self) -> Client {
        Client::connect(self.address).await.unwrap()
    }

    /// A certificate for `holder` with the node's key, issued now for `audience`.
    pub fn certificate(&self, holder: WebNumber, audience: Option<&str>) -> String {
        let mut request = IssueRequest::new(holder);
        request.audience = audience.map(|a| a.parse::<PlatformId>().unwrap());
        request.claims = Claims {
            age: Some(cyberid_engine::AgeBracket::Adult),
            ..Claims::default()
        };
        self.prepared
            .issuer
            .issue(&request, SystemClock.now())
            .unwrap()
            .to_text()
    }

    /// A certificate with the node's key and these issue time and lifetime.
    pub fn certificate_at(&self, holder: WebNumber, issued_at: u64, lifetime: u16) -> String {
        let fields = CertificateFields {
            key_id: self.prepared.issuer.key().key_id(),
            web_number: holder,
            certificate_id: CertificateId::generate().unwrap(),
            issued_at,
            lifetime,
            assurance: Assurance::High,
            claims: Claims::default(),
            audience: None,
        };
        self.prepared.issuer.sign(fields).unwrap().to_text()
    }

    /// Suspends `holder` through this node's admin API as the authority; panics unless the
    /// node acknowledges it.
    pub async fn suspend(&self, holder: WebNumber) {
        let (status, body) = self
            .client()
            .await
            .call(
                hyper::Method::POST,
                &format!("/v1/admin/web-numbers/{holder}/suspend"),
                Some(&self.prepared.authority_key),
                Some(json!({ "reason": "lost device" })),
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 200, "{body}");
    }

    /// Shuts the node down gracefully.
    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

/// Verifies `certificate` as the platform with `api_key`; the status and body.
pub async fn verify(client: &mut Client, api_key: &str, certificate: &str) -> (u16, Value) {
    let (status, body) = client
        .call(
            hyper::Method::POST,
            "/v1/verify",
            Some(api_key),
            Some(json!({ "certificate": certificate })),
        )
        .await
        .unwrap();
    (status.as_u16(), body)
}

/// The verdict as one word: "valid" or the reason code; anything else panics with the answer.
pub async fn verdict(client: &mut Client, api_key: &str, certificate: &str) -> String {
    let (status, body) = verify(client, api_key, certificate).await;
    assert_eq!(status, 200, "{body}");
    match body["verdict"].as_str() {
        Some("valid") => "valid".to_owned(),
        Some("invalid") => body["reason"].as_str().unwrap().to_owned(),
        _ => panic!("not a verdict: {body}"),
    }
}
