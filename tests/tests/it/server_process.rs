//! The `cyberid` binary as a process: graceful shutdown on SIGTERM, the demo, the management
//! commands.

use std::path::Path;
use std::process::{Child, Command};

use cyberid_engine::WebNumber;
use cyberid_tests::node::{self, verdict, verify};
use cyberid_tests::process::{self, wait_ready};

const BINARY: &str = env!("CARGO_BIN_EXE_cyberid_node");

fn cyberid() -> Command {
    process::cyberid(BINARY)
}

/// Starts `cyberid serve` on port 0 over `data_dir`; the child and its address.
fn serve(data_dir: &Path) -> (Child, std::net::SocketAddr) {
    process::serve(BINARY, data_dir, &[])
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    process::signal(child, "TERM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_and_loses_no_acknowledged_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = node::prepare(dir.path());
    let (mut child, address) = serve(dir.path());
    wait_ready(address).await;

    let request = |holder| {
        prepared
            .issuer
            .issue(&cyberid_engine::IssueRequest::new(holder), now())
            .unwrap()
            .to_text()
    };
    let certificates: Vec<String> = (0..2000)
        .map(|_| request(WebNumber::generate().unwrap()))
        .collect();
    let mut tasks = Vec::new();
    for chunk in certificates.chunks(100) {
        let chunk = chunk.to_vec();
        let key = prepared.shop_key.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let Ok(mut client) = cyberid::Client::connect(address).await else {
                return acknowledged;
            };
            for text in chunk {
                match client
                    .call(
                        hyper::Method::POST,
                        "/v1/verify",
                        Some(&key),
                        Some(serde_json::json!({ "certificate": text })),
                    )
                    .await
                {
                    Ok((status, body)) if status == 200 && body["verdict"] == "valid" => {
                        acknowledged.push(text)
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    // Let some requests through, then terminate mid-stream.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || terminate(&mut child))
        .await
        .unwrap();
    assert!(
        status.success(),
        "cyberid serve exited with {status} on SIGTERM"
    );
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty(),
        "nothing was verified before SIGTERM"
    );

    // Every certificate answered valid before the shutdown is spent after the restart.
    let (mut child, address) = serve(dir.path());
    let mut client = wait_ready(address).await;
    for text in &acknowledged {
        assert_eq!(
            verdict(&mut client, &prepared.shop_key, text).await,
            "replayed"
        );
    }
    let fresh = request(WebNumber::generate().unwrap());
    let (status, body) = verify(&mut client, &prepared.shop_key, &fresh).await;
    assert_eq!((status, body["verdict"].as_str()), (200, Some("valid")));
    assert!(terminate(&mut child).success());
}

fn now() -> u64 {
    use cyberid_engine::Clock;
    cyberid_engine::SystemClock.now()
}

#[test]
fn the_demo_runs_to_completion() {
    let dir = tempfile::tempdir().unwrap();
    let output = cyberid()
        .args(["demo", "--exit", "--qr", "false", "--data-dir"])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("The demo's answers were all as the protocol requires."));
    assert_eq!(stdout.matches("  ok  ").count(), 19, "{stdout}");
    assert!(stdout.contains("curl -s http://127.0.0.1:"));
}

#[test]
fn management_commands_edit_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let output = cyberid()
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    // Nothing to manage before init: a typo in --data-dir does not create a directory.
    let (ok, _, error) = run(&["platform", "list"]);
    assert!(!ok && error.contains("cyberid init"), "{error}");
    assert!(!data.exists());

    assert!(run(&["init"]).0);
    let (ok, key_id, _) = run(&["key", "generate"]);
    assert!(ok && key_id.len() == 16, "{key_id}");
    let (ok, api_key, _) = run(&[
        "platform",
        "add",
        "bank.example",
        "--scope",
        "verify",
        "--rate-limit",
        "50",
    ]);
    assert!(ok && api_key.starts_with("cyp_"), "{api_key}");
    let (ok, listing, _) = run(&["platform", "list"]);
    assert!(
        ok && listing.contains("bank.example") && listing.contains("50"),
        "{listing}"
    );
    assert!(!listing.contains(api_key.rsplit('_').next().unwrap()));
    let (ok, _, error) = run(&["platform", "add", "bank.example"]);
    assert!(!ok && error.contains("[exists]"), "{error}");
    let (ok, authority_key, _) = run(&["authority", "add", "regulator"]);
    assert!(ok && authority_key.starts_with("cya_"));
    let (ok, keys, _) = run(&["key", "list"]);
    assert!(
        ok && keys.contains(&key_id) && keys.contains("yes"),
        "{keys}"
    );
    assert!(run(&["key", "retire", &key_id]).0);
    let (_, keys, _) = run(&["key", "list"]);
    assert!(keys.contains("retired at"), "{keys}");

    // Import a key as openssl writes it.
    let pem = dir.path().join("issuer.pem");
    assert!(cyberid_tests::openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "SM2",
            "-out",
            pem.to_str().unwrap()
        ]
    ));
    let (ok, imported, error) = run(&["key", "import", pem.to_str().unwrap(), "--issuing"]);
    assert!(ok, "{error}");
    let (_, keys, _) = run(&["key", "list"]);
    assert!(
        keys.lines()
            .any(|line| line.starts_with(&imported) && line.contains("yes")),
        "{keys}"
    );
}
