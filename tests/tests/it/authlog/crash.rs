//! SIGKILL under load keeps every entry of every acknowledged verdict, and `cyberid log
//! verify` finds a log whose entries were rewritten or cut short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cyberid_engine::{Clock, IssueRequest, SystemClock, WebNumber};
use cyberid_tests::node::{SHOP, prepare};
use cyberid_tests::process::{KillOnDrop, serve, signal, wait_ready};

use super::rfc9162;

const BINARY: &str = env!("CARGO_BIN_EXE_cyberid_node");

/// `cyberid log verify` with `args`: whether it passed, and what it printed.
fn log_verify(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(BINARY)
        .args(["log", "verify"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_every_acknowledged_entry_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(dir.path());
    let (child, address) = serve(BINARY, dir.path(), &[]);
    let mut child = KillOnDrop(child);
    wait_ready(address).await;

    // Four connections verify fresh certificates until the node dies under them.
    let receipts: Arc<Mutex<Vec<(u64, rfc9162::H, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (receipts, stop, issuer, key) = (
            receipts.clone(),
            stop.clone(),
            prepared.issuer.clone(),
            prepared.shop_key.clone(),
        );
        workers.push(tokio::spawn(async move {
            let Ok(mut client) = cyberid::Client::connect(address).await else {
                return;
            };
            while !stop.load(Ordering::Relaxed) {
                let mut request = IssueRequest::new(WebNumber::generate().unwrap());
                request.audience = Some(SHOP.parse().unwrap());
                let certificate = issuer.issue(&request, SystemClock.now()).unwrap();
                let id = certificate.fields().certificate_id.to_string();
                let text = certificate.to_text();
                let answer = client
                    .call(
                        hyper::Method::POST,
                        "/v1/verify",
                        Some(&key),
                        Some(serde_json::json!({ "certificate": text })),
                    )
                    .await;
                let Ok((status, body)) = answer else { return };
                if status == 200 && body["verdict"] == "valid" {
                    let receipt = &body["receipt"];
                    receipts.lock().unwrap().push((
                        receipt["log_index"].as_u64().unwrap(),
                        super::h(&receipt["commitment"]),
                        id,
                    ));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&mut child.0, "KILL");
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let receipts = receipts.lock().unwrap().clone();
    assert!(receipts.len() >= 50, "only {} acknowledged", receipts.len());

    // After restart, every acknowledged answer's leaf is where its receipt says.
    let (restarted, address) = serve(BINARY, dir.path(), &[]);
    let mut child = KillOnDrop(restarted);
    let mut client = wait_ready(address).await;
    let mut leaves = Vec::new();
    loop {
        let (status, body) = client
            .call(
                hyper::Method::GET,
                &format!("/v1/log/leaves?from={}", leaves.len()),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let page = super::hashes(&body["leaves"]);
        if page.is_empty() {
            break;
        }
        leaves.extend(page);
    }
    for (index, commitment, _) in &receipts {
        assert_eq!(
            leaves.get(*index as usize),
            Some(&rfc9162::leaf(commitment)),
            "the acknowledged entry {index} is in the log after SIGKILL"
        );
    }
    // And found by its certificate: the index rows the crash may have lost (they are written
    // after the entries, unsynced) were written again at open.
    for (index, _, id) in receipts.iter().rev().take(20) {
        let (status, answer) = client
            .call(
                hyper::Method::POST,
                "/v1/admin/log/query",
                Some(&prepared.authority_key),
                Some(serde_json::json!({ "certificate_id": id, "case_reference": "crash test" })),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
        let found: Vec<u64> = answer["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["kind"] == "verification")
            .map(|entry| entry["log_index"].as_u64().unwrap())
            .collect();
        assert_eq!(found, vec![*index], "{answer}");
    }
    // Those queries were appended as access records: a head that covers them, before the
    // offline checks below cut the last run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // An auditor online, twice: the second run checks the log only grew.
    let state = dir.path().join("auditor-state");
    let url = address.to_string();
    let online = ["--url", &url, "--state", state.to_str().unwrap()];
    let (passed, text) = log_verify(&online);
    assert!(passed && text.contains("log verified"), "{text}");
    let (passed, text) = log_verify(&online);
    assert!(
        passed && text.contains("consistent with the head"),
        "{text}"
    );
    signal(&mut child.0, "TERM");

    // Offline, the stopped node's store checks out whole...
    let data_dir = dir.path().to_str().unwrap();
    let (passed, text) = log_verify(&["--data-dir", data_dir]);
    assert!(passed, "{text}");

    // ...until an entry is rewritten (a `replayed` made `valid`, say)...
    let store = dir.path().join("store");
    let edit = |change: &dyn Fn(&rocksdb::DB)| {
        let options = rocksdb::Options::default();
        let families = rocksdb::DB::list_cf(&options, &store).unwrap();
        let db = rocksdb::DB::open_cf(&options, &store, &families).unwrap();
        change(&db);
    };
    let original = std::cell::RefCell::new(Vec::new());
    edit(&|db| {
        let entries = db.cf_handle("log_entries").unwrap();
        let mut value = db.get_cf(&entries, 0u64.to_be_bytes()).unwrap().unwrap();
        *original.borrow_mut() = value.clone();
        // The first run's first record: secret (16), length (2), then the entry, whose
        // outcome is its byte 52.
        value[16 + 2 + 52] ^= 2;
        db.put_cf(&entries, 0u64.to_be_bytes(), value).unwrap();
    });
    let (passed, text) = log_verify(&["--data-dir", data_dir]);
    assert!(!passed && text.contains("entry 0"), "{text}");
    edit(&|db| {
        let entries = db.cf_handle("log_entries").unwrap();
        db.put_cf(&entries, 0u64.to_be_bytes(), &*original.borrow())
            .unwrap();
    });
    assert!(log_verify(&["--data-dir", data_dir]).0);

    // ...or cut short: the last batch's entries gone, the signed heads that covered them not.
    edit(&|db| {
        for family in ["log_tree", "log_entries"] {
            let handle = db.cf_handle(family).unwrap();
            let (last, _) = db
                .iterator_cf(&handle, rocksdb::IteratorMode::End)
                .next()
                .unwrap()
                .unwrap();
            db.delete_cf(&handle, last).unwrap();
        }
    });
    let (passed, text) = log_verify(&["--data-dir", data_dir]);
    assert!(!passed && text.contains("larger than the log"), "{text}");
}
