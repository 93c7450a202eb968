//! The load harness against a real node (port 0, RocksDB in a temporary directory): short,
//! bounded runs whose every answer is checked.

use std::time::Duration;

use cyberid_loadtest::{Config, Kind, Mix, Mode, Outcome, Report, Source};
use cyberid_tests::node::{Node, READER, SHOP};

fn all_kinds() -> Mix {
    "valid=4,replayed=1,forged=1,expired=1,wrong-audience=1,revoked=1"
        .parse()
        .unwrap()
}

fn config(node: &Node, source: Source) -> Config {
    let mut config = Config::new(node.address, node.prepared.shop_key.clone(), source);
    config.authority_key = Some(node.prepared.authority_key.clone());
    config.connections = 4;
    config.pool = 16;
    config
}

/// Every kind was sent and got exactly its verdict, and nothing else went wrong.
fn assert_every_answer_as_required(report: &Report, kinds: &[Kind], requests: u64) {
    assert_eq!(report.outcome, Outcome::Pass, "{report}");
    assert_eq!(report.completed, requests, "{report}");
    assert_eq!(report.totals.matched, requests, "{report}");
    assert_eq!(report.totals.mismatched, 0, "{report}");
    assert_eq!(
        report.totals.overloaded + report.totals.transport,
        0,
        "{report}"
    );
    assert!(
        report.mismatches.is_empty() && report.errors.is_empty(),
        "{report}"
    );
    let sent: Vec<&str> = report.kinds.iter().map(|k| k.kind.as_str()).collect();
    assert_eq!(sent, kinds.iter().map(|k| k.name()).collect::<Vec<_>>());
    for kind in kinds {
        let got = report.kinds.iter().find(|k| k.kind == kind.name()).unwrap();
        assert!(got.sent > 0, "{kind}");
        assert_eq!(got.expected, kind.expected());
        assert_eq!(got.matched, got.sent, "{kind}: {:?}", got.answers);
        assert_eq!(
            got.answers.keys().collect::<Vec<_>>(),
            [kind.expected()],
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_with_every_kind_gets_every_verdict_and_a_full_report() {
    let mut node = Node::start(|_| {}).await;
    let mut config = config(&node, Source::DataDir(node.dir.path().to_path_buf()));
    config.mix = all_kinds();
    config.requests = Some(450);
    config.warmup = 20;
    let report = cyberid_loadtest::run(&config).await.unwrap();

    assert_every_answer_as_required(&report, &Kind::ALL, 450);
    assert_eq!(report.mode, "closed");
    assert_eq!(report.ended_by, "requests");
    assert_eq!(report.latency.count, 450);
    assert!(report.latency.p50_ms > 0.0 && report.latency.p50_ms <= report.latency.p99_ms);
    assert!(report.latency.p99_ms <= report.latency.max_ms);
    assert!(!report.timeline.is_empty());
    assert_eq!(
        report.timeline.iter().map(|s| s.completed).sum::<u64>(),
        450
    );
    let warmup = report.warmup.as_ref().unwrap();
    assert_eq!((warmup.requests, warmup.totals.matched), (20, 20));
    // valid are unique; the other five kinds reuse a pool of at most 16.
    assert_eq!(report.preparation.certificates, 200 + 5 * 16);

    let out = tempfile::tempdir().unwrap();
    let json_path = out.path().join("report.json");
    std::fs::write(&json_path, report.to_json()).unwrap();
    let json = std::fs::read_to_string(&json_path).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for field in [
        "latency",
        "service",
        "sent_late",
        "totals",
        "kinds",
        "timeline",
        "errors",
        "outcome",
    ] {
        assert!(value.get(field).is_some(), "{field} missing from the JSON");
    }
    assert_eq!(value["kinds"][2]["answers"]["bad_signature"], 50);

    let svg_path = out.path().join("chart.svg");
    std::fs::write(&svg_path, report.to_svg().unwrap()).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("p99.9") && svg.contains("answered"));
    assert!(report.to_string().contains("result: PASS"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_on_certificates_from_the_issue_endpoint_keeps_its_rate() {
    let mut node = Node::start(|config| config.issue_endpoint = true).await;
    let mut config = config(
        &node,
        Source::IssueEndpoint {
            api_key: node.prepared.shop_key.clone(),
        },
    );
    // Restricted to the caller, so that the node checks every genuine certificate's audience.
    config.platform = Some(SHOP.parse().unwrap());
    config.mix = "valid=5,replayed=1,forged=1,wrong-audience=1,revoked=1"
        .parse()
        .unwrap();
    config.mode = Mode::Open { rate: 300.0 };
    config.duration = Some(Duration::from_secs(1));
    let report = cyberid_loadtest::run(&config).await.unwrap();

    let kinds = [
        Kind::Valid,
        Kind::Replayed,
        Kind::Forged,
        Kind::WrongAudience,
        Kind::Revoked,
    ];
    assert_every_answer_as_required(&report, &kinds, 300);
    assert_eq!(report.target_rate, Some(300.0));
    assert_eq!(report.ended_by, "schedule");
    assert_eq!(report.unsent, 0);
    // The schedule spans a second; the answers end soon after its last request is due.
    assert!(
        report.seconds > 0.95 && report.seconds < 2.0,
        "{}",
        report.seconds
    );
    assert_eq!(report.preparation.source, "issue-endpoint");
    assert!(
        report.latency.p50_ms >= report.service.p50_ms,
        "latency from the due time includes the time from sending"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_verdict_fails_the_run() {
    let mut node = Node::start(|_| {}).await;
    let mut config = config(&node, Source::DataDir(node.dir.path().to_path_buf()));
    // Certificates for the reader platform, verified with the shop's key: wrong_audience.
    config.platform = Some(READER.parse().unwrap());
    config.requests = Some(30);
    let report = cyberid_loadtest::run(&config).await.unwrap();
    assert_eq!(report.outcome, Outcome::Fail);
    assert_eq!(report.outcome.exit_code(), 1);
    assert_eq!(report.totals.mismatched, 30);
    assert_eq!(
        report.mismatches["valid: expected valid, got wrong_audience"],
        30
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_load_fails_the_run_unless_allowed_but_is_no_mismatch() {
    let mut node = Node::start(|config| {
        config.queue_capacity = 1;
        config.max_batch = 1;
        config.verify_threads = 1;
    })
    .await;
    let mut config = config(&node, Source::DataDir(node.dir.path().to_path_buf()));
    config.connections = 40;
    config.requests = Some(400);
    let report = cyberid_loadtest::run(&config).await.unwrap();
    assert!(
        report.totals.overloaded > 0,
        "a one-slot queue under 40 connections never overflowed: {report}"
    );
    assert_eq!(report.errors["overloaded"], report.totals.overloaded);
    assert_eq!(report.totals.mismatched + report.totals.transport, 0);
    assert_eq!(report.outcome, Outcome::Overload);
    assert_eq!(report.outcome.exit_code(), 3);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_any_counts_answers_without_judging_them() {
    let mut node = Node::start(|_| {}).await;
    let mut config = Config::expect_any(node.address);
    config.api_key = Some(node.prepared.shop_key.clone());
    config.requests = Some(50);
    config.connections = 2;
    let report = cyberid_loadtest::run(&config).await.unwrap();
    assert_eq!(report.outcome, Outcome::Pass, "{report}");
    assert_eq!(report.kinds.len(), 1);
    // The fixed body is no certificate: the node answers `malformed`, which counts all the same.
    assert_eq!(report.kinds[0].kind, "any");
    assert_eq!(report.kinds[0].answers["http_200"], 50);
    node.shutdown().await;
}
