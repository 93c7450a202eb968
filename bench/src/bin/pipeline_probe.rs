//! Where the pipeline's time goes: pushes waves of distinct certificates through it and prints
//! the batch sizes it formed, the time spent checking signatures and the wall time.
//!
//! `cargo run --release -p cyberid-bench --bin pipeline_probe -- [threads] [waves] [in_flight]`

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cyberid_bench::{issue_waves, issuer_and_verifier, verify_wave};
use cyberid_engine::{Observer, Pipeline, PipelineConfig};

#[derive(Default)]
struct Batches(Mutex<Vec<(usize, Duration)>>);

impl Observer for Batches {
    fn batch_checked(&self, size: usize, took: Duration) {
        self.0.lock().expect("lock").push((size, took));
    }
    fn store_synced(&self, _took: Duration) {}
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("number"));
    let threads = args.next().unwrap_or(2);
    let waves = args.next().unwrap_or(40);
    let in_flight = args.next().unwrap_or(512);
    let (issuer, verifier) = issuer_and_verifier();
    let texts = issue_waves(&issuer, waves, in_flight);
    let batches = Arc::new(Batches::default());
    let pipeline = Pipeline::start_observed(
        Arc::new(verifier),
        PipelineConfig {
            threads,
            ..PipelineConfig::default()
        },
        Some(batches.clone()),
    )
    .expect("pipeline");
    let start = Instant::now();
    for wave in texts {
        verify_wave(&pipeline, wave);
    }
    let wall = start.elapsed();
    let batches = batches.0.lock().expect("lock");
    let checking: Duration = batches.iter().map(|(_, took)| *took).sum();
    let requests = waves * in_flight;
    let mut sizes: Vec<usize> = batches.iter().map(|(size, _)| *size).collect();
    sizes.sort_unstable();
    println!(
        "threads {threads}: {requests} requests in {wall:?} = {:.0}/s; {} batches (sizes p10 {} p50 {} p90 {}); checking {checking:?} ({:.0}% of wall, {:.1} µs/request)",
        requests as f64 / wall.as_secs_f64(),
        batches.len(),
        sizes[sizes.len() / 10],
        sizes[sizes.len() / 2],
        sizes[sizes.len() * 9 / 10],
        100.0 * checking.as_secs_f64() / wall.as_secs_f64(),
        checking.as_secs_f64() * 1e6 / requests as f64,
    );
}
