//! The authentication log over real HTTP on a real RocksDB store: what it records, the
//! receipts platforms get, holders reading their own entries, and every head, proof and leaf
//! checked by an independent implementation of RFC 9162 written here from the RFC's text (not
//! the code that built them), over the `sm3` crate.

use std::time::Duration;

use cyberid_engine::{Clock, SystemClock, WebNumber};
use cyberid_identity::LogReadBody;
use cyberid_identity::{DeviceSigningKey, Disclose, HolderRequest, HolderRequestBody, LogRead};
use cyberid_tests::node::{AGENT, Node, SHOP, verdict, verify};
use cyberid_tests::synthetic_resident_id;
use hyper::Method;
use serde_json::{Value, json};
use sm3::{Digest, Sm3};

mod crash;

/// An independent RFC 9162 §2.1 over SM3.
pub(crate) mod rfc9162 {
    use super::*;

    pub(crate) type H = [u8; 32];

    pub(crate) fn sm3(parts: &[&[u8]]) -> H {
        let mut hasher = Sm3::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    pub(crate) fn leaf(data: &[u8]) -> H {
        sm3(&[&[0], data])
    }

    fn node(left: &H, right: &H) -> H {
        sm3(&[&[1], left, right])
    }

    /// MTH over leaf hashes (§2.1.1).
    pub(crate) fn mth(leaves: &[H]) -> H {
        match leaves.len() {
            0 => sm3(&[]),
            1 => leaves[0],
            n => {
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// §2.1.3.2.
    pub(crate) fn verify_inclusion(index: u64, size: u64, leaf: H, path: &[H], root: &H) -> bool {
        if index >= size {
            return false;
        }
        let (mut f, mut s, mut r) = (index, size - 1, leaf);
        for p in path {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                r = node(p, &r);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                r = node(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        s == 0 && &r == root
    }

    /// §2.1.4.2.
    pub(crate) fn verify_consistency(first: u64, second: u64, a: &H, b: &H, path: &[H]) -> bool {
        if first == second {
            return path.is_empty() && a == b;
        }
        if first == 0 || first > second || path.is_empty() {
            return false;
        }
        let mut path = path.to_vec();
        if first.is_power_of_two() {
            path.insert(0, *a);
        }
        let (mut f, mut s) = (first - 1, second - 1);
        while f & 1 == 1 {
            f >>= 1;
            s >>= 1;
        }
        let (mut fr, mut sr) = (path[0], path[0]);
        for c in &path[1..] {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                fr = node(c, &fr);
                sr = node(c, &sr);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                sr = node(&sr, c);
            }
            f >>= 1;
            s >>= 1;
        }
        &fr == a && &sr == b && s == 0
    }

    #[test]
    fn this_implementation_meets_the_protocol_vectors() {
        // protocol.md §12: leaves are the one-byte data 00..06.
        let leaves: Vec<H> = (0..7u8).map(|byte| leaf(&[byte])).collect();
        assert_eq!(
            hex::encode(mth(&leaves)),
            "a277130053cebb4f5cccfd9cbe98c6a0ba732dce3a481f1d7c7f40f67f8449fc"
        );
        assert_eq!(
            hex::encode(mth(&[])),
            hex::encode(sm3(&[])),
            "the empty tree's root is SM3 of nothing"
        );
    }
}

pub(crate) fn h(value: &Value) -> rfc9162::H {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value.as_str().expect("a hex string"), &mut out).unwrap();
    out
}

pub(crate) fn hashes(value: &Value) -> Vec<rfc9162::H> {
    value.as_array().unwrap().iter().map(h).collect()
}

pub(crate) async fn get(node: &Node, path: &str) -> (u16, Value) {
    let (status, body) = node
        .client()
        .await
        .call(Method::GET, path, None, None)
        .await
        .unwrap();
    (status.as_u16(), body)
}

/// The head once the log holds `size` entries (a node signs at most once a second).
pub(crate) async fn head_of_size(node: &Node, size: u64) -> Value {
    for _ in 0..100 {
        let (status, head) = get(node, "/v1/log/head").await;
        if status == 200 && head["size"].as_u64() == Some(size) {
            return head;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no head of size {size} within 10 s");
}

/// Checks a head's SM2 signature with the `sm2` crate against the key the node publishes.
pub(crate) fn check_head_signature(key_pem: &str, head: &Value) {
    use sm2::dsa::signature::Verifier;
    use sm2::pkcs8::DecodePublicKey;
    let public = sm2::PublicKey::from_public_key_pem(key_pem).unwrap();
    let key = sm2::dsa::VerifyingKey::new("1234567812345678", public).unwrap();
    let mut signed = b"CYBERID-TREE-HEAD-1".to_vec();
    signed.extend_from_slice(&head["size"].as_u64().unwrap().to_be_bytes());
    signed.extend_from_slice(&head["timestamp_ms"].as_u64().unwrap().to_be_bytes());
    signed.extend_from_slice(&h(&head["root"]));
    let signature =
        sm2::dsa::Signature::from_slice(&hex::decode(head["signature"].as_str().unwrap()).unwrap())
            .unwrap();
    key.verify(&signed, &signature)
        .expect("the head's signature verifies under the published log key");
}

pub(crate) async fn leaves(node: &Node, size: u64) -> Vec<rfc9162::H> {
    let (status, body) = get(node, &format!("/v1/log/leaves?from=0&count={size}")).await;
    assert_eq!(status, 200, "{body}");
    hashes(&body["leaves"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_genuine_verification_is_logged_and_anyone_can_check_the_log() {
    let node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let (a, b) = (
        WebNumber::generate().unwrap(),
        WebNumber::generate().unwrap(),
    );

    // Logged: valid (with a receipt), replayed, revoked.
    let first = node.certificate(a, Some(SHOP));
    let (status, valid) = verify(&mut client, &shop, &first).await;
    assert_eq!((status, valid["verdict"].as_str()), (200, Some("valid")));
    let receipt = valid["receipt"].clone();
    assert_eq!(receipt["log_index"], 0);
    assert_eq!(verdict(&mut client, &shop, &first).await, "replayed");
    node.suspend(b).await;
    assert_eq!(
        verdict(&mut client, &shop, &node.certificate(b, Some(SHOP))).await,
        "revoked"
    );
    // Not logged: checks before the signature say nothing about anyone.
    assert_eq!(
        verdict(
            &mut client,
            &shop,
            &node.certificate(a, Some("other.example"))
        )
        .await,
        "wrong_audience"
    );
    let old = node.certificate_at(a, SystemClock.now() - 3600, 60);
    assert_eq!(verdict(&mut client, &shop, &old).await, "expired");
    // A second valid answer, so the log has a tree to prove in.
    let second = node.certificate(b, None);
    node.client()
        .await
        .call(
            Method::POST,
            &format!("/v1/admin/web-numbers/{b}/reinstate"),
            Some(&node.prepared.authority_key),
            Some(json!({ "reason": "found" })),
        )
        .await
        .unwrap();
    let (_, also_valid) = verify(&mut client, &shop, &second).await;
    assert_eq!(also_valid["receipt"]["log_index"], 3, "{also_valid}");

    // The head covers the four entries; its signature, root and every proof check out by
    // this file's own RFC 9162 code, from the leaves alone.
    let head = head_of_size(&node, 4).await;
    let (_, key) = get(&node, "/v1/log/key").await;
    check_head_signature(key["public_key"].as_str().unwrap(), &head);
    assert_eq!(head["key_id"], key["key_id"]);
    let leaves = leaves(&node, 4).await;
    assert_eq!(leaves.len(), 4);
    let root = h(&head["root"]);
    assert_eq!(rfc9162::mth(&leaves), root);
    // The platform's receipt: its commitment is leaf 0, proved in the head.
    let commitment = h(&receipt["commitment"]);
    assert_eq!(leaves[0], rfc9162::leaf(&commitment));
    for index in 0..4u64 {
        let (status, proof) = get(
            &node,
            &format!("/v1/log/proofs/inclusion?index={index}&size=4"),
        )
        .await;
        assert_eq!(status, 200, "{proof}");
        assert!(rfc9162::verify_inclusion(
            index,
            4,
            leaves[index as usize],
            &hashes(&proof["proof"]),
            &root
        ));
        // And it proves nothing for another leaf.
        assert!(!rfc9162::verify_inclusion(
            index,
            4,
            leaves[(index as usize + 1) % 4],
            &hashes(&proof["proof"]),
            &root
        ));
    }
    for from in 1..=4u64 {
        let (status, proof) = get(
            &node,
            &format!("/v1/log/proofs/consistency?from={from}&to=4"),
        )
        .await;
        assert_eq!(status, 200, "{proof}");
        assert!(
            rfc9162::verify_consistency(
                from,
                4,
                &rfc9162::mth(&leaves[..from as usize]),
                &root,
                &hashes(&proof["proof"])
            ),
            "consistency {from} -> 4"
        );
    }
    // Beyond the log: a caller error, not a 500.
    let (status, error) = get(&node, "/v1/log/proofs/inclusion?index=9&size=99").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("out_of_range"))
    );
    let (status, _) = get(&node, "/v1/log/proofs/inclusion?index=x&size=1").await;
    assert_eq!(status, 400);
    // Nothing in heads, proofs or leaves names anyone.
    let public = format!("{head}{:?}", leaves);
    assert!(!public.contains(a.as_str()) && !public.contains(b.as_str()));
}

async fn enroll(node: &Node, device: &DeviceSigningKey, seed: u64) -> WebNumber {
    let id = synthetic_resident_id(seed);
    let birth = format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]);
    let (status, answer) = node
        .client()
        .await
        .call(
            Method::POST,
            "/v1/enrollments",
            Some(&node.prepared.agent_key),
            Some(json!({
                "document": { "name": "测试", "resident_id": id, "birth_date": birth,
                              "valid_from": "2020-01-01" },
                "device_key": device.public_key().to_spki_pem().unwrap(),
            })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{answer} (agent {AGENT})");
    answer["web_number"].as_str().unwrap().parse().unwrap()
}

async fn holder_certificate(node: &Node, holder: WebNumber, device: &DeviceSigningKey) -> String {
    let mut request = HolderRequest::new(holder, Disclose::Nothing, SystemClock.now()).unwrap();
    request.audience = Some(SHOP.parse().unwrap());
    let body = serde_json::to_value(HolderRequestBody::from(&request.sign(device).unwrap()));
    let (status, issued) = node
        .client()
        .await
        .call(
            Method::POST,
            "/v1/holder/certificates",
            None,
            Some(body.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{issued}");
    issued["certificate"].as_str().unwrap().to_owned()
}

async fn read_log(node: &Node, body: &Value) -> (u16, Value) {
    let (status, answer) = node
        .client()
        .await
        .call(Method::POST, "/v1/holder/log", None, Some(body.clone()))
        .await
        .unwrap();
    (status.as_u16(), answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_reads_and_checks_their_own_log_and_nobody_elses() {
    let node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let (phone, other_phone) = (
        DeviceSigningKey::generate().unwrap(),
        DeviceSigningKey::generate().unwrap(),
    );
    let holder = enroll(&node, &phone, 1).await;
    let other = enroll(&node, &other_phone, 2).await;

    let certificate = holder_certificate(&node, holder, &phone).await;
    assert_eq!(verdict(&mut client, &shop, &certificate).await, "valid");
    assert_eq!(verdict(&mut client, &shop, &certificate).await, "replayed");
    let others = holder_certificate(&node, other, &other_phone).await;
    assert_eq!(verdict(&mut client, &shop, &others).await, "valid");
    let head = head_of_size(&node, 3).await;

    let read = LogRead::new(holder, 0, SystemClock.now())
        .unwrap()
        .sign(&phone)
        .unwrap();
    let body = serde_json::to_value(LogReadBody::from(&read)).unwrap();
    let (status, log) = read_log(&node, &body).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["head"], head);
    let entries = log["entries"].as_array().unwrap();
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|entry| entry["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["valid", "replayed"],
        "only this holder's entries"
    );
    assert_eq!(log["next_from"], Value::Null);
    let (_, key) = get(&node, "/v1/log/key").await;
    check_head_signature(key["public_key"].as_str().unwrap(), &log["head"]);
    let root = h(&log["head"]["root"]);
    for entry in entries {
        // The device's checks: the entry names this holder, opens its commitment with its
        // secret, and is in the head everybody is shown.
        let bytes = hex::decode(entry["entry"].as_str().unwrap()).unwrap();
        assert_eq!(&bytes[26..36], holder.as_str().as_bytes());
        assert_eq!(&bytes[10..10 + SHOP.len()], SHOP.as_bytes());
        let secret = hex::decode(entry["secret"].as_str().unwrap()).unwrap();
        let commitment = rfc9162::sm3(&[b"CYBERID-LOG-ENTRY-1", &secret, &bytes]);
        assert_eq!(commitment, h(&entry["commitment"]));
        assert!(rfc9162::verify_inclusion(
            entry["log_index"].as_u64().unwrap(),
            head["size"].as_u64().unwrap(),
            rfc9162::leaf(&commitment),
            &hashes(&entry["inclusion_proof"]),
            &root,
        ));
    }

    // A read is good once, and only from the holder's enrolled device.
    let (status, answer) = read_log(&node, &body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("request_replayed"))
    );
    let stolen = LogRead::new(holder, 0, SystemClock.now())
        .unwrap()
        .sign(&other_phone)
        .unwrap();
    let (status, _) = read_log(
        &node,
        &serde_json::to_value(LogReadBody::from(&stolen)).unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // Paging: from past the holder's entries, nothing.
    let later = LogRead::new(holder, 2, SystemClock.now())
        .unwrap()
        .sign(&phone)
        .unwrap();
    let (status, page) = read_log(
        &node,
        &serde_json::to_value(LogReadBody::from(&later)).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page["entries"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_log_answers_as_before_and_says_so() {
    let node = Node::start(|config| config.auth_log = false).await;
    let mut client = node.client().await;
    let (_, valid) = verify(
        &mut client,
        &node.prepared.shop_key,
        &node.certificate(WebNumber::generate().unwrap(), Some(SHOP)),
    )
    .await;
    assert_eq!(valid["verdict"], "valid");
    assert!(valid.get("receipt").is_none(), "{valid}");
    let (status, error) = get(&node, "/v1/log/head").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("log_disabled"))
    );
}

async fn authority_query(node: &Node, key: &str, body: Value) -> (u16, Value) {
    let (status, answer) = node
        .client()
        .await
        .call(Method::POST, "/v1/admin/log/query", Some(key), Some(body))
        .await
        .unwrap();
    (status.as_u16(), answer)
}

async fn holder_reads(node: &Node, holder: WebNumber, device: &DeviceSigningKey) -> Vec<Value> {
    let read = LogRead::new(holder, 0, SystemClock.now())
        .unwrap()
        .sign(device)
        .unwrap();
    let (status, log) = read_log(
        node,
        &serde_json::to_value(LogReadBody::from(&read)).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{log}");
    log["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_reads_only_with_a_case_reference_and_the_holder_sees_it_unless_sealed() {
    let node = Node::start(|_| {}).await;
    let mut client = node.client().await;
    let (shop, authority) = (
        node.prepared.shop_key.clone(),
        node.prepared.authority_key.clone(),
    );
    let phone = DeviceSigningKey::generate().unwrap();
    let holder = enroll(&node, &phone, 3).await;
    let certificate = holder_certificate(&node, holder, &phone).await;
    assert_eq!(verdict(&mut client, &shop, &certificate).await, "valid");

    // Refused: no case reference, a reference that could carry anything, two targets, or a
    // platform's key. None of these is recorded or answered with entries.
    for bad in [
        json!({ "web_number": holder }),
        json!({ "web_number": holder, "case_reference": "line\nbreak" }),
        json!({ "web_number": holder, "certificate_id": "00".repeat(16), "case_reference": "x" }),
        json!({ "web_number": holder, "case_reference": "x", "sealed_days": 366 }),
    ] {
        let (status, answer) = authority_query(&node, &authority, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, _) = authority_query(
        &node,
        &shop,
        json!({ "web_number": holder, "case_reference": "x" }),
    )
    .await;
    assert_eq!(status, 403);

    // By Web Number: the answer holds the holder's entry and the access itself, recorded first.
    let (status, answer) = authority_query(
        &node,
        &authority,
        json!({ "web_number": holder, "case_reference": "case 2026/0042" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let kinds: Vec<&str> = answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["verification", "access"]);
    assert_eq!(answer["access"]["log_index"], 1);

    // By certificate, sealed for 30 days: recorded, but the holder is not shown it yet.
    let id = &answer["entries"][0]["certificate_id"];
    let (status, sealed) = authority_query(
        &node,
        &authority,
        json!({ "certificate_id": id, "case_reference": "case 2026/0043", "sealed_days": 30 }),
    )
    .await;
    assert_eq!(status, 200, "{sealed}");
    assert_eq!(sealed["access"]["log_index"], 2);

    let seen = holder_reads(&node, holder, &phone).await;
    let summary: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|entry| {
            (
                entry["kind"].as_str().unwrap(),
                entry["case_reference"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("verification", None), ("access", Some("case 2026/0042"))],
        "the holder sees the open access, not the sealed one"
    );
    // The open access is committed like any entry: its commitment opens with its secret.
    let access = &seen[1];
    let bytes = hex::decode(access["entry"].as_str().unwrap()).unwrap();
    let secret = hex::decode(access["secret"].as_str().unwrap()).unwrap();
    assert_eq!(
        rfc9162::sm3(&[b"CYBERID-LOG-ENTRY-1", &secret, &bytes]),
        h(&access["commitment"])
    );
    assert_eq!(bytes[0], 2, "an access record");
}
