//! Running a load: prepare a phase's requests, open the connections, send on schedule (open
//! loop) or back to back (closed loop), record every answer, and assemble the report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::{LIFETIME_MARGIN, Phase, Plan};
use crate::http::{Connection, Template};
use crate::prepare::{Prepared, Requests, prepare};
use crate::record::{Live, Recorder, Second, Tally};
use crate::report::{
    KindReport, Knee, Percentiles, PreparationReport, SecondReport, Totals, WarmupReport, round,
};
use crate::schedule::Schedule;
use crate::step::knee;
use crate::verdict::{Class, Expect, Observed, TransportError, classify};
use crate::{Config, Error, Mode, Outcome, Report, StepPlan, StepReport};

/// Connections idle longer than this while a phase was prepared are replaced before it sends.
const IDLE_BEFORE_RECONNECT: Duration = Duration::from_secs(1);

/// After a failed connection attempt, a connection task waits this long before its next
/// request, so that a node that is down is not hammered with connects in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(20);

/// Runs the load `config` describes and reports what happened. Fails only if the run could not
/// be set up (a refused setting, an unreachable node, a preparation the node answered wrongly);
/// wrong verdicts during the run are in the report, whose [`Report::outcome`] judges them.
pub async fn run(config: &Config) -> Result<Report, Error> {
    let plan = config.plan()?;
    let template = Arc::new(Template::new(
        config.target,
        "/v1/verify",
        config.api_key.as_deref(),
        config.body,
    )?);
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    let progress = Progress {
        enabled: config.progress && std::io::stderr().is_terminal(),
    };
    let mut connections = Vec::new();
    let warmup = match config.warmup {
        0 => None,
        requests => {
            let phase = Phase {
                schedule: None,
                requests,
                duration: Duration::from_secs(u64::from(config.lifetime)),
                grace: Duration::ZERO,
                fit: true,
            };
            let warm = run_one(config, &template, &mut connections, phase, &progress).await?;
            Some(warmup_report(&warm))
        }
    };
    let mut ran = Vec::new();
    match &plan {
        Plan::Single(phase) => {
            let result = run_one(config, &template, &mut connections, *phase, &progress).await?;
            ran.push(result);
        }
        Plan::Steps(step_plan, phases) => {
            for phase in phases {
                let mut result =
                    run_one(config, &template, &mut connections, *phase, &progress).await?;
                let step = step_report(step_plan, &result);
                let passed = step.passed;
                result.step = Some(step);
                ran.push(result);
                if !passed {
                    break;
                }
            }
        }
    }
    Ok(assemble(config, &plan, threads, &ran, warmup))
}

/// Runs `config` on a runtime of its own with `threads` worker threads (one thread runs
/// everything on the calling thread). For callers that have no runtime: the command line.
pub fn run_blocking(config: &Config, threads: usize) -> Result<Report, Error> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("cyberid-loadtest")
            .enable_all()
            .build()
    }
    .map_err(Error::io("start the async runtime"))?;
    runtime.block_on(run(config))
}

/// Prepares `config.requests` requests (the default closed-loop count if unset) and writes
/// their bodies to `path`, one per line in send order; returns how many. For generators that
/// cannot sign certificates themselves (wrk): each valid certificate is then sent once.
pub(crate) fn write_bodies_blocking(config: &Config, path: &std::path::Path) -> Result<u64, Error> {
    use std::io::Write;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("start the async runtime"))?;
    let total = config
        .requests
        .unwrap_or(crate::config::DEFAULT_CLOSED_REQUESTS);
    let prepared = runtime.block_on(prepare(config, total))?;
    let file =
        std::fs::File::create(path).map_err(Error::io(format!("create {}", path.display())))?;
    let mut out = std::io::BufWriter::new(file);
    let requests = &prepared.requests;
    for index in 0..requests.len() {
        let (_, body) = requests.get(index);
        if body.contains(&b'\n') {
            return Err(Error::Config(
                "--write-bodies writes one body per line: use --body json or text".into(),
            ));
        }
        out.write_all(body)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(Error::io(format!("write {}", path.display())))?;
    }
    out.flush()
        .map_err(Error::io(format!("write {}", path.display())))?;
    Ok(requests.len() as u64)
}

/// One phase, from preparation to its tally.
#[derive(Debug)]
struct Ran {
    phase: Phase,
    certificates: u64,
    preparation: Duration,
    tally: Tally,
    timeline: Vec<Second>,
    step: Option<StepReport>,
}

async fn run_one(
    config: &Config,
    template: &Arc<Template>,
    connections: &mut Vec<Connection>,
    mut phase: Phase,
    progress: &Progress,
) -> Result<Ran, Error> {
    let spinner = progress.spinner(format!(
        "preparing {} requests ({})",
        phase.requests,
        config.source.name()
    ));
    let prepared = prepare(config, phase.requests).await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let prepared = prepared?;
    phase.duration = fit_to_certificates(&phase, &prepared)?;
    // Connections kept from the last phase sat idle while this one was prepared, and a node
    // closes idle keep-alive connections after its own timeout: a close arriving just as the
    // phase sends would be counted against the node. Fresh connections for a phase whose
    // preparation took longer than a second.
    if prepared.took > IDLE_BEFORE_RECONNECT {
        connections.clear();
    }
    while connections.len() < config.connections {
        let address = config.target_of(connections.len());
        let connection = open(address, config.timeout)
            .await
            .map_err(|detail| Error::Connect { address, detail })?;
        connections.push(connection);
    }
    let label = match phase.schedule {
        Some(schedule) => format!("{:.0}/s", schedule.rate()),
        None => "closed".to_owned(),
    };
    let (returned, tally, timeline) = run_phase(
        config,
        template,
        std::mem::take(connections),
        phase,
        prepared.requests.clone(),
        progress,
        &label,
    )
    .await?;
    *connections = returned;
    Ok(Ran {
        phase,
        certificates: prepared.certificates,
        preparation: prepared.took,
        tally,
        timeline,
        step: None,
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The time the phase may send for, now that its certificates exist: what was asked, unless
/// the certificates expire first. A closed-loop run bounded only by its request count simply
/// stops sending in time; a run whose asked duration no longer fits is refused.
fn fit_to_certificates(phase: &Phase, prepared: &Prepared) -> Result<Duration, Error> {
    let Some(expires_at) = prepared.expires_at else {
        return Ok(phase.duration);
    };
    let left = expires_at as f64 - unix_now() - LIFETIME_MARGIN.as_secs_f64();
    let needed = (phase.duration + phase.grace).as_secs_f64();
    if needed <= left {
        return Ok(phase.duration);
    }
    if phase.fit && left >= 1.0 {
        return Ok(Duration::from_secs_f64(left));
    }
    Err(Error::Lifetime(format!(
        "preparing {} requests took {:.1} s, and the certificates expire in {:.1} s; the run \
         could send for {needed:.1} s and must end {} s before they expire: send fewer \
         requests (--requests, --duration, --rate) or raise --lifetime up to the node's \
         max_lifetime_s",
        phase.requests,
        prepared.took.as_secs_f64(),
        left + LIFETIME_MARGIN.as_secs_f64(),
        LIFETIME_MARGIN.as_secs()
    )))
}

async fn open(address: SocketAddr, timeout: Duration) -> Result<Connection, String> {
    match tokio::time::timeout(timeout, Connection::open(address)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no connection within {} ms", timeout.as_millis())),
    }
}

/// Sends a phase's requests over `connections`, one task per connection; returns the
/// connections for the next phase, the tally and the timeline.
async fn run_phase(
    config: &Config,
    template: &Arc<Template>,
    connections: Vec<Connection>,
    phase: Phase,
    requests: Arc<Requests>,
    progress: &Progress,
    label: &str,
) -> Result<(Vec<Connection>, Tally, Vec<Second>), Error> {
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let live = Arc::new(Live::default());
    let bar = progress.bar(label, requests.len() as u64, live.clone());
    let next = Arc::new(AtomicU64::new(0));
    // Everything a task needs, its histograms above all, is built before the clock starts:
    // allocating them once stalled the start by tens of milliseconds, which the first
    // requests' latency from their due time then showed as the node's.
    let workers: Vec<Worker> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| Worker {
            address: config.target_of(index),
            template: template.clone(),
            requests: requests.clone(),
            timeout: config.timeout,
            expect_any: config.expect_any,
            connection,
            recorder: Recorder::new(timeline.clone(), live.clone()),
        })
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(workers.len());
    for (index, mut worker) in workers.into_iter().enumerate() {
        worker.recorder.begin(start);
        tasks.push(match phase.schedule {
            Some(schedule) => tokio::spawn(worker.open_loop(
                index,
                schedule,
                start,
                start + phase.duration + phase.grace,
            )),
            None => tokio::spawn(worker.closed_loop(next.clone(), start + phase.duration)),
        });
    }
    let mut connections = Vec::with_capacity(tasks.len());
    let mut tally = Tally::empty();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok((connection, part)) => {
                connections.push(connection);
                tally.add(&part);
            }
            Err(error) => failure = Some(error),
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    if let Some(error) = failure {
        return Err(Error::Http(format!("a connection task failed: {error}")));
    }
    let timeline = std::mem::take(&mut *timeline.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((connections, tally, timeline))
}

/// One connection's sender.
struct Worker {
    address: SocketAddr,
    template: Arc<Template>,
    requests: Arc<Requests>,
    timeout: Duration,
    expect_any: bool,
    connection: Connection,
    recorder: Recorder,
}

impl Worker {
    /// Sends this connection's share of the schedule, each request at its due time or, if the
    /// connection is behind, at once; gives up on what is still unsent at `stop`.
    async fn open_loop(
        mut self,
        index: usize,
        schedule: Schedule,
        start: Instant,
        stop: Instant,
    ) -> (Connection, Tally) {
        let total = self.requests.len() as u64;
        for request in schedule.requests_of(index, total) {
            let now = Instant::now();
            if now > stop {
                self.recorder.unsent += schedule.remaining_from(request, total);
                break;
            }
            let due = start + schedule.due(request);
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            }
            self.send(request, due).await;
        }
        (self.connection, self.recorder.finish())
    }

    /// Takes the next request as soon as the last is answered, until all are sent or `stop`.
    async fn closed_loop(mut self, next: Arc<AtomicU64>, stop: Instant) -> (Connection, Tally) {
        let total = self.requests.len() as u64;
        while Instant::now() < stop {
            let request = next.fetch_add(1, Ordering::Relaxed);
            if request >= total {
                break;
            }
            self.send(request, Instant::now()).await;
        }
        (self.connection, self.recorder.finish())
    }

    async fn send(&mut self, request: u64, due: Instant) {
        let (expect, body) = self.requests.get(request as usize);
        let body = body.clone();
        if !self.connection.usable() {
            match open(self.address, self.timeout).await {
                Ok(connection) => {
                    self.connection = connection;
                    self.recorder.reconnects += 1;
                }
                Err(_) => {
                    let now = Instant::now();
                    self.recorder.record(
                        expect,
                        Observed::Transport(TransportError::Connect),
                        due,
                        now,
                        now,
                    );
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                    return;
                }
            }
        }
        let sent = Instant::now();
        let result = self
            .connection
            .exchange(self.template.request(body), self.timeout)
            .await;
        let done = Instant::now();
        let observed = match result {
            Ok((status, _)) if self.expect_any => Observed::Answered(status),
            Ok((status, body)) => Observed::parse(status, &body),
            Err(error) => Observed::Transport(error),
        };
        self.recorder.record(expect, observed, due, sent, done);
    }
}

/// The progress display: a spinner while preparing, a bar while sending. Off unless asked for
/// and standard error is a terminal, so logs and pipes get only the report.
struct Progress {
    enabled: bool,
}

/// A running bar and the task that refreshes it.
struct Bar {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Bar {
    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

impl Progress {
    fn spinner(&self, message: String) -> Option<ProgressBar> {
        if !self.enabled {
            return None;
        }
        let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        spinner.set_message(message);
        spinner.enable_steady_tick(Duration::from_millis(120));
        Some(spinner)
    }

    fn bar(&self, label: &str, total: u64, live: Arc<Live>) -> Option<Bar> {
        if !self.enabled {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            loop {
                interval.tick().await;
                let done = live.done.load(Ordering::Relaxed);
                let failed = live.failed.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, done);
                ticking.set_position(done);
                ticking.set_message(format!("{rate:.0}/s, {failed} not as expected"));
            }
        });
        Some(Bar { bar, ticker })
    }
}

/// A step's result, judged against the plan.
fn step_report(plan: &StepPlan, ran: &Ran) -> StepReport {
    let rate = ran.phase.schedule.map_or(0.0, |s| s.rate());
    let length = ran.tally.last_answer.max(ran.phase.duration).as_secs_f64();
    let latency = Percentiles::of(&ran.tally.latency);
    let classes = ran.tally.classes;
    let mut step = StepReport {
        rate,
        sent: classes.total(),
        unsent: ran.tally.unsent,
        achieved: round(classes.matched as f64 / length, 3),
        p50_ms: latency.p50_ms,
        p99_ms: latency.p99_ms,
        max_ms: latency.max_ms,
        mismatched: classes.mismatched,
        overloaded: classes.overloaded,
        transport: classes.transport,
        passed: false,
        failure: None,
    };
    let verdict = plan.judge(&step);
    step.passed = verdict.is_ok();
    step.failure = verdict.err();
    step
}

fn warmup_report(ran: &Ran) -> WarmupReport {
    let classes = ran.tally.classes;
    WarmupReport {
        requests: classes.total(),
        seconds: round(ran.tally.last_answer.as_secs_f64(), 6),
        totals: Totals {
            matched: classes.matched,
            mismatched: classes.mismatched,
            overloaded: classes.overloaded,
            transport: classes.transport,
        },
    }
}

fn assemble(
    config: &Config,
    plan: &Plan,
    threads: usize,
    ran: &[Ran],
    warmup: Option<WarmupReport>,
) -> Report {
    let mut tally = Tally::empty();
    let mut timeline = Vec::new();
    let mut seconds = 0.0;
    for phase in ran {
        tally.add(&phase.tally);
        let before = seconds;
        seconds += phase.tally.last_answer.as_secs_f64();
        let offset = timeline.len() as u64;
        let rate = phase.phase.schedule.map(|s| s.rate());
        let end = phase.tally.last_answer.as_secs_f64();
        timeline.extend(
            phase
                .timeline
                .iter()
                .enumerate()
                .map(|(i, second)| SecondReport {
                    second: offset + i as u64,
                    start_s: round(before + i as f64, 6),
                    length_s: round((end - i as f64).clamp(0.0, 1.0), 6),
                    target_rate: rate,
                    completed: second.classes.total(),
                    matched: second.classes.matched,
                    mismatched: second.classes.mismatched,
                    errors: second.classes.overloaded + second.classes.transport,
                    latency: Percentiles::of(&second.latency),
                }),
        );
    }
    let completed = tally.classes.total();
    let planned: u64 = ran.iter().map(|r| r.phase.requests).sum();

    // Keyed by Expect, so reports list the kinds in their declared order, then `any`.
    let mut kinds: BTreeMap<Expect, KindReport> = BTreeMap::new();
    let mut mismatches = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for ((expect, observed), count) in &tally.answers {
        let kind = kinds.entry(*expect).or_insert_with(|| KindReport {
            kind: expect.name().to_owned(),
            expected: expect.expected().to_owned(),
            sent: 0,
            matched: 0,
            answers: BTreeMap::new(),
        });
        kind.sent += count;
        *kind
            .answers
            .entry(observed.label().into_owned())
            .or_insert(0) += count;
        match classify(*expect, observed) {
            Class::Match => kind.matched += count,
            Class::Mismatch => {
                *mismatches
                    .entry(format!(
                        "{}: expected {}, got {}",
                        expect.name(),
                        expect.expected(),
                        observed.label()
                    ))
                    .or_insert(0) += count;
            }
            Class::Overload | Class::Transport => {
                *errors.entry(observed.label().into_owned()).or_insert(0) += count;
            }
        }
    }

    let (steps, knee_report, ended_by, overloads_past_knee) = match plan {
        Plan::Steps(step_plan, _) => {
            let steps: Vec<StepReport> = ran.iter().filter_map(|r| r.step.clone()).collect();
            let knee_report = knee(&steps).map(|i| Knee {
                rate: steps[i].rate,
                achieved: steps[i].achieved,
                p99_ms: steps[i].p99_ms,
                p99_bound_ms: round(step_plan.p99_bound.as_secs_f64() * 1e3, 6),
            });
            let missed = steps.last().filter(|step| !step.passed);
            let past = missed.map_or(0, |step| step.overloaded);
            let ended = if missed.is_some() {
                "step_missed"
            } else {
                "steps"
            };
            (steps, knee_report, ended, past)
        }
        Plan::Single(phase) => {
            let ended = if phase.schedule.is_some() {
                "schedule"
            } else if completed < phase.requests {
                "duration"
            } else {
                "requests"
            };
            (Vec::new(), None, ended, 0)
        }
    };

    let mut report = Report {
        harness: format!("cyberid-loadtest {}", env!("CARGO_PKG_VERSION")),
        target: config.targets_label(),
        mode: config.mode.name().to_owned(),
        connections: config.connections,
        generator_threads: threads,
        target_rate: match config.mode {
            Mode::Open { rate } => Some(rate),
            _ => None,
        },
        mix: if config.expect_any {
            "any".to_owned()
        } else {
            config.mix.to_string()
        },
        body: match config.body {
            crate::BodyFormat::Json => "json",
            crate::BodyFormat::Binary => "binary",
        }
        .to_owned(),
        preparation: PreparationReport {
            source: config.source.name().to_owned(),
            certificates: ran.iter().map(|r| r.certificates).sum(),
            seconds: round(ran.iter().map(|r| r.preparation.as_secs_f64()).sum(), 6),
        },
        planned,
        completed,
        unsent: tally.unsent,
        reconnects: tally.reconnects,
        seconds: round(seconds, 6),
        throughput: if seconds > 0.0 {
            round(completed as f64 / seconds, 3)
        } else {
            0.0
        },
        ended_by: ended_by.to_owned(),
        latency: Percentiles::of(&tally.latency),
        service: Percentiles::of(&tally.service),
        sent_late: Percentiles::of(&tally.lateness),
        totals: Totals {
            matched: tally.classes.matched,
            mismatched: tally.classes.mismatched,
            overloaded: tally.classes.overloaded,
            transport: tally.classes.transport,
        },
        kinds: kinds.into_values().collect(),
        mismatches,
        errors,
        timeline,
        steps,
        knee: knee_report,
        warmup,
        allow_overload: config.allow_overload,
        outcome: Outcome::Pass,
        failures: Vec::new(),
    };
    report.judge(overloads_past_knee);
    report
}
