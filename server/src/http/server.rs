//! The listener: accepts connections under a cap, serves HTTP/1.1 with keep-alive and a header
//! timeout, and shuts down gracefully (stop accepting, drain in-flight requests, close the
//! pipeline and the store).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::auth::Session;
use crate::node::App;
use crate::{Error, ServeConfig};
use cyberid_datadir::DataDir;

/// How often the server looks for changes to `keys.toml` and `credentials.toml`.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// A running `cyberid` node.
///
/// ```no_run
/// # async fn run() -> Result<(), cyberid::Error> {
/// let config = cyberid::ServeConfig::default();
/// let server = cyberid::Server::start(config).await?;
/// server.ready().await?; // the store is open
/// println!("serving on {}", server.local_addr());
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    app: Arc<App>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
    ready: watch::Receiver<Option<Result<(), cyberid_engine::Error>>>,
}

impl Server {
    /// Opens (or creates) the data directory, binds the listener and starts serving. The store
    /// opens in the background: until it is open, `/readyz` answers 503 and so do verifications.
    pub async fn start(config: ServeConfig) -> Result<Self, Error> {
        config.validate()?;
        let dir = DataDir::open_or_init(&config.data_dir)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(Error::io(format!("listen on {}", config.listen)))?;
        let local_addr = listener
            .local_addr()
            .map_err(Error::io("read the listening address"))?;
        let app = Arc::new(App::new(config, dir)?);

        let (ready_sender, ready) = watch::channel(None);
        let opening = app.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let result = opening.open_store();
            match &result {
                Ok(()) => tracing::info!(
                    millis = started.elapsed().as_millis() as u64,
                    "store open, ready"
                ),
                Err(error) => tracing::error!(code = error.code(), "store failed to open: {error}"),
            }
            let _ = ready_sender.send(Some(result));
        });

        let (stop, stopped) = watch::channel(false);
        tokio::spawn(reload_loop(app.clone(), stopped.clone()));
        let accept_loop = tokio::spawn(accept_loop(listener, app.clone(), stopped));
        tracing::info!(%local_addr, data_dir = %app.dir.root().display(), "listening");
        Ok(Self {
            app,
            local_addr,
            stop,
            accept_loop,
            ready,
        })
    }

    /// The address the server listens on (with the actual port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the store is open; fails if it could not be opened.
    pub async fn ready(&self) -> Result<(), Error> {
        let mut ready = self.ready.clone();
        let outcome = ready
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Config("the store-opening task ended early".into()))?;
        match outcome.as_ref() {
            Some(Err(error)) => Err(Error::Engine(error.clone())),
            _ => Ok(()),
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to the configured grace period),
    /// then stops the pipeline and closes the store. Every verification answered `valid` has
    /// its nonce synced to disk before the answer left, so nothing acknowledged is lost.
    pub async fn shutdown(self) -> Result<(), Error> {
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        self.app.begin_shutdown();
        let _ = self.stop.send(true);
        let _ = self.accept_loop.await;
        let engine = self.app.take_engine();
        if let Some(engine) = engine {
            // Closing joins the pipeline and store threads: off the async workers.
            tokio::task::spawn_blocking(move || drop(engine))
                .await
                .map_err(|_| Error::Config("closing the store panicked".into()))?;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn accept_loop(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let connections = Arc::new(Semaphore::new(app.config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(app.config.header_timeout_ms))
        .keep_alive(true);
    loop {
        // Past the cap, connections wait in the kernel's backlog rather than being accepted.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service_app = app.clone();
        // One per connection: its requests' credential is checked once (auth::Session).
        let session = Arc::new(Session::default());
        let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let app = service_app.clone();
            request.extensions_mut().insert(session.clone());
            async move { Ok::<_, Infallible>(super::handle(app, request).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let app = app.clone();
        app.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = connection.await;
            app.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(app.config.shutdown_grace_ms);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            open = app.connections.load(Ordering::Relaxed),
            "grace period over; closing the remaining connections"
        ),
    }
}

/// Applies changes to `keys.toml` and `credentials.toml` (made by `cyberid key ...` and
/// `cyberid platform ...` while the server runs) within [`RELOAD_INTERVAL`].
async fn reload_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let modified = |path: std::path::PathBuf| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let mut keys_seen = modified(app.dir.keys_manifest_path());
    let mut credentials_seen = modified(app.dir.credentials_path());
    loop {
        tokio::select! {
            () = tokio::time::sleep(RELOAD_INTERVAL) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let keys_now = modified(app.dir.keys_manifest_path());
        if keys_now != keys_seen {
            keys_seen = keys_now;
            match app.reload_keys() {
                Ok(()) => tracing::info!("issuer keys reloaded"),
                Err(error) => {
                    tracing::warn!("keys.toml not applied, keeping the keys in force: {error}")
                }
            }
        }
        let credentials_now = modified(app.dir.credentials_path());
        if credentials_now != credentials_seen {
            credentials_seen = credentials_now;
            match app.reload_credentials() {
                Ok(()) => tracing::info!("credentials reloaded"),
                Err(error) => tracing::warn!(
                    "credentials.toml not applied, keeping the credentials in force: {error}"
                ),
            }
        }
    }
}
