//! The result of a run: as text for a person, JSON for scripts, SVG for a glance.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::StepReport;

/// `value` to `decimals` places. Reports round what they derive (means, rates, seconds) to
/// the resolution they were measured at: the JSON is then readable, and each number, having
/// at most 15 significant digits, reads back as exactly the same float.
pub(crate) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// How many latencies.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Highest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Of a histogram of microseconds.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1e3;
        Self {
            count: histogram.len(),
            mean_ms: round(histogram.mean() / 1e3, 3),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SecondReport {
    /// Its index in the run.
    pub second: u64,
    /// When it began, in seconds of load (the time spent preparing between steps is left
    /// out, and a phase's last second lasts only until its last answer).
    pub start_s: f64,
    /// The rate asked for in this second, open loop and step mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// How much of this second the phase covered: 1 except for a phase's last second, which
    /// ends with its last answer.
    pub length_s: f64,
    /// Requests that ended in this second, whatever became of them.
    pub completed: u64,
    /// Of which answered as expected.
    pub matched: u64,
    /// Wrong verdicts and unexpected answers.
    pub mismatched: u64,
    /// Overload answers and requests without an answer.
    pub errors: u64,
    /// Latency percentiles of this second's answers (two significant digits).
    pub latency: Percentiles,
}

/// What one kind of request got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KindReport {
    /// The kind (`any` with `--expect-any`).
    pub kind: String,
    /// The verdict it must get.
    pub expected: String,
    /// Requests of this kind that ended.
    pub sent: u64,
    /// Of which answered as expected.
    pub matched: u64,
    /// Every answer it got, by label (see [`Report::errors`] for the labels of errors).
    pub answers: BTreeMap<String, u64>,
}

/// Totals by how answers counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Answered as the protocol requires.
    pub matched: u64,
    /// Wrong verdicts and unexpected HTTP answers.
    pub mismatched: u64,
    /// 503 `overloaded` and 429 answers.
    pub overloaded: u64,
    /// Requests without an answer.
    pub transport: u64,
}

/// The verdict on the run, and the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every answer was as required: exit 0.
    Pass,
    /// A wrong verdict, an unexpected answer or a request without answer: exit 1.
    Fail,
    /// Only overload answers went wrong, and they were not allowed: exit 3.
    Overload,
}

impl Outcome {
    /// The exit code: 0 pass, 1 fail, 3 overload (2 is a run that could not start).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::Overload => 3,
        }
    }
}

/// Where the certificates came from and what making them cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PreparationReport {
    /// `data-dir`, `issue-endpoint` or `synthetic`.
    pub source: String,
    /// Distinct certificates made (all phases).
    pub certificates: u64,
    /// Time spent preparing (all phases).
    pub seconds: f64,
}

/// The unmeasured requests sent before the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WarmupReport {
    /// Requests that ended.
    pub requests: u64,
    /// How long they took.
    pub seconds: f64,
    /// How their answers counted: checked like the run's.
    pub totals: Totals,
}

/// The knee of a step run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Knee {
    /// The highest rate that kept up, requests per second.
    pub rate: f64,
    /// What it achieved.
    pub achieved: f64,
    /// Its p99 latency, milliseconds.
    pub p99_ms: f64,
    /// The bound it met.
    pub p99_bound_ms: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The harness and its version.
    pub harness: String,
    /// The node.
    pub target: String,
    /// `open`, `closed` or `step`.
    pub mode: String,
    /// Connections.
    pub connections: usize,
    /// Worker threads of the generator's runtime.
    pub generator_threads: usize,
    /// The open-loop rate, requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// The mix, as `--mix` takes it (`any` with `--expect-any`).
    pub mix: String,
    /// `json` or `binary`.
    pub body: String,
    /// How certificates were made.
    pub preparation: PreparationReport,
    /// Requests prepared.
    pub planned: u64,
    /// Requests that ended (answered or failed).
    pub completed: u64,
    /// Open-loop requests due but never sent, because a connection fell too far behind.
    pub unsent: u64,
    /// Connections the node closed between requests, replaced before the next.
    pub reconnects: u64,
    /// Seconds of load: from the first request to the last answer (steps added up).
    pub seconds: f64,
    /// Requests ended per second of load.
    pub throughput: f64,
    /// Why sending stopped: `requests` (all sent), `duration`, `schedule` (open loop: every
    /// request due was sent), `step_missed` or `steps` (step mode: a step missed, or all kept
    /// up).
    pub ended_by: String,
    /// Latency from each request's due time (open loop: the schedule; closed loop: sending).
    pub latency: Percentiles,
    /// Latency from actually sending each request.
    pub service: Percentiles,
    /// How late requests were sent after their due time: the generator's timer granularity
    /// (about a millisecond) or a connection still busy with an earlier request. Open loop
    /// counts it in `latency`, as it must: a node that answers slowly makes requests late.
    pub sent_late: Percentiles,
    /// Totals by how answers counted.
    pub totals: Totals,
    /// What each kind got.
    pub kinds: Vec<KindReport>,
    /// Wrong answers: `"<kind>: expected <verdict>, got <answer>"` and their counts.
    pub mismatches: BTreeMap<String, u64>,
    /// Overload answers and requests without an answer, by label: `overloaded`,
    /// `rate_limited`, `connect`, `closed`, `request`, `body`, `timeout`.
    pub errors: BTreeMap<String, u64>,
    /// Second by second.
    pub timeline: Vec<SecondReport>,
    /// Step mode: every step run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// Step mode: the highest rate that kept up; absent if the first step already failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee: Option<Knee>,
    /// The warm-up before the run, if any: not in the figures above, but judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupReport>,
    /// Whether overload answers were allowed.
    pub allow_overload: bool,
    /// The verdict on the run.
    pub outcome: Outcome,
    /// Why it did not pass.
    pub failures: Vec<String>,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The chart: latency percentiles and throughput over time, as SVG.
    pub fn to_svg(&self) -> Result<String, crate::Error> {
        crate::svg::render(self)
    }

    /// Judges the totals: any wrong answer or missing answer fails the run; overload answers
    /// fail it unless allowed, or unless they came in the step past the knee, where shedding
    /// load is how the knee shows itself.
    pub(crate) fn judge(&mut self, overloads_past_knee: u64) {
        let warm = self.warmup.as_ref().map(|w| w.totals).unwrap_or_default();
        let mut failures = Vec::new();
        let mismatched = self.totals.mismatched + warm.mismatched;
        if mismatched > 0 {
            failures.push(format!(
                "{mismatched} answers differ from what the protocol requires"
            ));
        }
        let transport = self.totals.transport + warm.transport;
        if transport > 0 {
            failures.push(format!("{transport} requests got no answer"));
        }
        let overloads =
            (self.totals.overloaded + warm.overloaded).saturating_sub(overloads_past_knee);
        let overload_failure = overloads > 0 && !self.allow_overload;
        self.outcome = if !failures.is_empty() {
            Outcome::Fail
        } else if overload_failure {
            Outcome::Overload
        } else {
            Outcome::Pass
        };
        if overload_failure {
            failures.push(format!(
                "{overloads} overload answers (503 overloaded, 429); --allow-overload accepts them"
            ));
        }
        self.failures = failures;
    }
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn percentiles_line(out: &mut String, name: &str, p: &Percentiles) -> fmt::Result {
    writeln!(
        out,
        "{name:<14} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
        ms(p.p50_ms),
        ms(p.p90_ms),
        ms(p.p99_ms),
        ms(p.p999_ms),
        ms(p.max_ms),
        ms(p.mean_ms)
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let rate = self
            .target_rate
            .map(|rate| format!(" at {rate:.0}/s"))
            .unwrap_or_default();
        writeln!(
            out,
            "{}: {} loop{rate} against {}, {} connections, {} generator thread{}",
            self.harness,
            self.mode,
            self.target,
            self.connections,
            self.generator_threads,
            if self.generator_threads == 1 { "" } else { "s" }
        )?;
        writeln!(
            out,
            "mix {}, {} bodies; {} certificates prepared ({}) in {:.2} s",
            self.mix,
            self.body,
            self.preparation.certificates,
            self.preparation.source,
            self.preparation.seconds
        )?;
        if let Some(warm) = &self.warmup {
            writeln!(
                out,
                "warm-up: {} requests in {:.2} s, not measured ({} not as expected)",
                warm.requests,
                warm.seconds,
                warm.totals.mismatched + warm.totals.overloaded + warm.totals.transport
            )?;
        }
        writeln!(
            out,
            "{} of {} requests in {:.2} s: {:.0} requests/s (ended by {}){}{}",
            self.completed,
            self.planned,
            self.seconds,
            self.throughput,
            self.ended_by,
            if self.unsent > 0 {
                format!(", {} due but never sent", self.unsent)
            } else {
                String::new()
            },
            if self.reconnects > 0 {
                format!(", {} reconnects", self.reconnects)
            } else {
                String::new()
            }
        )?;
        writeln!(out, "latency (ms), {} answers:", self.latency.count)?;
        percentiles_line(&mut out, "  from due", &self.latency)?;
        percentiles_line(&mut out, "  from sent", &self.service)?;
        percentiles_line(&mut out, "  sent late by", &self.sent_late)?;
        writeln!(
            out,
            "{:<16} {:>9} {:<16} answers",
            "kind", "sent", "expected"
        )?;
        for kind in &self.kinds {
            let answers: Vec<String> = kind
                .answers
                .iter()
                .map(|(label, count)| format!("{label} {count}"))
                .collect();
            writeln!(
                out,
                "{:<16} {:>9} {:<16} {}",
                kind.kind,
                kind.sent,
                kind.expected,
                answers.join(", ")
            )?;
        }
        let listed = |map: &BTreeMap<String, u64>| {
            if map.is_empty() {
                "none".to_owned()
            } else {
                map.iter()
                    .map(|(label, count)| format!("{label} ×{count}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        };
        writeln!(out, "mismatches: {}", listed(&self.mismatches))?;
        writeln!(out, "errors: {}", listed(&self.errors))?;
        if !self.timeline.is_empty() {
            writeln!(
                out,
                "{:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
                "second", "target/s", "done/s", "p50", "p90", "p99", "p99.9", "max", "bad"
            )?;
            for second in &self.timeline {
                writeln!(
                    out,
                    "{:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
                    second.second,
                    second
                        .target_rate
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
                    if second.length_s < 1.0 {
                        format!(
                            "{:.0}*",
                            second.completed as f64 / second.length_s.max(1e-3)
                        )
                    } else {
                        second.completed.to_string()
                    },
                    ms(second.latency.p50_ms),
                    ms(second.latency.p90_ms),
                    ms(second.latency.p99_ms),
                    ms(second.latency.p999_ms),
                    ms(second.latency.max_ms),
                    second.mismatched + second.errors
                )?;
            }
            if self.timeline.iter().any(|s| s.length_s < 1.0) {
                writeln!(
                    out,
                    "  * a phase's last, partial second: its rate over the part run"
                )?;
            }
        }
        if !self.steps.is_empty() {
            writeln!(
                out,
                "{:>9} {:>9} {:>8} {:>8} {:>8}  result",
                "rate/s", "achieved", "p50", "p99", "max"
            )?;
            for step in &self.steps {
                writeln!(
                    out,
                    "{:>9.0} {:>9.0} {:>8} {:>8} {:>8}  {}",
                    step.rate,
                    step.achieved,
                    ms(step.p50_ms),
                    ms(step.p99_ms),
                    ms(step.max_ms),
                    match &step.failure {
                        None => "kept up".to_owned(),
                        Some(why) => format!("missed: {why}"),
                    }
                )?;
            }
            match &self.knee {
                Some(knee) => writeln!(
                    out,
                    "knee: {:.0} requests/s (achieved {:.0}/s, p99 {} ms within {} ms)",
                    knee.rate,
                    knee.achieved,
                    ms(knee.p99_ms),
                    knee.p99_bound_ms
                )?,
                None => writeln!(out, "knee: none, the first step already missed")?,
            }
        }
        match self.outcome {
            Outcome::Pass => writeln!(out, "result: PASS")?,
            _ => writeln!(
                out,
                "result: {} ({})",
                if self.outcome == Outcome::Fail {
                    "FAIL"
                } else {
                    "OVERLOAD"
                },
                self.failures.join("; ")
            )?,
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report as a small mixed run would give, for this module's and the chart's tests.
    pub(crate) fn sample() -> Report {
        let mut latency = crate::record::fine();
        for micros in 1..=1_000u64 {
            latency.saturating_record(micros * 10);
        }
        let percentiles = Percentiles::of(&latency);
        let timeline = (0..5)
            .map(|second| SecondReport {
                second,
                start_s: second as f64,
                length_s: if second == 4 { 0.5 } else { 1.0 },
                target_rate: Some(200.0),
                completed: 200 - second,
                matched: 200 - second,
                mismatched: 0,
                errors: second % 2,
                latency: Percentiles {
                    p50_ms: 1.0 + second as f64,
                    p99_ms: 4.0 + second as f64,
                    ..percentiles
                },
            })
            .collect();
        let mut report = Report {
            harness: "cyberid-loadtest 0.1.0".into(),
            target: "127.0.0.1:8080".into(),
            mode: "open".into(),
            connections: 8,
            generator_threads: 1,
            target_rate: Some(200.0),
            mix: "valid=9,forged=1".into(),
            body: "json".into(),
            preparation: PreparationReport {
                source: "data-dir".into(),
                certificates: 910,
                seconds: 0.25,
            },
            planned: 1_000,
            completed: 1_000,
            unsent: 0,
            reconnects: 0,
            seconds: 5.0,
            throughput: 200.0,
            ended_by: "requests".into(),
            latency: percentiles,
            service: percentiles,
            sent_late: Percentiles::default(),
            totals: Totals {
                matched: 998,
                mismatched: 0,
                overloaded: 2,
                transport: 0,
            },
            kinds: vec![
                KindReport {
                    kind: "valid".into(),
                    expected: "valid".into(),
                    sent: 900,
                    matched: 898,
                    answers: BTreeMap::from([("valid".into(), 898), ("overloaded".into(), 2)]),
                },
                KindReport {
                    kind: "forged".into(),
                    expected: "bad_signature".into(),
                    sent: 100,
                    matched: 100,
                    answers: BTreeMap::from([("bad_signature".into(), 100)]),
                },
            ],
            mismatches: BTreeMap::new(),
            errors: BTreeMap::from([("overloaded".into(), 2)]),
            timeline,
            steps: Vec::new(),
            knee: None,
            warmup: Some(WarmupReport {
                requests: 100,
                seconds: 0.1,
                totals: Totals {
                    matched: 100,
                    ..Totals::default()
                },
            }),
            allow_overload: false,
            outcome: Outcome::Pass,
            failures: Vec::new(),
        };
        report.judge(0);
        report
    }

    #[test]
    fn rounding_keeps_the_measured_resolution() {
        assert_eq!(round(1.608_006_666_666_666_1, 3), 1.608);
        assert_eq!(round(2_458.842_903_936_745, 3), 2_458.843);
        assert_eq!(round(0.183_012_912_4, 6), 0.183_013);
        let back: f64 =
            serde_json::from_str(&serde_json::to_string(&round(1.0 / 3.0, 6)).unwrap()).unwrap();
        assert_eq!(back, round(1.0 / 3.0, 6));
    }

    #[test]
    fn percentiles_are_read_in_milliseconds() {
        let report = sample();
        let p = report.latency;
        assert_eq!(p.count, 1_000);
        assert!((p.p50_ms - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p99_ms - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.01, "{p:?}");
        assert_eq!(
            Percentiles::of(&crate::record::fine()),
            Percentiles::default()
        );
    }

    #[test]
    fn the_text_shows_the_percentiles_kinds_and_result() {
        let report = sample();
        let text = report.to_string();
        let p = report.latency;
        for needle in [
            "open loop at 200/s".to_owned(),
            format!("p50 {}", ms(p.p50_ms)),
            format!("p90 {}", ms(p.p90_ms)),
            format!("p99 {}", ms(p.p99_ms)),
            format!("p99.9 {}", ms(p.p999_ms)),
            format!("max {}", ms(p.max_ms)),
        ] {
            assert!(text.contains(&needle), "{needle:?} missing from:\n{text}");
        }
        assert!(ms(p.p999_ms).starts_with("9.99"), "{p:?}");
        for needle in [
            "forged",
            "bad_signature 100",
            "errors: overloaded ×2",
            "mismatches: none",
            "warm-up: 100 requests",
            "result: OVERLOAD",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        // One line per second.
        assert_eq!(
            text.lines()
                .filter(|l| l.trim_start().starts_with("3 "))
                .count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn the_json_round_trips_and_has_every_field() {
        let report = sample();
        let json = report.to_json();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for field in [
            "harness",
            "target",
            "mode",
            "connections",
            "generator_threads",
            "target_rate",
            "mix",
            "body",
            "preparation",
            "planned",
            "completed",
            "unsent",
            "reconnects",
            "seconds",
            "throughput",
            "ended_by",
            "latency",
            "service",
            "sent_late",
            "totals",
            "kinds",
            "mismatches",
            "errors",
            "timeline",
            "warmup",
            "allow_overload",
            "outcome",
            "failures",
        ] {
            assert!(value.get(field).is_some(), "{field} missing");
        }
        for field in [
            "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "count",
        ] {
            assert!(
                value["latency"].get(field).is_some(),
                "latency.{field} missing"
            );
        }
        assert_eq!(value["outcome"], "overload");
        assert_eq!(value["timeline"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn the_outcome_follows_the_totals() {
        let mut report = sample();
        assert_eq!(report.outcome, Outcome::Overload);
        assert_eq!(report.outcome.exit_code(), 3);
        report.allow_overload = true;
        report.judge(0);
        assert_eq!(report.outcome, Outcome::Pass);
        assert!(report.failures.is_empty());

        report.allow_overload = false;
        report.judge(2);
        assert_eq!(report.outcome, Outcome::Pass, "overloads past the knee");

        report.totals.mismatched = 1;
        report.judge(0);
        assert_eq!(report.outcome, Outcome::Fail);
        assert_eq!(report.outcome.exit_code(), 1);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);

        report.totals.mismatched = 0;
        report.totals.transport = 1;
        report.allow_overload = true;
        report.judge(0);
        assert_eq!(report.outcome, Outcome::Fail);

        // Wrong answers during the warm-up fail the run too.
        report.totals.transport = 0;
        report.judge(0);
        assert_eq!(report.outcome, Outcome::Pass);
        report.warmup.as_mut().unwrap().totals.mismatched = 1;
        report.judge(0);
        assert_eq!(report.outcome, Outcome::Fail);
    }
}
