//! cyberid's verification server: a thin HTTP front (hyper) over the engine's pipeline and
//! durable store, with platform credentials, administration and limits.
//!
//! Run it with `cyberid serve`; [`Server`] is the same node as a library, for tests and
//! embedding. The HTTP API is specified in `docs/openapi.yaml`.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), cyberid::Error> {
//! let mut config = cyberid::ServeConfig::default();
//! config.data_dir = "/var/lib/cyberid".into();
//! let server = cyberid::Server::start(config).await?;
//! server.ready().await?;
//! tokio::signal::ctrl_c().await.ok();
//! server.shutdown().await
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// One job per module; each depends only on those listed after it:
// cli (the command line and the demo) -> http (routes, the listener, a test client) -> node
// (the running node's state: engine, store, metrics) -> auth (who is calling) -> config, error.
// The files on disk (layout, keys, credentials editing) are the `cyberid-datadir` crate's.
mod auth;
mod cli;
mod config;
mod error;
mod http;
mod node;

pub use cli::run as run_cli;
pub use config::{LogFormat, ServeArgs, ServeConfig};
pub use cyberid_datadir::{DataDir, Scope};
pub use error::Error;
#[doc(hidden)]
pub use http::ROUTES;
#[doc(hidden)]
pub use http::client::Client;
pub use http::server::Server;
pub use node::store::create_store;
