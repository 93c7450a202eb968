//! The HTTP contract that `docs/openapi.yaml` states in words: authentication scheme, 405 and
//! `Allow`, error messages that never echo the request, body trimming, the issue endpoint's
//! role, field codes, and the admin API's 404 and 409 answers.

use cyberid::Client;
use cyberid_engine::{Certificate, WebNumber};
use cyberid_tests::node::{Node, SHOP, verdict};
use hyper::Method;
use serde_json::{Value, json};

fn holder() -> WebNumber {
    WebNumber::generate().unwrap()
}

async fn post(client: &mut Client, key: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, answer) = client
        .call(Method::POST, path, Some(key), Some(body))
        .await
        .unwrap();
    (status.as_u16(), answer)
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let text = node.certificate(holder(), None);
        let authorization = format!("{scheme} {}", node.prepared.shop_key);
        let (status, answer) = client
            .send(
                Method::POST,
                "/v1/verify",
                &[
                    ("authorization", &authorization),
                    ("content-type", "text/plain"),
                ],
                text,
            )
            .await
            .unwrap();
        assert_eq!(
            (status.as_u16(), answer["verdict"].as_str()),
            (200, Some("valid")),
            "{scheme}: {answer}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_405_names_the_allowed_method() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    for (allowed, template) in cyberid::ROUTES {
        let path = template
            .replace("{web_number}", "7K3MQ9XZ2P")
            .replace("{action}", "suspend")
            .replace("{certificate_id}", "00112233445566778899aabbccddeeff")
            .replace("{key_id}", "0011223344556677");
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            if method.as_str() == *allowed {
                continue;
            }
            // With no credentials at all: the method is answered before authentication.
            let (status, answer) = client.send(method.clone(), &path, &[], "").await.unwrap();
            assert_eq!(status.as_u16(), 405, "{method} {path}: {answer}");
            assert_eq!(code(&answer), "method_not_allowed");
            assert_eq!(
                client
                    .last_headers()
                    .get("allow")
                    .map(|v| v.to_str().unwrap()),
                Some(*allowed),
                "{method} {path}"
            );
        }
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_never_echo_the_request() {
    const SECRET: &str = "ZhangSan-110101199003077777";
    let mut node = Node::start(|config| config.issue_endpoint = true).await;
    let mut client = node.client().await;
    let shop = format!("Bearer {}", node.prepared.shop_key);
    let authority = format!("Bearer {}", node.prepared.authority_key);
    let json_type = "application/json";
    // (path, body, content type, the code expected)
    let requests = [
        (
            "/v1/verify",
            format!(r#"{{"certificate":"x","{SECRET}":1}}"#),
            json_type,
            "malformed_json",
        ),
        (
            "/v1/verify",
            format!(r#"{{"certificate":{SECRET}}}"#),
            json_type,
            "malformed_json",
        ),
        (
            "/v1/verify",
            "x".into(),
            "text/x-zhangsan-110101199003077777",
            "unsupported_media_type",
        ),
        (
            "/v1/certificates",
            format!(r#"{{"web_number":"7K3MQ9XZ2P","assurance":"{SECRET}"}}"#),
            json_type,
            "malformed_json",
        ),
        (
            "/v1/certificates",
            format!(r#"{{"web_number":"7K3MQ9XZ2P","lifetime":"{SECRET}"}}"#),
            json_type,
            "malformed_json",
        ),
        (
            "/v1/certificates",
            format!(r#"{{"web_number":"{SECRET}"}}"#),
            json_type,
            "web_number_length",
        ),
        (
            "/v1/certificates",
            format!(r#"{{"web_number":"7K3MQ9XZ2P","audience":"{SECRET}"}}"#),
            json_type,
            "platform_id",
        ),
        (
            "/v1/admin/web-numbers/7K3MQ9XZ2P/suspend",
            format!(r#"{{"reason":"{SECRET};"}}"#),
            json_type,
            "bad_reason",
        ),
        (
            "/v1/admin/web-numbers/7K3MQ9XZ2P/suspend",
            format!(r#"{{"reason":"x","{SECRET}":1}}"#),
            json_type,
            "malformed_json",
        ),
    ];
    for (path, body, content_type, expected) in requests {
        let key: &str = if path.contains("/admin/") {
            &authority
        } else {
            &shop
        };
        let headers = [("authorization", key), ("content-type", content_type)];
        let (status, answer) = client
            .send(Method::POST, path, &headers, body.clone())
            .await
            .unwrap();
        assert!(
            (400..500).contains(&status.as_u16()),
            "{path} {body}: {answer}"
        );
        assert_eq!(code(&answer), expected, "{path} {body}");
        let text = answer.to_string().to_lowercase();
        assert!(!text.contains("zhangsan"), "{path} {body}: {answer}");
        assert!(
            !text.contains("110101199003077777"),
            "{path} {body}: {answer}"
        );
    }
    let (status, answer) = client
        .send(
            Method::GET,
            "/v1/admin/revocations?ZhangSan=110101199003077777",
            &[("authorization", &authority)],
            "",
        )
        .await
        .unwrap();
    assert_eq!((status.as_u16(), code(&answer)), (400, "bad_query"));
    assert!(
        !answer.to_string().to_lowercase().contains("zhangsan"),
        "{answer}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_body_is_trimmed_and_the_certificate_text_is_not() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let shop = format!("Bearer {}", node.prepared.shop_key);
    let text_plain = |body: String| (body, "text/plain");
    let json_body = |certificate: String| {
        (
            json!({ "certificate": certificate }).to_string(),
            "application/json",
        )
    };
    let cases = [
        // What a QR scanner sends: surrounding whitespace around the body goes.
        (
            text_plain(format!("{}\r\n", node.certificate(holder(), None))),
            "valid",
        ),
        (
            text_plain(format!(" \t{}\n\n", node.certificate(holder(), None))),
            "valid",
        ),
        // Only ASCII whitespace: an ideographic space (U+3000) is no scanner's line end.
        (
            text_plain(format!("\u{3000}{}", node.certificate(holder(), None))),
            "malformed",
        ),
        // Inside the text, whitespace is a deviation from the one spelling.
        (
            text_plain(break_line(&node.certificate(holder(), None))),
            "malformed",
        ),
        // A JSON string is the certificate text exactly: nothing is trimmed from it.
        (
            json_body(format!("{}\r\n", node.certificate(holder(), None))),
            "malformed",
        ),
        (
            json_body(format!(" {}", node.certificate(holder(), None))),
            "malformed",
        ),
        (json_body(node.certificate(holder(), None)), "valid"),
    ];
    for ((body, content_type), expected) in cases {
        let (status, answer) = client
            .send(
                Method::POST,
                "/v1/verify",
                &[("authorization", &shop), ("content-type", content_type)],
                body.clone(),
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 200, "{answer}");
        let got = answer["reason"].as_str().or(answer["verdict"].as_str());
        assert_eq!(got, Some(expected), "{content_type} {body:?}");
    }
    node.shutdown().await;
}

/// The text with a CR LF in its middle.
fn break_line(text: &str) -> String {
    format!("{}\r\n{}", &text[..100], &text[100..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_endpoint_is_a_named_role_with_documented_codes() {
    // Off by default: an issue-scoped platform cannot mint certificates on an ordinary node.
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let body = json!({ "web_number": holder() });
    let (status, answer) = post(&mut client, &shop, "/v1/certificates", body).await;
    assert_eq!((status, code(&answer)), (404, "issue_disabled"), "{answer}");
    node.shutdown().await;

    let mut node = Node::start(|config| config.issue_endpoint = true).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let cases = [
        (json!({ "web_number": "7K3MQ9XZ2" }), "web_number_length"),
        (
            json!({ "web_number": "7K3MQ9XZ2O" }),
            "web_number_character",
        ),
        (
            json!({ "web_number": "7K3MQ9XZ2P", "audience": "Shop.Example" }),
            "platform_id",
        ),
        (
            json!({ "web_number": "7K3MQ9XZ2P", "audience": "" }),
            "platform_id",
        ),
        (
            json!({ "web_number": "7K3MQ9XZ2P", "lifetime": 0 }),
            "lifetime",
        ),
        (
            json!({ "web_number": "7K3MQ9XZ2P", "lifetime": 70000 }),
            "lifetime",
        ),
        (
            json!({ "web_number": "7K3MQ9XZ2P", "assurance": "medium" }),
            "malformed_json",
        ),
        (
            json!({ "web_number": "7K3MQ9XZ2P", "claims": { "name": "x" } }),
            "malformed_json",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = post(&mut client, &shop, "/v1/certificates", body.clone()).await;
        assert_eq!((status, code(&answer)), (400, expected), "{body}: {answer}");
    }

    // Defaults: substantial, age not disclosed (an empty claims object), any platform; lower
    // case accepted and normalised.
    let (status, issued) = post(
        &mut client,
        &shop,
        "/v1/certificates",
        json!({ "web_number": "7k3mq9xz2p" }),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(
        issued["expires_at"].as_u64().unwrap() - issued["issued_at"].as_u64().unwrap(),
        180
    );
    let text = issued["certificate"].as_str().unwrap();
    let (status, verified) = post(
        &mut client,
        &shop,
        "/v1/verify",
        json!({ "certificate": text }),
    )
    .await;
    assert_eq!(status, 200);
    // The holder is named by the shop's pairwise subject, derived as protocol.md §11 says
    // under the node's subject key.
    let subject_key = cyberid::DataDir::open(node.dir.path())
        .unwrap()
        .identity_keys()
        .unwrap()
        .subject;
    let holder: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
    let subject = subject_key.subject(&SHOP.parse().unwrap(), &holder);
    assert_eq!(
        verified,
        json!({
            "verdict": "valid",
            "subject": subject.as_str(),
            "subject_type": "pairwise",
            "assurance": "substantial",
            "claims": {},
            "expires_at": issued["expires_at"],
            // The node's first log entry.
            "receipt": { "log_index": 0, "commitment": verified["receipt"]["commitment"] },
        })
    );
    assert_eq!(
        verified["receipt"]["commitment"].as_str().unwrap().len(),
        64
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reasons_have_their_own_code() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let authority = node.prepared.authority_key.clone();
    let path = format!("/v1/admin/web-numbers/{}/suspend", holder());
    for reason in [
        "",
        " lost",
        "lost ",
        "a;b",
        "line\nbreak",
        "名字",
        "a".repeat(65).as_str(),
    ] {
        let (status, answer) =
            post(&mut client, &authority, &path, json!({ "reason": reason })).await;
        assert_eq!(
            (status, code(&answer)),
            (400, "bad_reason"),
            "{reason:?}: {answer}"
        );
    }
    for reason in ["lost-device", "ticket:4711", "a".repeat(64).as_str()] {
        let (status, answer) =
            post(&mut client, &authority, &path, json!({ "reason": reason })).await;
        assert_eq!(status, 200, "{reason:?}: {answer}");
    }
    node.shutdown().await;
}

/// Reasons are short sentences: space, comma, slash and parentheses are accepted by the server
/// and the store alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reasons_may_be_short_sentences() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let authority = node.prepared.authority_key.clone();
    let path = format!("/v1/admin/web-numbers/{}/suspend", holder());
    for reason in ["lost device", "fraud report (case 12/2026), confirmed"] {
        let (status, answer) =
            post(&mut client, &authority, &path, json!({ "reason": reason })).await;
        assert_eq!(status, 200, "{reason:?}: {answer}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_ids_are_refused_and_revocation_is_final() {
    let mut node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let authority = node.prepared.authority_key.clone();
    let shop = node.prepared.shop_key.clone();
    let reason = json!({ "reason": "test" });

    // A key id no key of this node has: 404, and nothing is recorded.
    let (status, answer) = post(
        &mut client,
        &authority,
        "/v1/admin/keys/0011223344556677/revoke",
        reason.clone(),
    )
    .await;
    assert_eq!((status, code(&answer)), (404, "unknown_key"), "{answer}");
    let (status, answer) = post(
        &mut client,
        &authority,
        "/v1/admin/keys/not-a-key-id/revoke",
        reason.clone(),
    )
    .await;
    assert_eq!((status, code(&answer)), (400, "key_id"), "{answer}");
    let (status, answer) = post(
        &mut client,
        &authority,
        "/v1/admin/certificates/xyz/revoke",
        reason.clone(),
    )
    .await;
    assert_eq!((status, code(&answer)), (400, "certificate_id"), "{answer}");
    // A certificate id never seen may be revoked ahead of its certificate.
    let text = node.certificate(holder(), Some(SHOP));
    let id = Certificate::from_text(&text)
        .unwrap()
        .fields()
        .certificate_id;
    let (status, answer) = post(
        &mut client,
        &authority,
        &format!("/v1/admin/certificates/{id}/revoke"),
        reason.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["sequence"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    assert_eq!(verdict(&mut client, &shop, &text).await, "revoked");

    // Suspension is lifted by reinstating; revocation is final.
    let person = holder();
    let action = |name: &str| format!("/v1/admin/web-numbers/{person}/{name}");
    for (name, expected) in [("suspend", 200), ("reinstate", 200), ("revoke", 200)] {
        let (status, answer) = post(&mut client, &authority, &action(name), reason.clone()).await;
        assert_eq!(status, expected, "{name}: {answer}");
    }
    for name in ["reinstate", "suspend"] {
        let (status, answer) = post(&mut client, &authority, &action(name), reason.clone()).await;
        assert_eq!(
            (status, code(&answer)),
            (409, "revocation_final"),
            "{name}: {answer}"
        );
    }
    let (status, _) = post(&mut client, &authority, &action("revoke"), reason.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        verdict(&mut client, &shop, &node.certificate(person, None)).await,
        "revoked"
    );
    node.shutdown().await;
}
