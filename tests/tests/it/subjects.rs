//! Pairwise subjects over HTTP (protocol.md §11): a platform learns a subject of its own, never
//! the Web Number, unless an authority entitled it; entitlements apply at the credentials
//! reload and can be withdrawn.

use std::time::Duration;

use cyberid::{Client, DataDir, Scope};
use cyberid_engine::{Certificate, Clock, SystemClock, WebNumber};
use cyberid_tests::node::{AUTHORITY, Node, SHOP, verify};
use hyper::Method;
use serde_json::{Value, json};

const BANK: &str = "bank.example";

/// Verifies a fresh certificate for `holder` as the platform with `key`, retrying while the
/// node has not yet read a credentials change (401), until `done` accepts the answer.
async fn answer_until(
    node: &Node,
    client: &mut Client,
    key: &str,
    holder: WebNumber,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..100 {
        let (status, body) = verify(client, key, &node.certificate(holder, None)).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(status == 200 || status == 401, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node did not apply the credentials change within 10 s");
}

fn subject(body: &Value) -> (&str, &str) {
    (
        body["subject"].as_str().unwrap(),
        body["subject_type"].as_str().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_learns_its_own_subject_and_the_web_number_only_when_entitled() {
    let node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let dir = DataDir::open(node.dir.path()).unwrap();
    let bank: cyberid_engine::PlatformId = BANK.parse().unwrap();
    let bank_key = dir
        .add_platform(&bank, &[Scope::Verify], Some(0), SystemClock.now())
        .unwrap();
    let shop_key = node.prepared.shop_key.clone();
    let person = WebNumber::generate().unwrap();

    let at_shop = answer_until(&node, &mut client, &shop_key, person, |_| true).await;
    let (shop_subject, kind) = subject(&at_shop);
    assert_eq!((shop_subject.len(), kind), (20, "pairwise"));
    let again = answer_until(&node, &mut client, &shop_key, person, |_| true).await;
    assert_eq!(subject(&again), (shop_subject, "pairwise"), "stable");
    let other = answer_until(
        &node,
        &mut client,
        &shop_key,
        WebNumber::generate().unwrap(),
        |_| true,
    )
    .await;
    assert_ne!(subject(&other).0, shop_subject, "one subject per holder");

    let at_bank = answer_until(&node, &mut client, &bank_key, person, |_| true).await;
    let bank_subject = subject(&at_bank).0.to_owned();
    assert_ne!(bank_subject, shop_subject, "unlinkable across platforms");
    for body in [&at_shop, &again, &at_bank] {
        assert!(!body.to_string().contains(person.as_str()), "{body}");
    }

    dir.entitle_web_number(&bank, AUTHORITY, "AML rules, art. 16", SystemClock.now())
        .unwrap();
    let entitled = answer_until(&node, &mut client, &bank_key, person, |body| {
        body["subject_type"] == "web_number"
    })
    .await;
    assert_eq!(subject(&entitled), (person.as_str(), "web_number"));
    let at_shop = answer_until(&node, &mut client, &shop_key, person, |_| true).await;
    assert_eq!(
        subject(&at_shop),
        (shop_subject, "pairwise"),
        "shop unchanged"
    );

    dir.withdraw_web_number(&bank).unwrap();
    let withdrawn = answer_until(&node, &mut client, &bank_key, person, |body| {
        body["subject_type"] == "pairwise"
    })
    .await;
    assert_eq!(subject(&withdrawn), (bank_subject.as_str(), "pairwise"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_of_any_shape_names_the_web_number_to_a_platform_not_entitled() {
    let node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let person = WebNumber::generate().unwrap();
    let now = SystemClock.now();

    let valid = node.certificate(person, Some(SHOP));
    let mut forged = Certificate::from_text(&node.certificate(person, None))
        .unwrap()
        .as_bytes()
        .to_vec();
    *forged.last_mut().unwrap() ^= 0x80;
    let forged = Certificate::from_bytes(&forged).unwrap().to_text();
    let revoked = node.certificate(person, None);
    let id = Certificate::from_text(&revoked)
        .unwrap()
        .fields()
        .certificate_id;
    let (status, _) = client
        .call(
            Method::POST,
            &format!("/v1/admin/certificates/{id}/revoke"),
            Some(&node.prepared.authority_key),
            Some(json!({ "reason": "test" })),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);

    let mut shapes = Vec::new();
    for certificate in [
        valid.clone(),
        valid,
        node.certificate(person, Some("reader.example")),
        forged,
        revoked,
        node.certificate_at(person, now - 400, 60),
        node.certificate_at(person, now + 120, 60),
    ] {
        let (status, body) = verify(&mut client, &shop, &certificate).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.to_string().contains(person.as_str()), "{body}");
        shapes.push(
            body["reason"]
                .as_str()
                .unwrap_or(body["verdict"].as_str().unwrap())
                .to_owned(),
        );
    }
    assert_eq!(
        shapes,
        [
            "valid",
            "replayed",
            "wrong_audience",
            "bad_signature",
            "revoked",
            "expired",
            "not_yet_valid"
        ]
    );
}
