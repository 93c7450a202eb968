//! The server over real HTTP on port 0, with a real RocksDB store in a temporary directory.

mod contract;

use cyberid::Client;
use cyberid_engine::{Certificate, Clock, SystemClock, WebNumber};
use cyberid_tests::node::{self, AUTHORITY, HISTORY_MARGIN, Node, READER, SHOP, verdict, verify};
use hyper::Method;
use serde_json::{Value, json};

async fn admin(client: &mut Client, key: &str, path: &str) -> (u16, Value) {
    let (status, body) = client
        .call(
            Method::POST,
            path,
            Some(key),
            Some(json!({ "reason": "test" })),
        )
        .await
        .unwrap();
    (status.as_u16(), body)
}

fn holder() -> WebNumber {
    WebNumber::generate().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verdict_over_http() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let now = SystemClock.now();

    // valid, with exactly the documented fields and nothing about the person beyond them.
    let person = holder();
    let text = node.certificate(person, Some(SHOP));
    let (status, body) = verify(&mut client, &shop, &text).await;
    assert_eq!(status, 200);
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "assurance",
            "claims",
            "expires_at",
            "receipt",
            "subject",
            "subject_type",
            "verdict"
        ]
    );
    assert_eq!(body["subject_type"], "pairwise");
    // The receipt names the entry's place in the log and its commitment, never the holder.
    assert_eq!(
        body["receipt"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["commitment", "log_index"]
    );
    assert!(!body.to_string().contains(person.as_str()));
    assert_eq!(body["claims"]["age"], "adult");

    assert_eq!(verdict(&mut client, &shop, &text).await, "replayed");
    assert_eq!(
        verdict(
            &mut client,
            &shop,
            &node.certificate(holder(), Some(READER))
        )
        .await,
        "wrong_audience"
    );
    assert_eq!(
        verdict(&mut client, &shop, "WZ1:NOT-A-CERTIFICATE").await,
        "malformed"
    );
    let good = node.certificate(holder(), None);
    let mut bytes = Certificate::from_text(&good).unwrap().as_bytes().to_vec();
    *bytes.last_mut().unwrap() ^= 0x80;
    let forged = Certificate::from_bytes(&bytes).unwrap().to_text();
    assert_eq!(verdict(&mut client, &shop, &forged).await, "bad_signature");
    let mut unsupported = bytes.clone();
    unsupported[0] = 0x7f;
    let unsupported = Certificate::from_bytes(&unsupported)
        .map(|c| c.to_text())
        .unwrap_or_else(|_| "WZ1:".to_owned());
    let reason = verdict(&mut client, &shop, &unsupported).await;
    assert!(
        ["unsupported_version", "malformed"].contains(&reason.as_str()),
        "{reason}"
    );

    assert_eq!(
        verdict(
            &mut client,
            &shop,
            &node.certificate_at(holder(), now - 400, 60)
        )
        .await,
        "expired"
    );
    assert_eq!(
        verdict(
            &mut client,
            &shop,
            &node.certificate_at(holder(), now + 120, 60)
        )
        .await,
        "not_yet_valid"
    );
    // Issued before the store's history began, still unexpired: the store cannot vouch.
    let early = node.prepared.created - HISTORY_MARGIN - 60;
    assert_eq!(
        verdict(
            &mut client,
            &shop,
            &node.certificate_at(holder(), early, 300)
        )
        .await,
        "history_unavailable"
    );

    // Revocations through the admin API.
    let authority = node.prepared.authority_key.clone();
    let revoked = node.certificate(holder(), None);
    let id = Certificate::from_text(&revoked)
        .unwrap()
        .fields()
        .certificate_id;
    let (status, body) = admin(
        &mut client,
        &authority,
        &format!("/v1/admin/certificates/{id}/revoke"),
    )
    .await;
    assert_eq!((status, body["sequence"].as_u64()), (200, Some(1)));
    assert_eq!(verdict(&mut client, &shop, &revoked).await, "revoked");

    let suspended = holder();
    let path = format!("/v1/admin/web-numbers/{suspended}/suspend");
    assert_eq!(admin(&mut client, &authority, &path).await.0, 200);
    assert_eq!(
        verdict(&mut client, &shop, &node.certificate(suspended, None)).await,
        "revoked"
    );
    let path = format!("/v1/admin/web-numbers/{suspended}/reinstate");
    assert_eq!(admin(&mut client, &authority, &path).await.0, 200);
    assert_eq!(
        verdict(&mut client, &shop, &node.certificate(suspended, None)).await,
        "valid"
    );

    // An unknown key, then the node's own key revoked.
    let stranger = cyberid_engine::Issuer::new(
        cyberid_engine::IssuerSigningKey::generate().unwrap(),
        cyberid_engine::IssuerPolicy::default(),
    )
    .unwrap();
    let foreign = stranger
        .issue(&cyberid_engine::IssueRequest::new(holder()), now)
        .unwrap()
        .to_text();
    assert_eq!(verdict(&mut client, &shop, &foreign).await, "unknown_key");
    let key_id = node.prepared.issuer.key().key_id();
    let path = format!("/v1/admin/keys/{key_id}/revoke");
    assert_eq!(admin(&mut client, &authority, &path).await.0, 200);
    assert_eq!(
        verdict(&mut client, &shop, &node.certificate(holder(), None)).await,
        "key_revoked"
    );

    // The history lists what was done, by whom, without reasons beyond the codes given.
    let (status, history) = client
        .call(
            Method::GET,
            "/v1/admin/revocations?after=0&limit=10",
            Some(&authority),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let entries = history["revocations"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|entry| entry["authority"] == AUTHORITY));
    assert_eq!(history["next_after"], 4);

    // The metrics count every verdict by reason.
    let (_, metrics) = client
        .call(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    let metrics = metrics.as_str().unwrap().to_owned();
    for line in [
        "cyberid_verifications_total{verdict=\"valid\"} 2",
        "cyberid_verifications_total{verdict=\"replayed\"} 1",
        "cyberid_verifications_total{verdict=\"key_revoked\"} 1",
        "cyberid_revoked{kind=\"certificate\"} 1",
        "cyberid_ready 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(!metrics.contains(&person.to_string()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuing_over_http_yields_certificates_that_verify_once() {
    let mut node = Node::start(|config| config.issue_endpoint = true).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let person = holder();
    let (status, issued) = client
        .call(
            Method::POST,
            "/v1/certificates",
            Some(&shop),
            Some(json!({ "web_number": person, "claims": { "age": "minor" }, "audience": SHOP, "lifetime": 60 })),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 201, "{issued}");
    assert_eq!(
        issued["expires_at"].as_u64().unwrap() - issued["issued_at"].as_u64().unwrap(),
        60
    );
    let text = issued["certificate"].as_str().unwrap();
    let (_, body) = verify(&mut client, &shop, text).await;
    assert_eq!(body["claims"]["age"], "minor");
    assert_eq!(verdict(&mut client, &shop, text).await, "replayed");

    // A lifetime beyond the policy is the caller's error, with the engine's code.
    let (status, body) = client
        .call(
            Method::POST,
            "/v1/certificates",
            Some(&shop),
            Some(json!({ "web_number": person, "lifetime": 3600 })),
        )
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("lifetime"))
    );

    // The reader platform may verify but not issue.
    let (status, body) = client
        .call(
            Method::POST,
            "/v1/certificates",
            Some(&node.prepared.reader_key),
            Some(json!({ "web_number": person })),
        )
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    node.shutdown().await;

    // Switched off (the default), the route answers 404 with its own code.
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let (status, body) = client
        .call(
            Method::POST,
            "/v1/certificates",
            Some(&node.prepared.shop_key),
            Some(json!({ "web_number": person })),
        )
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (404, Some("issue_disabled"))
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_scope_failures() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let text = node.certificate(holder(), None);
    let body = || Some(json!({ "certificate": text }));
    let cases: [(Option<&str>, &str, u16); 5] = [
        (None, "/v1/verify", 401),
        (Some("cyp_0000000000000000_00"), "/v1/verify", 401),
        (Some(&node.prepared.authority_key), "/v1/verify", 403),
        (
            Some(&node.prepared.shop_key),
            "/v1/admin/keys/0011223344556677/revoke",
            403,
        ),
        (None, "/v1/admin/revocations", 401),
    ];
    for (key, path, expected) in cases {
        let method = if path.ends_with("revocations") {
            Method::GET
        } else {
            Method::POST
        };
        let (status, answer) = client.call(method, path, key, body()).await.unwrap();
        assert_eq!(status.as_u16(), expected, "{path}: {answer}");
        let code = if expected == 401 {
            "unauthenticated"
        } else {
            "forbidden"
        };
        assert_eq!(answer["error"]["code"], code);
    }
    // The certificate was never verified by any of those calls.
    assert_eq!(
        verdict(&mut client, &node.prepared.shop_key, &text).await,
        "valid"
    );

    // A platform added while the node runs is accepted within the reload interval.
    let dir = cyberid::DataDir::open(node.dir.path()).unwrap();
    let late = dir
        .add_platform(
            &"late.example".parse().unwrap(),
            &[cyberid::Scope::Verify],
            None,
            SystemClock.now(),
        )
        .unwrap();
    let fresh = node.certificate(holder(), None);
    let mut accepted = false;
    for _ in 0..50 {
        let (status, _) = verify(&mut client, &late, &fresh).await;
        if status == 200 {
            accepted = true;
            break;
        }
        assert_eq!(status, 401);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(accepted, "a platform added by the CLI was never accepted");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_consume_nothing() {
    let mut node = Node::start(|config| config.max_body_bytes = 1024).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let text = node.certificate(holder(), None);

    let oversized = json!({ "certificate": "x".repeat(4096) });
    let (status, body) = client
        .call(Method::POST, "/v1/verify", Some(&shop), Some(oversized))
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );

    let mut client = node.client().await;
    for (body, code) in [
        (json!({ "cert": text }), "malformed_json"),
        (json!([text]), "malformed_json"),
        (json!({ "certificate": text, "extra": 1 }), "malformed_json"),
    ] {
        let (status, answer) = client
            .call(Method::POST, "/v1/verify", Some(&shop), Some(body))
            .await
            .unwrap();
        assert_eq!(
            (status.as_u16(), answer["error"]["code"].as_str()),
            (400, Some(code))
        );
    }
    let (status, answer) = client
        .call(Method::GET, "/v1/verify", Some(&shop), None)
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), answer["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, answer) = client
        .call(Method::GET, "/v2/verify", Some(&shop), None)
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, answer) = client
        .call(
            Method::POST,
            "/v1/admin/web-numbers/ILOU000000/suspend",
            Some(&node.prepared.authority_key),
            Some(json!({ "reason": "x" })),
        )
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), answer["error"]["code"].as_str()),
        (400, Some("web_number_character"))
    );

    // None of that consumed the certificate.
    assert_eq!(verdict(&mut client, &shop, &text).await, "valid");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_rate_limit_answers_429_with_retry_after() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let reader = node.prepared.reader_key.clone();
    let mut statuses = Vec::new();
    for _ in 0..(node::READER_RATE + 3) {
        let text = node.certificate(holder(), None);
        statuses.push(verify(&mut client, &reader, &text).await);
    }
    let limited: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert!(!limited.is_empty(), "{statuses:?}");
    assert!(
        limited
            .iter()
            .all(|(_, body)| body["error"]["code"] == "rate_limited")
    );
    let text = node.certificate(holder(), None);
    let (status, _) = verify(&mut client, &reader, &text).await;
    if status == 429 {
        assert!(client.last_headers().contains_key("retry-after"));
    }
    // Another platform is not affected.
    let shop = node.prepared.shop_key.clone();
    assert_eq!(
        verdict(&mut client, &shop, &node.certificate(holder(), None)).await,
        "valid"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_answers_503_and_admitted_requests_are_still_served() {
    let mut node = Node::start(|config| {
        config.queue_capacity = 1;
        config.max_batch = 1;
        config.verify_threads = 1;
    })
    .await;
    let shop = node.prepared.shop_key.clone();
    let certificates: Vec<String> = (0..400).map(|_| node.certificate(holder(), None)).collect();
    let mut tasks = Vec::new();
    for chunk in certificates.chunks(10) {
        let mut client = node.client().await;
        let chunk = chunk.to_vec();
        let shop = shop.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for text in chunk {
                let (status, body) = verify(&mut client, &shop, &text).await;
                let retry_after = client.last_headers().get("retry-after").cloned();
                answers.push((status, body, retry_after));
            }
            answers
        }));
    }
    let mut served = 0;
    let mut shed = 0;
    for task in tasks {
        for (status, body, retry_after) in task.await.unwrap() {
            match status {
                200 => {
                    assert_eq!(body["verdict"], "valid", "{body}");
                    served += 1;
                }
                503 => {
                    assert_eq!(body["error"]["code"], "overloaded");
                    assert_eq!(retry_after.unwrap(), "1");
                    shed += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    assert!(
        shed > 0,
        "a one-slot queue under 40 concurrent connections never overflowed"
    );
    assert!(served > 0);
    assert_eq!(served + shed, 400);

    let (_, metrics) = node
        .client()
        .await
        .call(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert!(metrics.as_str().unwrap().contains("status=\"503\""));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let (status, body) = client
        .call(Method::GET, "/healthz", None, None)
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
    let (status, body) = client
        .call(Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ready"))
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_node_fails_startup_with_its_code() {
    let mut node = Node::start(|_| {}).await;
    let mut config = cyberid::ServeConfig::default();
    config.data_dir = node.dir.path().to_path_buf();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let second = cyberid::Server::start(config).await.unwrap();
    let error = second.ready().await.unwrap_err();
    assert_eq!(error.code(), "store_locked");
    let mut client = Client::connect(second.local_addr()).await.unwrap();
    let (status, body) = client
        .call(Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["reason"].as_str()),
        (503, Some("store_failed"))
    );
    second.shutdown().await.unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut node = Node::start(|config| {
        config.header_timeout_ms = 200;
        config.body_timeout_ms = 200;
    })
    .await;
    // Headers that never finish: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(node.address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut buffer),
    )
    .await
    .expect("the server kept a half-sent request open");
    assert!(read.is_err() || !String::from_utf8_lossy(&buffer).contains("200 OK"));

    // A body that never finishes: 408 with its code, and the certificate is not consumed.
    let text = node.certificate(holder(), None);
    let mut stream = tokio::net::TcpStream::connect(node.address).await.unwrap();
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"certificate\":\"{text}",
        node.prepared.shop_key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read(&mut response),
    )
    .await
    .expect("no answer to a stalled body")
    .unwrap();
    let response = String::from_utf8_lossy(&response[..read]);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("body_timeout"), "{response}");
    let mut client = node.client().await;
    assert_eq!(
        verdict(&mut client, &node.prepared.shop_key, &text).await,
        "valid"
    );
    node.shutdown().await;
}

/// One raw HTTP/1.1 exchange, for headers the client helper does not send.
async fn raw_verify(node: &Node, key: &str, certificate: &str, extra: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({ "certificate": certificate }).to_string();
    let request = format!(
        "POST /v1/verify HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(node.address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_with_its_idempotency_key_is_answered_valid_again() {
    let node = Node::start(|_| {}).await;
    let shop = node.prepared.shop_key.clone();
    let text = node.certificate(holder(), Some(SHOP));
    let key = "idempotency-key: login-7f3a\r\n";
    let (status, first) = raw_verify(&node, &shop, &text, key).await;
    assert_eq!(status, 200);
    assert!(first.contains(r#""verdict":"valid""#), "{first}");
    // The platform lost the answer and retries the same request: the same answer.
    let (_, again) = raw_verify(&node, &shop, &text, key).await;
    assert!(again.contains(r#""verdict":"valid""#), "{again}");
    // Any other request with that certificate is a replay: another key, or none.
    for extra in ["idempotency-key: login-other\r\n", ""] {
        let (_, other) = raw_verify(&node, &shop, &text, extra).await;
        assert!(other.contains(r#""reason":"replayed""#), "{other}");
    }
    // A key outside the documented form is refused, and consumes nothing.
    let fresh = node.certificate(holder(), Some(SHOP));
    let (status, refused) =
        raw_verify(&node, &shop, &fresh, "idempotency-key: has space\r\n").await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.contains("bad_idempotency_key"), "{refused}");
    let (_, fine) = raw_verify(&node, &shop, &fresh, key).await;
    assert!(fine.contains(r#""verdict":"valid""#), "{fine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_nonce_store_answers_503_and_consumes_nothing() {
    let node = Node::start(|config| config.max_live_nonces = 4).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    for _ in 0..4 {
        let text = node.certificate(holder(), Some(SHOP));
        assert_eq!(verdict(&mut client, &shop, &text).await, "valid");
    }
    let waiting: Vec<String> = (0..8)
        .map(|_| node.certificate(holder(), Some(SHOP)))
        .collect();
    // Twice each: a refusal that had consumed the certificate would answer `replayed` the
    // second time.
    for _ in 0..2 {
        for text in &waiting {
            let (status, body) = verify(&mut client, &shop, text).await;
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], "nonce_store_full");
            assert!(client.last_headers().contains_key("retry-after"));
        }
    }
}
