//! How long a revocation acknowledged through one node takes to be refused by another: node A
//! suspends a Web Number (`apply` returns once the cluster committed it), node B looks the
//! holder up in a tight loop until it sees the suspension. Both on one 3-member cluster on
//! loopback, started here.
//!
//! ```sh
//! cargo run --release -p cyberid-store-etcd --features testing --example propagation -- 300
//! ```
//!
//! Argument: rounds (300), 20 ms apart. Node B's lookups are the ones a verification makes
//! (its local copy of the set), so the delay is what a platform would see, less the HTTP
//! round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cyberid_engine::{
    RevocationChange, RevocationRecord, RevocationSet, Standing, SystemClock, WebNumber,
};
use cyberid_store_etcd::EtcdStore;
use cyberid_store_etcd::testing::{Cluster, unique_name};
use hdrhistogram::Histogram;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(300), |a| a.parse())?;
    let cluster = Cluster::start()?;
    let options = cluster.options(&unique_name("propagation"));
    let a = EtcdStore::connect(options.clone(), Arc::new(SystemClock))?;
    let b = EtcdStore::connect(options, Arc::new(SystemClock))?;
    let mut delays = Histogram::<u64>::new(3)?;
    let mut acknowledged = Histogram::<u64>::new(3)?;
    for _ in 0..rounds {
        let holder = WebNumber::generate()?;
        let record = RevocationRecord {
            change: RevocationChange::WebNumber {
                web_number: holder,
                standing: Standing::Suspended,
            },
            reason: "propagation test".into(),
            authority: "ops".into(),
            at: cyberid_engine::Clock::now(&SystemClock),
        };
        let sent = Instant::now();
        a.apply(record)?;
        let applied = Instant::now();
        while b.standing(&holder) == Standing::Active {
            if sent.elapsed() > Duration::from_secs(5) {
                return Err("node B never saw the suspension".into());
            }
            std::hint::spin_loop();
        }
        // From the moment A's write was acknowledged: the window in which A refuses and B
        // would still answer `valid`.
        delays.record(applied.elapsed().as_micros() as u64)?;
        acknowledged.record((applied - sent).as_micros() as u64)?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "{rounds} suspensions: write acknowledged p50 {:.2} ms, p99 {:.2} ms; then refused by \
         the other node after p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(acknowledged.value_at_quantile(0.5)),
        ms(acknowledged.value_at_quantile(0.99)),
        ms(delays.value_at_quantile(0.5)),
        ms(delays.value_at_quantile(0.9)),
        ms(delays.value_at_quantile(0.99)),
        ms(delays.max()),
    );
    Ok(())
}
