//! The open-loop schedule, after wrk2: request i of the run is due at `start + i / rate`, and
//! its latency is measured from that moment, not from when it was actually sent. A node that
//! stalls therefore shows the stall in the latency of every request that should have gone out
//! meanwhile, instead of the generator politely waiting (coordinated omission).

use std::time::Duration;

use crate::Error;

/// When each request of an open-loop run is due, and which connection sends it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    connections: usize,
}

impl Schedule {
    /// `rate` requests per second over `connections` connections.
    pub fn new(rate: f64, connections: usize) -> Result<Self, Error> {
        if !rate.is_finite() || rate <= 0.0 {
            return Err(Error::Config(format!(
                "the rate must be a positive number of requests per second, not {rate}"
            )));
        }
        if connections == 0 {
            return Err(Error::Config("at least one connection is needed".into()));
        }
        Ok(Self { rate, connections })
    }

    /// Requests per second, all connections together.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Requests per second of one connection: `rate / connections`.
    pub fn per_connection_rate(&self) -> f64 {
        self.rate / self.connections as f64
    }

    /// When request `index` (counted over the whole run) is due, after the start. Connection
    /// `c` sends requests `c, c + N, c + 2N, ...`, so its k-th request is due at
    /// `(c + k·N) / rate`: each connection runs at `rate / N`, and the connections are
    /// staggered by `1 / rate` so that together they send at an even pace, not in bursts of N.
    pub fn due(&self, index: u64) -> Duration {
        // Whole nanoseconds, rounded: a float's seconds truncated to nanoseconds would put
        // request 9 at 1 kHz at 8.999999 ms.
        Duration::from_nanos((index as f64 * 1e9 / self.rate).round() as u64)
    }

    /// The requests connection `connection` sends, out of `total`.
    pub fn requests_of(&self, connection: usize, total: u64) -> impl Iterator<Item = u64> {
        (connection as u64..total).step_by(self.connections)
    }

    /// How many of `requests_of(connection, total)` come at or after `index`: what is left
    /// unsent when the connection stops there.
    pub fn remaining_from(&self, index: u64, total: u64) -> u64 {
        if index >= total {
            0
        } else {
            (total - 1 - index) / self.connections as u64 + 1
        }
    }

    /// How many requests are due within `duration` of the start: those with `i / rate <
    /// duration`. A product within a nanosecond's worth of a whole number counts as that number,
    /// so that 300 requests per second for one second is 300, not 301.
    pub fn requests_within(&self, duration: Duration) -> u64 {
        let exact = self.rate * duration.as_secs_f64();
        let nearest = exact.round();
        if (exact - nearest).abs() < self.rate * 1e-9 {
            nearest as u64
        } else {
            exact.ceil() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_due_evenly_at_the_rate() {
        let schedule = Schedule::new(1_000.0, 4).unwrap();
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_millis(1));
        assert_eq!(schedule.due(2_500), Duration::from_millis(2_500));
        assert_eq!(schedule.per_connection_rate(), 250.0);
    }

    #[test]
    fn each_connection_runs_at_its_share_staggered_from_the_others() {
        let schedule = Schedule::new(1_000.0, 4).unwrap();
        let mine: Vec<u64> = schedule.requests_of(1, 14).collect();
        assert_eq!(mine, [1, 5, 9, 13]);
        // One connection's requests are N / rate apart: its rate is rate / N.
        for pair in mine.windows(2) {
            assert_eq!(
                schedule.due(pair[1]) - schedule.due(pair[0]),
                Duration::from_millis(4)
            );
        }
        // Neighbouring connections are 1 / rate apart.
        assert_eq!(
            schedule.due(schedule.requests_of(2, 14).next().unwrap())
                - schedule.due(schedule.requests_of(1, 14).next().unwrap()),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn the_connections_together_send_every_request_exactly_once() {
        for connections in [1usize, 3, 7, 16] {
            let schedule = Schedule::new(123.0, connections).unwrap();
            let mut all: Vec<u64> = (0..connections)
                .flat_map(|c| schedule.requests_of(c, 100))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..100).collect::<Vec<_>>(), "{connections}");
            for c in 0..connections {
                let mine: Vec<u64> = schedule.requests_of(c, 100).collect();
                for (k, index) in mine.iter().enumerate() {
                    assert_eq!(
                        schedule.remaining_from(*index, 100),
                        (mine.len() - k) as u64
                    );
                }
            }
        }
        assert_eq!(Schedule::new(1.0, 4).unwrap().remaining_from(100, 100), 0);
    }

    #[test]
    fn the_count_within_a_duration_is_exact() {
        let schedule = Schedule::new(300.0, 2).unwrap();
        assert_eq!(schedule.requests_within(Duration::from_secs(1)), 300);
        assert_eq!(schedule.requests_within(Duration::from_millis(100)), 30);
        assert_eq!(schedule.requests_within(Duration::from_millis(101)), 31);
        let third = Schedule::new(1_000.0 / 3.0, 1).unwrap();
        assert_eq!(third.requests_within(Duration::from_secs(3)), 1_000);
        assert_eq!(schedule.requests_within(Duration::ZERO), 0);
    }

    #[test]
    fn nonsense_rates_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Schedule::new(rate, 1).unwrap_err().code(), "config");
        }
        assert_eq!(Schedule::new(1.0, 0).unwrap_err().code(), "config");
    }
}
