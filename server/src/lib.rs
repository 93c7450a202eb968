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

mod api;
mod app;
mod cli;
mod client;
mod config;
mod credentials;
mod datadir;
mod demo;
mod error;
mod metrics;
mod server;
mod store;

#[doc(hidden)]
pub use api::ROUTES;
pub use cli::run as run_cli;
#[doc(hidden)]
pub use client::Client;
pub use config::{LogFormat, ServeArgs, ServeConfig};
pub use credentials::Scope;
pub use datadir::DataDir;
pub use error::Error;
pub use server::Server;
