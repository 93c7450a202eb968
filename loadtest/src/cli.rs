//! The `cyberid-loadtest` command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cyberid_engine::PlatformId;

use crate::config::default_other_platform;
use crate::{BodyFormat, Config, Error, Kind, Mix, Mode, Report, Source, StepPlan, run_blocking};

/// Exit code of a run that could not start: a refused setting, an unreachable node, a failed
/// preparation, a report that could not be written (clap's usage errors use it too).
const EXIT_NOT_RUN: u8 = 2;

/// Load harness for cyberid: prepares certificates of a mix of kinds, sends them to a node's
/// POST /v1/verify at a fixed rate (open), as fast as answers come (closed) or in rising steps
/// (step), checks every verdict, and reports latency percentiles and throughput as text, JSON
/// and SVG.
///
/// Exit codes: 0 every answer as required; 1 a wrong verdict, an unexpected HTTP answer or a
/// request without answer; 2 the run could not start; 3 overload answers (503 overloaded,
/// 429) without --allow-overload.
#[derive(Debug, Parser)]
#[command(name = "cyberid-loadtest", version, about, long_about)]
struct Cli {
    /// The node: host:port, loopback unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_target, help_heading = "Target")]
    target: SocketAddr,
    /// Another node of the same deployment (nodes sharing one etcd store), host:port; may be
    /// repeated. Connections are spread round-robin over --target and these, so replays cross
    /// nodes too.
    #[arg(long = "also-target", value_parser = parse_target, help_heading = "Target")]
    also_targets: Vec<SocketAddr>,
    /// Allow a target that is not a loopback address (only a node of your own).
    #[arg(long, help_heading = "Target")]
    allow_remote: bool,
    /// Platform API key with the verify scope, sent as Authorization: Bearer.
    #[arg(
        long,
        env = "CYBERID_API_KEY",
        hide_env_values = true,
        help_heading = "Target"
    )]
    api_key: Option<String>,
    /// The calling platform's id: genuine certificates are then restricted to it, so the node
    /// checks every audience. Without it they name no audience.
    #[arg(long, help_heading = "Target")]
    platform: Option<PlatformId>,
    /// Audience of wrong-audience certificates: any platform id but the caller's.
    #[arg(long, default_value_t = default_other_platform(), help_heading = "Target")]
    other_platform: PlatformId,
    /// Check no verdicts and send a fixed body: every HTTP answer counts (for
    /// cyberid-hyper-baseline, to measure the HTTP ceiling).
    #[arg(long, conflicts_with_all = ["data_dir", "issue_key", "mix"], help_heading = "Target")]
    expect_any: bool,
    /// How requests carry the certificate.
    #[arg(long, value_enum, default_value = "json", help_heading = "Target")]
    body: BodyFormat,

    /// The node's data directory: certificates are signed here with its issuing key
    /// (keys.toml, keys/<id>.key.pem). Needed for expired certificates.
    #[arg(long, conflicts_with = "issue_key", help_heading = "Certificates")]
    data_dir: Option<PathBuf>,
    /// Have the node issue certificates through POST /v1/certificates with this platform key
    /// (issue scope).
    #[arg(
        long,
        env = "CYBERID_ISSUE_KEY",
        hide_env_values = true,
        help_heading = "Certificates"
    )]
    issue_key: Option<String>,
    /// Authority API key, to revoke the holders of revoked certificates.
    #[arg(
        long,
        env = "CYBERID_AUTHORITY_KEY",
        hide_env_values = true,
        help_heading = "Certificates"
    )]
    authority_key: Option<String>,
    /// Certificate lifetime, seconds: at most the node's max_lifetime_s. No run (or step) may
    /// last longer than its certificates.
    #[arg(long, default_value_t = 300, help_heading = "Certificates")]
    lifetime: u16,
    /// Distinct certificates per kind other than valid, reused round-robin (valid ones are
    /// each sent once).
    #[arg(long, default_value_t = 1_000, help_heading = "Certificates")]
    pool: usize,

    /// The mix as kind=ratio pairs: valid, replayed, forged, expired, wrong-audience, revoked
    /// (e.g. valid=90,replayed=4,forged=2,expired=2,wrong-audience=1,revoked=1). Without this
    /// or a ratio flag, every certificate is a valid one.
    #[arg(long, help_heading = "Mix")]
    mix: Option<Mix>,
    /// Ratio of fresh genuine certificates (expect valid).
    #[arg(
        long,
        value_name = "RATIO",
        conflicts_with = "mix",
        help_heading = "Mix"
    )]
    valid: Option<f64>,
    /// Ratio of certificates consumed during preparation (expect replayed).
    #[arg(
        long,
        value_name = "RATIO",
        conflicts_with = "mix",
        help_heading = "Mix"
    )]
    replayed: Option<f64>,
    /// Ratio of certificates with a flipped signature bit (expect bad_signature).
    #[arg(
        long,
        value_name = "RATIO",
        conflicts_with = "mix",
        help_heading = "Mix"
    )]
    forged: Option<f64>,
    /// Ratio of certificates issued an hour ago (expect expired; needs --data-dir).
    #[arg(
        long,
        value_name = "RATIO",
        conflicts_with = "mix",
        help_heading = "Mix"
    )]
    expired: Option<f64>,
    /// Ratio of certificates for another platform (expect wrong_audience).
    #[arg(
        long,
        value_name = "RATIO",
        conflicts_with = "mix",
        help_heading = "Mix"
    )]
    wrong_audience: Option<f64>,
    /// Ratio of certificates whose holder is revoked (expect revoked; needs --authority-key).
    #[arg(
        long,
        value_name = "RATIO",
        conflicts_with = "mix",
        help_heading = "Mix"
    )]
    revoked: Option<f64>,

    /// open: fixed rate (--rate), latency from each request's due time; closed: back to back;
    /// step: rising open-loop steps until p99 or throughput misses. Open when --rate is given,
    /// closed otherwise.
    #[arg(long, value_enum, help_heading = "Load")]
    mode: Option<ModeName>,
    /// Requests per second, open loop.
    #[arg(long, help_heading = "Load")]
    rate: Option<f64>,
    /// Connections, one request in flight on each.
    #[arg(long, default_value_t = 16, help_heading = "Load")]
    connections: usize,
    /// Worker threads of the generator's runtime. Keep it small: the generator shares the
    /// machine with the node.
    #[arg(long, default_value_t = 1, help_heading = "Load")]
    threads: usize,
    /// Stop after this many requests. Closed loop: 100000 unless given.
    #[arg(long, help_heading = "Load")]
    requests: Option<u64>,
    /// Stop sending after this many seconds (all steps in step mode: 60 unless given). Open
    /// loop: 10 unless this or --requests is given.
    #[arg(long, value_name = "SECONDS", help_heading = "Load")]
    duration: Option<f64>,
    /// Requests sent closed loop before the measured run, to take the node's cold start out
    /// of the figures (recommended for step mode). Their answers are still checked.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "REQUESTS",
        help_heading = "Load"
    )]
    warmup: u64,
    /// A request unanswered after this long counts as a timeout.
    #[arg(long, default_value_t = 10_000, help_heading = "Load")]
    timeout_ms: u64,

    /// Step mode: the first step's rate.
    #[arg(long, default_value_t = 1_000.0, help_heading = "Step mode")]
    step_start: f64,
    /// Step mode: what each step adds.
    #[arg(long, default_value_t = 1_000.0, help_heading = "Step mode")]
    step_increment: f64,
    /// Step mode: seconds per step.
    #[arg(long, default_value_t = 5.0, help_heading = "Step mode")]
    step_duration: f64,
    /// Step mode: no step above this rate.
    #[arg(long, help_heading = "Step mode")]
    step_max_rate: Option<f64>,
    /// Step mode: a step passes only with p99 at most this, milliseconds.
    #[arg(long, default_value_t = 10.0, help_heading = "Step mode")]
    p99_bound_ms: f64,
    /// Step mode: and only if it achieved this fraction of its rate.
    #[arg(long, default_value_t = 0.95, help_heading = "Step mode")]
    min_achieved: f64,

    /// Write the report as JSON here.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    json: Option<PathBuf>,
    /// Write the chart (latency percentiles and throughput per second) as SVG here.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    svg: Option<PathBuf>,
    /// Prepare the requests the other flags describe (--requests of them, in send order),
    /// write their bodies here one per line, and exit without sending anything: the input
    /// of loadtest/wrk-distinct.lua, which sends each once.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    write_bodies: Option<PathBuf>,
    /// No progress bar (there is none anyway when standard error is not a terminal).
    #[arg(long, help_heading = "Output")]
    quiet: bool,
    /// Overload answers (503 overloaded, 429) do not fail the run. Step mode never fails on
    /// those of the step past the knee.
    #[arg(long, help_heading = "Output")]
    allow_overload: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeName {
    Open,
    Closed,
    Step,
}

fn parse_target(text: &str) -> Result<SocketAddr, String> {
    let text = text.strip_prefix("http://").unwrap_or(text);
    let text = text.trim_end_matches('/');
    text.to_socket_addrs()
        .map_err(|error| format!("{text}: {error}"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

fn seconds(name: &str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::Config(format!("{name} must be a positive number of seconds")))
}

impl Cli {
    fn mix(&self) -> Result<Mix, Error> {
        if let Some(mix) = self.mix {
            return Ok(mix);
        }
        let ratios = [
            (Kind::Valid, self.valid),
            (Kind::Replayed, self.replayed),
            (Kind::Forged, self.forged),
            (Kind::Expired, self.expired),
            (Kind::WrongAudience, self.wrong_audience),
            (Kind::Revoked, self.revoked),
        ];
        if ratios.iter().all(|(_, ratio)| ratio.is_none()) {
            return Ok(Mix::default());
        }
        Mix::new(
            ratios
                .into_iter()
                .filter_map(|(kind, ratio)| ratio.map(|r| (kind, r))),
        )
    }

    fn mode(&self) -> Result<Mode, Error> {
        let name = self.mode.unwrap_or(if self.rate.is_some() {
            ModeName::Open
        } else {
            ModeName::Closed
        });
        if self.rate.is_some() && name != ModeName::Open {
            return Err(Error::Config(
                "--rate applies to --mode open; step mode takes --step-start and \
                 --step-increment"
                    .into(),
            ));
        }
        Ok(match name {
            ModeName::Open => Mode::Open {
                rate: self
                    .rate
                    .ok_or_else(|| Error::Config("--mode open needs --rate".into()))?,
            },
            ModeName::Closed => Mode::Closed,
            ModeName::Step => Mode::Step(StepPlan {
                start: self.step_start,
                increment: self.step_increment,
                step: seconds("--step-duration", self.step_duration)?,
                max_rate: self.step_max_rate,
                p99_bound: Duration::try_from_secs_f64(self.p99_bound_ms / 1e3)
                    .map_err(|_| Error::Config("--p99-bound-ms must be positive".into()))?,
                min_achieved: self.min_achieved,
            }),
        })
    }

    fn config(&self) -> Result<Config, Error> {
        let source = match (&self.data_dir, &self.issue_key) {
            (Some(dir), _) => Source::DataDir(dir.clone()),
            (None, Some(key)) => Source::IssueEndpoint {
                api_key: key.clone(),
            },
            (None, None) => Source::Synthetic,
        };
        let mut config = if self.expect_any {
            Config::expect_any(self.target)
        } else {
            Config::new(
                self.target,
                self.api_key.clone().unwrap_or_default(),
                source,
            )
        };
        config.allow_remote = self.allow_remote;
        config.also_targets.clone_from(&self.also_targets);
        if self.expect_any {
            // The baseline ignores credentials, but a node would want them.
            config.api_key = self.api_key.clone();
        }
        config.platform = self.platform;
        config.other_platform = self.other_platform;
        config.authority_key = self.authority_key.clone();
        config.mix = self.mix()?;
        config.mode = self.mode()?;
        config.connections = self.connections;
        config.requests = self.requests;
        config.duration = self
            .duration
            .map(|d| seconds("--duration", d))
            .transpose()?;
        config.timeout = Duration::from_millis(self.timeout_ms);
        config.lifetime = self.lifetime;
        config.pool = self.pool;
        config.body = self.body;
        config.allow_overload = self.allow_overload;
        config.progress = !self.quiet;
        config.warmup = self.warmup;
        Ok(config)
    }
}

fn write(path: &PathBuf, what: &str, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents)
        .map_err(Error::io(format!("write the {what} to {}", path.display())))
}

fn outputs(cli: &Cli, report: &Report) -> Result<(), Error> {
    if let Some(path) = &cli.json {
        write(path, "JSON report", &report.to_json())?;
    }
    if let Some(path) = &cli.svg {
        write(path, "chart", &report.to_svg()?)?;
    }
    Ok(())
}

/// Runs the command line; the process's exit code.
pub fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    if cli.threads == 0 {
        eprintln!("cyberid-loadtest: --threads must be at least 1 [config]");
        return ExitCode::from(EXIT_NOT_RUN);
    }
    if let Some(path) = &cli.write_bodies {
        let written = cli
            .config()
            .and_then(|config| crate::run::write_bodies_blocking(&config, path));
        return match written {
            Ok(count) => {
                println!("wrote {count} bodies to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cyberid-loadtest: {error} [{}]", error.code());
                ExitCode::from(EXIT_NOT_RUN)
            }
        };
    }
    let report = cli
        .config()
        .and_then(|config| run_blocking(&config, cli.threads));
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("cyberid-loadtest: {error} [{}]", error.code());
            return ExitCode::from(EXIT_NOT_RUN);
        }
    };
    print!("{report}");
    if let Err(error) = outputs(&cli, &report) {
        eprintln!("cyberid-loadtest: {error} [{}]", error.code());
        return ExitCode::from(EXIT_NOT_RUN);
    }
    ExitCode::from(report.outcome.exit_code())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("cyberid-loadtest").chain(args.iter().copied()))
                .map_err(|error| error.to_string())?;
        cli.config().map_err(|error| error.to_string())
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_a_config() {
        let config = parse(&[
            "--target",
            "localhost:9000",
            "--api-key",
            "cyp_a_b",
            "--data-dir",
            "/data",
            "--authority-key",
            "cya_c_d",
            "--mix",
            "valid=8,revoked=2",
            "--rate",
            "500",
            "--duration",
            "2.5",
            "--body",
            "binary",
            "--quiet",
        ])
        .unwrap();
        assert!(config.target.ip().is_loopback());
        assert_eq!(config.target.port(), 9000);
        assert_eq!(config.source, Source::DataDir("/data".into()));
        assert_eq!(config.mode, Mode::Open { rate: 500.0 });
        assert_eq!(config.duration, Some(Duration::from_millis(2_500)));
        assert_eq!(config.mix.weight(Kind::Revoked), 2.0);
        assert_eq!(config.body, BodyFormat::Binary);
        assert!(!config.progress);
    }

    #[test]
    fn ratio_flags_make_a_mix_and_conflict_with_mix() {
        let config = parse(&[
            "--api-key",
            "k",
            "--issue-key",
            "i",
            "--valid",
            "3",
            "--forged",
            "1",
        ])
        .unwrap();
        assert_eq!(config.mix, "valid=3,forged=1".parse().unwrap());
        assert_eq!(config.mode, Mode::Closed);
        let conflict = parse(&["--mix", "valid=1", "--forged", "1"]).unwrap_err();
        assert!(conflict.contains("cannot be used with"), "{conflict}");
    }

    #[test]
    fn step_flags_make_a_plan_and_rate_needs_open() {
        let config = parse(&[
            "--api-key",
            "k",
            "--data-dir",
            "/d",
            "--mode",
            "step",
            "--step-start",
            "200",
            "--p99-bound-ms",
            "2.5",
        ])
        .unwrap();
        match config.mode {
            Mode::Step(plan) => {
                assert_eq!(plan.start, 200.0);
                assert_eq!(plan.p99_bound, Duration::from_micros(2_500));
            }
            other => panic!("{other:?}"),
        }
        let error = parse(&["--mode", "closed", "--rate", "5"]).unwrap_err();
        assert!(error.contains("--rate"), "{error}");
        let error = parse(&["--mode", "open"]).unwrap_err();
        assert!(error.contains("--rate"), "{error}");
    }

    #[test]
    fn expect_any_takes_no_certificates() {
        let config = parse(&["--expect-any", "--target", "127.0.0.1:9"]).unwrap();
        assert!(config.expect_any);
        assert_eq!(config.source, Source::Synthetic);
        let error = parse(&["--expect-any", "--data-dir", "/d"]).unwrap_err();
        assert!(error.contains("cannot be used with"), "{error}");
    }
}
