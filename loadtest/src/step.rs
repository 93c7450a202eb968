//! Step mode: open-loop steps of rising rate until the node stops keeping up, and the knee: the
//! highest rate at which it still did.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The settings of a step run.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct StepPlan {
    /// The first step's rate, requests per second.
    pub start: f64,
    /// How much each step adds, requests per second.
    pub increment: f64,
    /// How long each step lasts.
    pub step: Duration,
    /// No step beyond this rate; unbounded when `None` (the run's duration still bounds it).
    pub max_rate: Option<f64>,
    /// A step passes only if its p99 latency is at most this.
    pub p99_bound: Duration,
    /// A step passes only if it achieved at least this fraction of its rate in answers as
    /// expected.
    pub min_achieved: f64,
}

impl Default for StepPlan {
    fn default() -> Self {
        Self {
            start: 1_000.0,
            increment: 1_000.0,
            step: Duration::from_secs(5),
            max_rate: None,
            p99_bound: Duration::from_millis(10),
            min_achieved: 0.95,
        }
    }
}

impl StepPlan {
    /// Refuses settings that cannot make a run.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{name} must be positive, not {value}"
                )))
            }
        };
        positive("the step start rate", self.start)?;
        positive("the step increment", self.increment)?;
        positive("the step duration", self.step.as_secs_f64())?;
        positive("the p99 bound", self.p99_bound.as_secs_f64())?;
        if self.min_achieved.is_nan() || self.min_achieved <= 0.0 || self.min_achieved > 1.0 {
            return Err(Error::Config(format!(
                "the achieved fraction must be in (0, 1], not {}",
                self.min_achieved
            )));
        }
        if let Some(max) = self.max_rate
            && (max.is_nan() || max < self.start)
        {
            return Err(Error::Config(format!(
                "the step maximum rate {max} is below the start rate {}",
                self.start
            )));
        }
        Ok(())
    }

    /// The rates of the steps that fit in `total`: `start + k·increment`, up to the maximum
    /// rate. The run stops earlier, at the first step that fails.
    pub fn rates(&self, total: Duration) -> Vec<f64> {
        let steps = (total.as_secs_f64() / self.step.as_secs_f64() + 1e-9).floor() as u64;
        (0..steps)
            .map(|k| self.start + k as f64 * self.increment)
            .take_while(|rate| self.max_rate.is_none_or(|max| *rate <= max + 1e-9))
            .collect()
    }

    /// Whether a step kept up; if not, why.
    pub fn judge(&self, step: &StepReport) -> Result<(), String> {
        let bound_ms = self.p99_bound.as_secs_f64() * 1e3;
        if step.mismatched > 0 {
            return Err(format!("{} wrong answers", step.mismatched));
        }
        if step.overloaded > 0 {
            return Err(format!("{} answers shed load (503/429)", step.overloaded));
        }
        if step.transport > 0 {
            return Err(format!("{} requests got no answer", step.transport));
        }
        if step.p99_ms > bound_ms {
            return Err(format!("p99 {:.3} ms > {bound_ms} ms", step.p99_ms));
        }
        if step.achieved < self.min_achieved * step.rate {
            return Err(format!(
                "achieved {:.0}/s < {:.0}% of {:.0}/s",
                step.achieved,
                self.min_achieved * 100.0,
                step.rate
            ));
        }
        Ok(())
    }
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepReport {
    /// The rate asked for, requests per second.
    pub rate: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests due in the step but never sent: the connections fell too far behind.
    pub unsent: u64,
    /// Answers as expected per second, over the step's length or until its last answer,
    /// whichever is longer.
    pub achieved: f64,
    /// Median latency from each request's due time, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Highest latency, milliseconds.
    pub max_ms: f64,
    /// Wrong verdicts and unexpected HTTP answers.
    pub mismatched: u64,
    /// 503 `overloaded` and 429 answers.
    pub overloaded: u64,
    /// Requests without an answer.
    pub transport: u64,
    /// Whether the step kept up.
    pub passed: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// The knee of a step run: the step with the highest rate that passed before the first one that
/// failed. `None` when the first step already failed.
pub fn knee(steps: &[StepReport]) -> Option<usize> {
    let passed = steps.iter().take_while(|step| step.passed).count();
    passed.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, achieved: f64, p99_ms: f64) -> StepReport {
        StepReport {
            rate,
            sent: rate as u64,
            unsent: 0,
            achieved,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms * 2.0,
            mismatched: 0,
            overloaded: 0,
            transport: 0,
            passed: false,
            failure: None,
        }
    }

    fn judged(plan: &StepPlan, mut steps: Vec<StepReport>) -> Vec<StepReport> {
        for step in &mut steps {
            let verdict = plan.judge(step);
            step.passed = verdict.is_ok();
            step.failure = verdict.err();
        }
        steps
    }

    #[test]
    fn the_rates_rise_within_the_time_and_the_maximum() {
        let plan = StepPlan {
            start: 500.0,
            increment: 250.0,
            step: Duration::from_secs(2),
            ..StepPlan::default()
        };
        assert_eq!(
            plan.rates(Duration::from_secs(9)),
            [500.0, 750.0, 1_000.0, 1_250.0]
        );
        assert_eq!(plan.rates(Duration::from_secs(1)), Vec::<f64>::new());
        let capped = StepPlan {
            max_rate: Some(1_000.0),
            ..plan
        };
        assert_eq!(
            capped.rates(Duration::from_secs(60)),
            [500.0, 750.0, 1_000.0]
        );
    }

    #[test]
    fn a_step_fails_on_latency_throughput_shedding_or_wrong_answers() {
        let plan = StepPlan::default();
        assert_eq!(plan.judge(&step(1_000.0, 990.0, 2.0)), Ok(()));
        assert_eq!(plan.judge(&step(1_000.0, 950.0, 10.0)), Ok(()));
        let slow = plan.judge(&step(1_000.0, 1_000.0, 10.5)).unwrap_err();
        assert!(slow.contains("p99"), "{slow}");
        let behind = plan.judge(&step(1_000.0, 949.0, 1.0)).unwrap_err();
        assert!(behind.contains("achieved"), "{behind}");
        let mut shed = step(1_000.0, 1_000.0, 1.0);
        shed.overloaded = 1;
        assert!(plan.judge(&shed).unwrap_err().contains("shed"));
        let mut silent = step(1_000.0, 1_000.0, 1.0);
        silent.transport = 2;
        assert!(plan.judge(&silent).unwrap_err().contains("no answer"));
        let mut wrong = step(1_000.0, 1_000.0, 1.0);
        wrong.mismatched = 1;
        assert!(plan.judge(&wrong).unwrap_err().contains("wrong"));
    }

    #[test]
    fn the_knee_is_the_last_step_passed_before_the_first_failure() {
        let plan = StepPlan::default();
        let steps = judged(
            &plan,
            vec![
                step(1_000.0, 1_000.0, 1.0),
                step(2_000.0, 1_990.0, 3.0),
                step(3_000.0, 2_990.0, 9.0),
                step(4_000.0, 3_400.0, 40.0),
                // A later step that happens to pass does not move the knee past a failure.
                step(5_000.0, 5_000.0, 1.0),
            ],
        );
        assert_eq!(knee(&steps), Some(2));
        assert_eq!(steps[2].rate, 3_000.0);
        assert!(steps[3].failure.as_deref().unwrap().contains("p99"));
    }

    #[test]
    fn no_knee_when_the_first_step_fails_and_the_last_when_none_does() {
        let plan = StepPlan::default();
        let failing = judged(&plan, vec![step(1_000.0, 500.0, 50.0)]);
        assert_eq!(knee(&failing), None);
        let all = judged(
            &plan,
            vec![step(1_000.0, 1_000.0, 1.0), step(2_000.0, 2_000.0, 1.0)],
        );
        assert_eq!(knee(&all), Some(1));
        assert_eq!(knee(&[]), None);
    }

    #[test]
    fn impossible_plans_are_refused() {
        let bad = [
            StepPlan {
                start: 0.0,
                ..StepPlan::default()
            },
            StepPlan {
                increment: -1.0,
                ..StepPlan::default()
            },
            StepPlan {
                step: Duration::ZERO,
                ..StepPlan::default()
            },
            StepPlan {
                min_achieved: 1.5,
                ..StepPlan::default()
            },
            StepPlan {
                max_rate: Some(10.0),
                ..StepPlan::default()
            },
        ];
        for plan in bad {
            assert_eq!(plan.validate().unwrap_err().code(), "config", "{plan:?}");
        }
        StepPlan::default().validate().unwrap();
    }
}
