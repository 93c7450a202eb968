//! What a run is asked to do, checked before anything is sent, and resolved into the phases it
//! will run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cyberid_engine::PlatformId;
use serde::{Deserialize, Serialize};

use crate::schedule::Schedule;
use crate::{Error, Kind, Mix, StepPlan};

/// How long before its certificates expire a run must be over: preparation already used some
/// of their lifetime, and a request sent at the last moment still has to reach the node.
pub const LIFETIME_MARGIN: Duration = Duration::from_secs(5);

/// The longest request timeout, and so the highest latency the histograms hold exactly.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests a closed-loop run prepares and sends when no `--requests` is given.
pub const DEFAULT_CLOSED_REQUESTS: u64 = 100_000;

/// How long an open-loop run lasts when neither bound is given.
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(10);

/// How long a step run may last in all when no `--duration` is given.
pub const DEFAULT_STEP_DURATION: Duration = Duration::from_secs(60);

/// How a verification request carries its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `{"certificate":"WZ1:..."}` as `application/json`, as platforms mostly send it.
    Json,
    /// The 127 binary bytes as `application/octet-stream`: no JSON or base45 to decode.
    Binary,
}

/// Where the certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Signed by the harness with the node's issuing key, read from the node's data directory
    /// (`keys.toml` names it, `keys/<id>.key.pem` holds it). Every kind can be made this way.
    DataDir(PathBuf),
    /// Issued by the node's `POST /v1/certificates`, with a platform key that has the issue
    /// scope. The node signs with its own clock, so expired certificates cannot be made.
    IssueEndpoint {
        /// The platform key with the issue scope.
        api_key: String,
    },
    /// No certificates: every request carries the same body of a verification request's size
    /// (for `--expect-any` against a target that does not verify).
    Synthetic,
}

impl Source {
    /// The name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Source::DataDir(_) => "data-dir",
            Source::IssueEndpoint { .. } => "issue-endpoint",
            Source::Synthetic => "synthetic",
        }
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Mode {
    /// A fixed arrival rate, requests per second, spread over the connections; latency is
    /// measured from each request's due time (see [`Schedule`]).
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// Each connection sends its next request as soon as the last is answered: the most the
    /// node (or the generator) can do.
    Closed,
    /// Open-loop steps of rising rate, until a step misses the latency bound or the rate.
    Step(StepPlan),
}

impl Mode {
    /// The name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Open { .. } => "open",
            Mode::Closed => "closed",
            Mode::Step(_) => "step",
        }
    }
}

/// Everything a run needs. Start from [`Config::new`] (or [`Config::expect_any`]) and change
/// the fields; [`run`](crate::run) checks the whole before sending anything.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The node, `127.0.0.1:8080` by default.
    pub target: SocketAddr,
    /// Further nodes of the same deployment (sharing one etcd store): the connections are
    /// spread round-robin over `target` and these. Replays then cross nodes too.
    pub also_targets: Vec<SocketAddr>,
    /// Allow a target that is not a loopback address.
    pub allow_remote: bool,
    /// The platform API key the verifications are sent with (`Authorization: Bearer`).
    pub api_key: Option<String>,
    /// The calling platform's id. When given, genuine certificates are restricted to it, so
    /// that the node checks the audience of every one; otherwise they name no audience.
    pub platform: Option<PlatformId>,
    /// The audience of wrong-audience certificates: any platform id but the caller's.
    pub other_platform: PlatformId,
    /// Where certificates come from.
    pub source: Source,
    /// An authority API key, to revoke the holders of revoked certificates.
    pub authority_key: Option<String>,
    /// The traffic mix.
    pub mix: Mix,
    /// Check no verdicts: every HTTP answer counts as expected (for a target that does not
    /// verify). Requires [`Source::Synthetic`].
    pub expect_any: bool,
    /// How requests are paced.
    pub mode: Mode,
    /// Connections, each with one request in flight at a time.
    pub connections: usize,
    /// Stop after this many requests (not in step mode).
    pub requests: Option<u64>,
    /// Stop sending after this long (all steps together in step mode).
    pub duration: Option<Duration>,
    /// A request without an answer after this long counts as a `timeout` error.
    pub timeout: Duration,
    /// Certificate lifetime, seconds: at most the node's `max_lifetime_s`, or it answers
    /// `malformed`. No run may last longer than its certificates.
    pub lifetime: u16,
    /// Distinct certificates made for each kind other than valid, reused round-robin: they
    /// are not consumed, so need not be unique (valid certificates always are).
    pub pool: usize,
    /// How requests carry the certificate.
    pub body: BodyFormat,
    /// Overload answers (503 `overloaded`, 429) do not fail the run.
    pub allow_overload: bool,
    /// Show a progress bar on standard error (only if it is a terminal).
    pub progress: bool,
    /// Requests sent closed loop before the measured run, to take the node's cold start (lazy
    /// tables, first allocations, connection set-up) out of the figures. Their answers are
    /// checked like all others, and reported apart.
    pub warmup: u64,
}

impl Config {
    /// The node that connection `index` goes to: `target`, then each of `also_targets`, in
    /// turn.
    pub(crate) fn target_of(&self, index: usize) -> SocketAddr {
        match index % (1 + self.also_targets.len()) {
            0 => self.target,
            other => self.also_targets[other - 1],
        }
    }

    /// Every node, as the report names them.
    pub(crate) fn targets_label(&self) -> String {
        std::iter::once(&self.target)
            .chain(&self.also_targets)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A closed-loop run of valid certificates against `target`, with the platform `api_key`
    /// and certificates from `source`.
    pub fn new(target: SocketAddr, api_key: impl Into<String>, source: Source) -> Self {
        Self {
            target,
            also_targets: Vec::new(),
            allow_remote: false,
            api_key: Some(api_key.into()),
            platform: None,
            other_platform: default_other_platform(),
            source,
            authority_key: None,
            mix: Mix::default(),
            expect_any: false,
            mode: Mode::Closed,
            connections: 16,
            requests: None,
            duration: None,
            timeout: Duration::from_secs(10),
            lifetime: 300,
            pool: 1_000,
            body: BodyFormat::Json,
            allow_overload: false,
            progress: false,
            warmup: 0,
        }
    }

    /// A closed-loop run that sends a fixed body and checks no verdicts, for a target that
    /// does not verify (`cyberid-hyper-baseline`).
    pub fn expect_any(target: SocketAddr) -> Self {
        Self {
            api_key: None,
            expect_any: true,
            ..Self::new(target, "", Source::Synthetic)
        }
    }

    /// Checks the whole configuration and resolves its bounds. Every refusal names the setting.
    pub(crate) fn plan(&self) -> Result<Plan, Error> {
        if let Some(remote) = std::iter::once(&self.target)
            .chain(&self.also_targets)
            .find(|target| !self.allow_remote && !target.ip().is_loopback())
        {
            return Err(Error::RemoteTarget(*remote));
        }
        if self.connections == 0 || self.connections > 10_000 {
            return Err(Error::Config(format!(
                "--connections must be between 1 and 10000, not {}",
                self.connections
            )));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(Error::Config(format!(
                "--timeout-ms must be between 1 and {}",
                MAX_TIMEOUT.as_millis()
            )));
        }
        if self.pool == 0 {
            return Err(Error::Config("--pool must be at least 1".into()));
        }
        if Duration::from_secs(u64::from(self.lifetime)) <= LIFETIME_MARGIN * 2 {
            return Err(Error::Config(format!(
                "--lifetime {} s leaves no time to run: certificates must outlive the run by {} s",
                self.lifetime,
                LIFETIME_MARGIN.as_secs()
            )));
        }
        self.check_source()?;
        if self.requests == Some(0) {
            return Err(Error::Config("--requests must be at least 1".into()));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(Error::Config("--duration must be positive".into()));
        }
        let lifetime = Duration::from_secs(u64::from(self.lifetime));
        let usable = lifetime - LIFETIME_MARGIN;
        let too_long = |what: String| {
            Error::Lifetime(format!(
                "{what}, but the certificates live {} s and the run must end {} s before they \
                 expire; shorten the run, or raise --lifetime up to the node's max_lifetime_s",
                self.lifetime,
                LIFETIME_MARGIN.as_secs()
            ))
        };
        match self.mode {
            Mode::Open { rate } => {
                let schedule = Schedule::new(rate, self.connections)?;
                let duration = match (self.requests, self.duration) {
                    (_, Some(duration)) => duration,
                    (Some(requests), None) => Duration::from_secs_f64(requests as f64 / rate),
                    (None, None) => DEFAULT_OPEN_DURATION,
                };
                let requests = schedule
                    .requests_within(duration)
                    .min(self.requests.unwrap_or(u64::MAX))
                    .max(1);
                let grace = open_grace(duration);
                if duration + grace > usable {
                    return Err(too_long(format!(
                        "the open-loop run lasts up to {:.1} s",
                        (duration + grace).as_secs_f64()
                    )));
                }
                Ok(Plan::Single(Phase {
                    schedule: Some(schedule),
                    requests,
                    duration,
                    grace,
                    fit: false,
                }))
            }
            Mode::Closed => {
                let duration = match self.duration {
                    Some(duration) if duration > usable => {
                        return Err(too_long(format!(
                            "--duration is {:.1} s",
                            duration.as_secs_f64()
                        )));
                    }
                    Some(duration) => duration,
                    // Bounded by the request count, and never past the certificates.
                    None => usable,
                };
                Ok(Plan::Single(Phase {
                    schedule: None,
                    requests: self.requests.unwrap_or(DEFAULT_CLOSED_REQUESTS),
                    duration,
                    grace: Duration::ZERO,
                    fit: self.duration.is_none(),
                }))
            }
            Mode::Step(plan) => {
                plan.validate()?;
                if self.requests.is_some() {
                    return Err(Error::Config(
                        "step mode is bounded by --duration and --step-max-rate; --requests does \
                         not apply"
                            .into(),
                    ));
                }
                let total = self.duration.unwrap_or(DEFAULT_STEP_DURATION);
                let rates = plan.rates(total);
                if rates.is_empty() {
                    return Err(Error::Config(format!(
                        "no {:.1} s step fits in --duration {:.1} s",
                        plan.step.as_secs_f64(),
                        total.as_secs_f64()
                    )));
                }
                let grace = open_grace(plan.step);
                // Each step prepares its own certificates, so only one step must fit.
                if plan.step + grace > usable {
                    return Err(too_long(format!(
                        "each step lasts up to {:.1} s",
                        (plan.step + grace).as_secs_f64()
                    )));
                }
                let phases = rates
                    .into_iter()
                    .map(|rate| {
                        let schedule = Schedule::new(rate, self.connections)?;
                        Ok(Phase {
                            schedule: Some(schedule),
                            requests: schedule.requests_within(plan.step).max(1),
                            duration: plan.step,
                            grace,
                            fit: false,
                        })
                    })
                    .collect::<Result<_, Error>>()?;
                Ok(Plan::Steps(plan, phases))
            }
        }
    }

    fn check_source(&self) -> Result<(), Error> {
        if self.expect_any {
            if self.source != Source::Synthetic {
                return Err(Error::Config(
                    "--expect-any sends a fixed body and checks no verdict: it takes no \
                     --data-dir or --issue-key"
                        .into(),
                ));
            }
            return Ok(());
        }
        match &self.source {
            Source::Synthetic => {
                return Err(Error::Config(
                    "certificates are needed: give --data-dir DIR (the node's data directory) or \
                     --issue-key KEY (a platform key with the issue scope), or --expect-any for a \
                     target that does not verify"
                        .into(),
                ));
            }
            Source::IssueEndpoint { .. } if self.mix.weight(Kind::Expired) > 0.0 => {
                return Err(Error::NeedsDataDir {
                    kind: "expired",
                    why: "the issue endpoint signs with the node's current time, so only the \
                          node's own key, read from its data directory, can sign a certificate \
                          that has already expired",
                });
            }
            _ => {}
        }
        if self.api_key.as_deref().is_none_or(str::is_empty) {
            return Err(Error::Config(
                "--api-key is needed: a platform key with the verify scope".into(),
            ));
        }
        if self.mix.weight(Kind::Revoked) > 0.0 && self.authority_key.is_none() {
            return Err(Error::NeedsAuthorityKey);
        }
        if self.platform.as_ref() == Some(&self.other_platform) {
            return Err(Error::Config(format!(
                "--other-platform must differ from --platform ({}): wrong-audience \
                 certificates are restricted to another platform than the caller",
                self.other_platform
            )));
        }
        Ok(())
    }
}

/// The audience of wrong-audience certificates unless told otherwise: no platform of a real
/// deployment is likely to be called this.
pub fn default_other_platform() -> PlatformId {
    PlatformId::new("not-the-caller").expect("a valid platform id")
}

/// How long past its end an open-loop phase may still send requests that fell behind: a
/// request late by a timer tick is still sent and measured, one hopelessly behind is counted
/// as unsent.
fn open_grace(duration: Duration) -> Duration {
    (duration / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// A resolved run.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    Single(Phase),
    Steps(StepPlan, Vec<Phase>),
}

/// One stretch of load with its own certificates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    /// The open-loop schedule; `None` for closed loop.
    pub(crate) schedule: Option<Schedule>,
    /// Requests prepared, and the most sent.
    pub(crate) requests: u64,
    /// Sending stops after this long.
    pub(crate) duration: Duration,
    /// How long past `duration` open-loop requests that fell behind may still go out.
    pub(crate) grace: Duration,
    /// Bounded by its request count only: `duration` is a ceiling that may shrink to what the
    /// certificates allow once they are made, instead of refusing the run.
    pub(crate) fit: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "cyp_x_y",
            Source::DataDir("/nonexistent".into()),
        )
    }

    fn single(config: &Config) -> Phase {
        match config.plan().unwrap() {
            Plan::Single(phase) => phase,
            Plan::Steps(..) => panic!("steps"),
        }
    }

    #[test]
    fn remote_targets_need_a_flag() {
        let mut remote = config();
        remote.target = SocketAddr::from(([192, 0, 2, 1], 8080));
        assert_eq!(remote.plan().unwrap_err().code(), "remote_target");
        remote.allow_remote = true;
        remote.plan().unwrap();
        let mut v6 = config();
        v6.target = "[::1]:8080".parse().unwrap();
        v6.plan().unwrap();
        let mut also = config();
        also.also_targets = vec![SocketAddr::from(([192, 0, 2, 1], 8080))];
        assert_eq!(also.plan().unwrap_err().code(), "remote_target");
    }

    #[test]
    fn connections_take_the_targets_in_turn() {
        let mut two = config();
        let other = SocketAddr::from(([127, 0, 0, 1], 9090));
        two.also_targets = vec![other];
        let targets: Vec<SocketAddr> = (0..4).map(|index| two.target_of(index)).collect();
        assert_eq!(targets, [two.target, other, two.target, other]);
        assert_eq!(two.targets_label(), format!("{},{other}", two.target));
    }

    #[test]
    fn kinds_that_the_source_cannot_make_are_refused_clearly() {
        let mut issuing = config();
        issuing.source = Source::IssueEndpoint {
            api_key: "cyp_a_b".into(),
        };
        issuing.mix = "valid=1,expired=1".parse().unwrap();
        let error = issuing.plan().unwrap_err();
        assert_eq!(error.code(), "needs_data_dir");
        assert!(error.to_string().contains("expired"), "{error}");

        let mut revoking = config();
        revoking.mix = "valid=1,revoked=1".parse().unwrap();
        assert_eq!(revoking.plan().unwrap_err().code(), "needs_authority_key");
        revoking.authority_key = Some("cya_a_b".into());
        revoking.plan().unwrap();

        let mut nothing = config();
        nothing.source = Source::Synthetic;
        assert!(
            nothing
                .plan()
                .unwrap_err()
                .to_string()
                .contains("--data-dir")
        );
        let mut both = Config::expect_any(config().target);
        both.source = Source::DataDir("/x".into());
        assert_eq!(both.plan().unwrap_err().code(), "config");
        Config::expect_any(config().target).plan().unwrap();
    }

    #[test]
    fn the_bounds_resolve_with_defaults() {
        let closed = single(&config());
        assert_eq!(closed.requests, DEFAULT_CLOSED_REQUESTS);
        assert_eq!(closed.duration, Duration::from_secs(295));
        assert!(closed.schedule.is_none());
        assert!(closed.fit);

        let mut open = config();
        open.mode = Mode::Open { rate: 200.0 };
        let phase = single(&open);
        assert_eq!(phase.duration, DEFAULT_OPEN_DURATION);
        assert_eq!(phase.requests, 2_000);
        open.requests = Some(300);
        let phase = single(&open);
        assert_eq!(
            (phase.requests, phase.duration),
            (300, Duration::from_millis(1_500))
        );
        open.duration = Some(Duration::from_secs(1));
        assert_eq!(single(&open).requests, 200);
    }

    #[test]
    fn a_run_that_could_outlast_its_certificates_is_refused() {
        let mut long = config();
        long.duration = Some(Duration::from_secs(296));
        let error = long.plan().unwrap_err();
        assert_eq!(error.code(), "lifetime");
        assert!(error.to_string().contains("--lifetime"), "{error}");
        long.lifetime = 600;
        long.plan().unwrap();

        let mut open = config();
        open.mode = Mode::Open { rate: 10.0 };
        open.requests = Some(10_000);
        assert_eq!(open.plan().unwrap_err().code(), "lifetime");

        let mut steps = config();
        steps.mode = Mode::Step(StepPlan {
            step: Duration::from_secs(400),
            ..StepPlan::default()
        });
        steps.duration = Some(Duration::from_secs(800));
        assert_eq!(steps.plan().unwrap_err().code(), "lifetime");
    }

    #[test]
    fn step_mode_takes_its_bounds_from_the_duration() {
        let mut steps = config();
        steps.mode = Mode::Step(StepPlan {
            start: 100.0,
            increment: 100.0,
            step: Duration::from_secs(2),
            ..StepPlan::default()
        });
        steps.duration = Some(Duration::from_secs(6));
        match steps.plan().unwrap() {
            Plan::Steps(_, phases) => {
                let requests: Vec<u64> = phases.iter().map(|p| p.requests).collect();
                assert_eq!(requests, [200, 400, 600]);
            }
            Plan::Single(_) => panic!("single"),
        }
        steps.requests = Some(5);
        assert!(steps.plan().unwrap_err().to_string().contains("--requests"));
    }

    #[test]
    fn settings_out_of_range_are_named() {
        type Change = fn(&mut Config);
        let checks: [(Change, &str); 6] = [
            (|c| c.connections = 0, "--connections"),
            (|c| c.timeout = Duration::from_secs(61), "--timeout-ms"),
            (|c| c.pool = 0, "--pool"),
            (|c| c.lifetime = 10, "--lifetime"),
            (|c| c.requests = Some(0), "--requests"),
            (
                |c| c.platform = Some(default_other_platform()),
                "--other-platform",
            ),
        ];
        for (change, name) in checks {
            let mut config = config();
            change(&mut config);
            let error = config.plan().unwrap_err();
            assert!(error.to_string().contains(name), "{name}: {error}");
        }
    }
}
