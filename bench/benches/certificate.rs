//! Issue and verify one certificate.
//!
//! `verify/full` is the whole verification of a fresh certificate (decode, checks, SM2
//! signature, revocation lookup, nonce insert): each iteration needs an unused certificate, so
//! certificates are issued in the untimed setup. `verify/signed_checks` repeats the stateless
//! part (everything up to and including the signature) on one certificate.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use cyberid_bench::{NOW, issuer_and_verifier};
use cyberid_engine::{Certificate, Context, Input, IssueRequest, WebNumber};

fn certificate(c: &mut Criterion) {
    let (issuer, verifier) = issuer_and_verifier();
    let request = IssueRequest::new(WebNumber::generate().expect("rng"));
    let context = Context {
        platform: Some("shop.example".parse().expect("valid id")),
        now: NOW,
        request: None,
        disclose: cyberid_engine::Attributes::NONE,
    };

    let mut group = c.benchmark_group("certificate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("issue", |b| {
        b.iter(|| {
            issuer
                .issue(black_box(&request), black_box(NOW))
                .expect("issue")
        })
    });

    let one = issuer.issue(&request, NOW).expect("issue");
    let text = one.to_text();
    group.bench_function("verify/signed_checks", |b| {
        b.iter(|| {
            let checked = verifier.check_signed(Input::Text(black_box(&text)), &context);
            assert!(checked.is_ok());
        })
    });
    group.bench_function("verify/full", |b| {
        b.iter_batched(
            || issuer.issue(&request, NOW).expect("issue").to_text(),
            |text| {
                let verdict = verifier
                    .verify(Input::Text(&text), &context)
                    .expect("store");
                assert!(verdict.is_valid());
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decode_text", |b| {
        b.iter(|| Certificate::from_text(black_box(&text)).expect("decodes"))
    });
    group.finish();
}

criterion_group!(benches, certificate);
criterion_main!(benches);
