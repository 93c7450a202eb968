//! cyberid-loadtest: the load harness of a cyberid node.
//!
//! It prepares its certificates before the run (signed with the node's issuing key read from
//! its data directory, or issued by the node's `POST /v1/certificates`), in a [`Mix`] of six
//! [`Kind`]s each with the verdict the protocol requires; sends them to `POST /v1/verify`
//! open loop at a fixed rate with latency measured from each request's due time (see
//! [`Schedule`]), closed loop as fast as answers come, or in rising steps until the node stops
//! keeping up ([`StepPlan`]); checks every answer; and reports HDR latency percentiles and
//! throughput, overall and per second, as text, JSON and SVG ([`Report`]).
//!
//! ```no_run
//! # async fn load() -> Result<(), cyberid_loadtest::Error> {
//! use cyberid_loadtest::{Config, Mode, Outcome, Source};
//!
//! let mut config = Config::new(
//!     "127.0.0.1:8080".parse().unwrap(),
//!     "cyp_...",                                      // a platform key with the verify scope
//!     Source::DataDir("/var/lib/cyberid".into()),     // sign with the node's issuing key
//! );
//! config.mix = "valid=90,replayed=4,forged=2,expired=2,wrong-audience=1,revoked=1".parse()?;
//! config.authority_key = Some("cya_...".into());      // to revoke the revoked kind's holders
//! config.mode = Mode::Open { rate: 2_000.0 };
//! config.duration = Some(std::time::Duration::from_secs(10));
//!
//! let report = cyberid_loadtest::run(&config).await?;
//! println!("{report}");
//! std::fs::write("load.svg", report.to_svg()?).ok();
//! assert_eq!(report.outcome, Outcome::Pass, "{:?}", report.failures);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cli;
mod config;
mod error;
mod http;
mod mix;
mod prepare;
mod record;
mod report;
mod run;
mod schedule;
mod step;
mod svg;
mod verdict;

pub use cli::run_cli;
pub use config::{
    BodyFormat, Config, DEFAULT_CLOSED_REQUESTS, DEFAULT_OPEN_DURATION, DEFAULT_STEP_DURATION,
    LIFETIME_MARGIN, MAX_TIMEOUT, Mode, Source, default_other_platform,
};
pub use error::Error;
pub use mix::{Kind, Mix};
pub use report::{
    KindReport, Knee, Outcome, Percentiles, PreparationReport, Report, SecondReport, Totals,
    WarmupReport,
};
pub use run::{run, run_blocking};
pub use schedule::Schedule;
pub use step::{StepPlan, StepReport, knee};
pub use verdict::{Class, Expect, Observed, TransportError, classify};
