//! SM2 verification: the fast path (prepared issuer key) against the general path (the
//! RustCrypto sm2 crate), batches on 1 and 2 threads, and the whole pipeline.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cyberid_bench::{NOW, issue_waves, issuer_and_verifier, verify_wave};
use cyberid_engine::{
    Context, Input, IssueRequest, IssuerPublicKey, Pipeline, PipelineConfig, WebNumber,
};
use rayon::prelude::*;

fn single(c: &mut Criterion) {
    let (issuer, _) = issuer_and_verifier();
    let certificate = issuer
        .issue(&IssueRequest::new(WebNumber::generate().expect("rng")), NOW)
        .expect("issue");
    let message = &certificate.as_bytes()[..63];
    let signature: [u8; 64] = certificate.as_bytes()[63..].try_into().expect("64 bytes");
    let key = issuer.key().public_key().clone();
    key.prepare();

    let mut group = c.benchmark_group("sm2/verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("fast_path", |b| {
        b.iter(|| assert!(key.verify(black_box(message), black_box(&signature))))
    });
    group.bench_function("general_path_sm2_crate", |b| {
        b.iter(|| assert!(key.verify_general(black_box(message), black_box(&signature))))
    });
    group.finish();

    let sec1 = key.to_sec1_bytes();
    let mut group = c.benchmark_group("sm2/prepare_key");
    group.sample_size(10);
    group.bench_function("tables", |b| {
        b.iter(|| {
            IssuerPublicKey::from_sec1_bytes(&sec1)
                .expect("key")
                .prepare()
        })
    });
    group.finish();
}

fn batches(c: &mut Criterion) {
    let (issuer, verifier) = issuer_and_verifier();
    let texts: Vec<String> = (0..256)
        .map(|_| {
            issuer
                .issue(&IssueRequest::new(WebNumber::generate().expect("rng")), NOW)
                .expect("issue")
                .to_text()
        })
        .collect();
    let context = Context {
        platform: None,
        now: NOW,
        request: None,
        disclose: cyberid_engine::Attributes::NONE,
    };
    let mut group = c.benchmark_group("sm2/batch_signed_checks");
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        for size in [1usize, 16, 64, 256] {
            group.throughput(Throughput::Elements(size as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{threads}_threads"), size),
                &size,
                |b, &size| {
                    b.iter(|| {
                        pool.install(|| {
                            texts[..size].par_iter().for_each(|text| {
                                assert!(verifier.check_signed(Input::Text(text), &context).is_ok());
                            })
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("sm2/pipeline_end_to_end");
    group
        .sample_size(10)
        // Every measured second needs ~100k certificates issued untimed first.
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    let in_flight = 512usize;
    group.throughput(Throughput::Elements(in_flight as u64));
    for threads in [1usize, 2] {
        let (issuer, verifier) = issuer_and_verifier();
        let pipeline = Pipeline::start(
            Arc::new(verifier),
            PipelineConfig {
                threads,
                ..PipelineConfig::default()
            },
        )
        .expect("pipeline");
        group.bench_function(
            BenchmarkId::from_parameter(format!("{threads}_threads")),
            |b| {
                b.iter_custom(|iterations| {
                    // Fresh certificates every wave (their nonces are consumed), made untimed
                    // and in parallel before the sample. The waves then run back to back, as
                    // sustained traffic does: a pause for issuing between waves would let the
                    // pool fall asleep and the issuer's signing evict the comb tables from
                    // cache, and would measure that restart instead of the pipeline.
                    let waves = issue_waves(&issuer, iterations as usize, in_flight);
                    let start = Instant::now();
                    for wave in waves {
                        verify_wave(&pipeline, wave);
                    }
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, single, batches, pipeline);
criterion_main!(benches);
