//! What a phase measured. Each connection task records into its own histograms, without locks;
//! only when its answers move into the next second does it add the finished second to the
//! shared timeline, once a second per task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::config::MAX_TIMEOUT;
use crate::verdict::{Class, Expect, Observed, classify};

/// Latencies are recorded in microseconds, up to the longest timeout.
fn histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TIMEOUT.as_micros() as u64, significant_digits)
        .expect("constant bounds are valid")
}

/// Whole-run histograms: three significant digits (0.1%).
pub(crate) fn fine() -> Histogram<u64> {
    histogram(3)
}

/// Per-second histograms: two significant digits (1%) are enough for a chart, at a tenth of
/// the memory, which matters for a long run's timeline.
pub(crate) fn coarse() -> Histogram<u64> {
    histogram(2)
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().try_into().unwrap_or(u64::MAX)
}

/// Counts by how answers counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Classes {
    pub(crate) matched: u64,
    pub(crate) mismatched: u64,
    pub(crate) overloaded: u64,
    pub(crate) transport: u64,
}

impl Classes {
    fn count(&mut self, class: Class) {
        match class {
            Class::Match => self.matched += 1,
            Class::Mismatch => self.mismatched += 1,
            Class::Overload => self.overloaded += 1,
            Class::Transport => self.transport += 1,
        }
    }

    pub(crate) fn add(&mut self, other: &Classes) {
        self.matched += other.matched;
        self.mismatched += other.mismatched;
        self.overloaded += other.overloaded;
        self.transport += other.transport;
    }

    /// Requests that ended one way or another.
    pub(crate) fn total(&self) -> u64 {
        self.matched + self.mismatched + self.overloaded + self.transport
    }
}

/// One second of a phase: answers completed in it.
#[derive(Debug, Clone)]
pub(crate) struct Second {
    pub(crate) latency: Histogram<u64>,
    pub(crate) classes: Classes,
}

impl Second {
    fn new() -> Self {
        Self {
            latency: coarse(),
            classes: Classes::default(),
        }
    }

    fn add(&mut self, other: &Second) {
        self.latency
            .add(&other.latency)
            .expect("histograms with equal bounds add");
        self.classes.add(&other.classes);
    }
}

/// Counters the progress bar reads while the phase runs.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// One connection task's record of a phase.
#[derive(Debug)]
pub(crate) struct Recorder {
    start: Instant,
    /// From each request's due time (open loop) or send time (closed loop) to its answer.
    latency: Histogram<u64>,
    /// From actually sending to the answer: the node's time plus the network's.
    service: Histogram<u64>,
    /// From the due time to actually sending: the generator's own lateness (its timer's
    /// granularity, or a connection still busy with an earlier request).
    lateness: Histogram<u64>,
    second: u64,
    current: Second,
    timeline: Arc<Mutex<Vec<Second>>>,
    live: Arc<Live>,
    answers: HashMap<(Expect, Observed), u64>,
    classes: Classes,
    last_answer: Duration,
    /// Requests due that were never sent: the connection fell too far behind.
    pub(crate) unsent: u64,
    /// Connections the node closed between requests, replaced before the next.
    pub(crate) reconnects: u64,
}

impl Recorder {
    /// A recorder whose phase starts now; [`begin`](Self::begin) sets the actual start.
    pub(crate) fn new(timeline: Arc<Mutex<Vec<Second>>>, live: Arc<Live>) -> Self {
        Self {
            start: Instant::now(),
            latency: fine(),
            service: fine(),
            lateness: fine(),
            second: 0,
            current: Second::new(),
            timeline,
            live,
            answers: HashMap::new(),
            classes: Classes::default(),
            last_answer: Duration::ZERO,
            unsent: 0,
            reconnects: 0,
        }
    }

    /// Sets when the phase started: the origin of its seconds.
    pub(crate) fn begin(&mut self, start: Instant) {
        self.start = start;
    }

    /// Records one request's end. `due` is when it should have been sent, `sent` when it was,
    /// `done` when its answer (or failure) came. Latency is recorded for every answer, whatever
    /// it said, but not for requests that got none.
    pub(crate) fn record(
        &mut self,
        expect: Expect,
        observed: Observed,
        due: Instant,
        sent: Instant,
        done: Instant,
    ) {
        let class = classify(expect, &observed);
        let at = done.saturating_duration_since(self.start);
        let second = at.as_secs();
        if second != self.second {
            self.flush();
            self.second = second;
        }
        if class != Class::Transport {
            let latency = micros(done.saturating_duration_since(due));
            self.latency.saturating_record(latency);
            self.current.latency.saturating_record(latency);
            self.service
                .saturating_record(micros(done.saturating_duration_since(sent)));
        }
        self.lateness
            .saturating_record(micros(sent.saturating_duration_since(due)));
        self.current.classes.count(class);
        self.classes.count(class);
        self.last_answer = self.last_answer.max(at);
        *self.answers.entry((expect, observed)).or_insert(0) += 1;
        self.live.done.fetch_add(1, Ordering::Relaxed);
        if class != Class::Match {
            self.live.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&mut self) {
        if self.current.classes.total() == 0 {
            return;
        }
        let index = self.second as usize;
        let mut timeline = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        if timeline.len() <= index {
            timeline.resize_with(index + 1, Second::new);
        }
        timeline[index].add(&self.current);
        drop(timeline);
        self.current = Second::new();
    }

    /// Ends the task's record, moving its last second to the timeline.
    pub(crate) fn finish(mut self) -> Tally {
        self.flush();
        Tally {
            latency: self.latency,
            service: self.service,
            lateness: self.lateness,
            answers: self.answers,
            classes: self.classes,
            last_answer: self.last_answer,
            unsent: self.unsent,
            reconnects: self.reconnects,
        }
    }
}

/// A phase's record, all connections together.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) latency: Histogram<u64>,
    pub(crate) service: Histogram<u64>,
    pub(crate) lateness: Histogram<u64>,
    pub(crate) answers: HashMap<(Expect, Observed), u64>,
    pub(crate) classes: Classes,
    /// When the last answer came, after the phase's start.
    pub(crate) last_answer: Duration,
    pub(crate) unsent: u64,
    pub(crate) reconnects: u64,
}

impl Tally {
    pub(crate) fn empty() -> Self {
        Self {
            latency: fine(),
            service: fine(),
            lateness: fine(),
            answers: HashMap::new(),
            classes: Classes::default(),
            last_answer: Duration::ZERO,
            unsent: 0,
            reconnects: 0,
        }
    }

    pub(crate) fn add(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms with equal bounds add");
        self.service
            .add(&other.service)
            .expect("histograms with equal bounds add");
        self.lateness
            .add(&other.lateness)
            .expect("histograms with equal bounds add");
        for (key, count) in &other.answers {
            *self.answers.entry(key.clone()).or_insert(0) += count;
        }
        self.classes.add(&other.classes);
        self.last_answer = self.last_answer.max(other.last_answer);
        self.unsent += other.unsent;
        self.reconnects += other.reconnects;
    }
}

#[cfg(test)]
mod tests {
    use cyberid_engine::Reason;

    use super::*;
    use crate::Kind;
    use crate::verdict::TransportError;

    #[test]
    fn answers_land_in_their_second_and_class() {
        let start = Instant::now();
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let live = Arc::new(Live::default());
        let mut recorder = Recorder::new(timeline.clone(), live.clone());
        recorder.begin(start);
        let at = |millis: u64| start + Duration::from_millis(millis);
        let valid = Expect::Verdict(Kind::Valid);
        // Due at 0, sent late at 5 ms, answered at 7 ms: 7 ms latency, 2 ms service.
        recorder.record(valid, Observed::Valid, at(0), at(5), at(7));
        recorder.record(
            valid,
            Observed::Invalid(Reason::Replayed),
            at(900),
            at(900),
            at(1_200),
        );
        recorder.record(
            valid,
            Observed::Transport(TransportError::Timeout),
            at(2_000),
            at(2_000),
            at(2_500),
        );
        recorder.record(valid, Observed::Overloaded, at(2_600), at(2_600), at(2_601));
        assert_eq!(live.done.load(Ordering::Relaxed), 4);
        assert_eq!(live.failed.load(Ordering::Relaxed), 3);
        let tally = recorder.finish();

        assert_eq!(tally.latency.len(), 3, "no latency without an answer");
        assert!(tally.latency.equivalent(tally.latency.max(), 300_000));
        assert!(tally.service.equivalent(tally.service.min(), 1_000));
        // Sent 5 ms after it was due; the others on time.
        assert_eq!(tally.lateness.len(), 4);
        assert!(tally.lateness.equivalent(tally.lateness.max(), 5_000));
        assert_eq!(
            tally.classes,
            Classes {
                matched: 1,
                mismatched: 1,
                overloaded: 1,
                transport: 1
            }
        );
        assert_eq!(tally.answers[&(valid, Observed::Valid)], 1);
        assert_eq!(tally.last_answer, Duration::from_millis(2_601));

        let timeline = timeline.lock().unwrap();
        assert_eq!(timeline.len(), 3);
        assert_eq!(timeline[0].classes.matched, 1);
        assert_eq!(timeline[1].classes.mismatched, 1);
        assert_eq!(timeline[2].classes.transport, 1);
        assert_eq!(timeline[2].classes.overloaded, 1);
        assert_eq!(timeline[2].latency.len(), 1);
    }

    #[test]
    fn tallies_add_up() {
        let mut total = Tally::empty();
        let mut one = Tally::empty();
        one.latency.saturating_record(1_000);
        one.classes.matched = 1;
        one.answers
            .insert((Expect::Any, Observed::Answered(200)), 1);
        one.last_answer = Duration::from_secs(3);
        total.add(&one);
        total.add(&one);
        assert_eq!(total.latency.len(), 2);
        assert_eq!(total.classes.matched, 2);
        assert_eq!(total.answers[&(Expect::Any, Observed::Answered(200))], 2);
        assert_eq!(total.last_answer, Duration::from_secs(3));
    }
}
