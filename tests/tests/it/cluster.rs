//! Nodes of one deployment on real 3-member etcd clusters (started on loopback by the store
//! crate's test support): one replay domain and one revocation set over HTTP, and the
//! deployment under faults (`failover`: the cluster's; `node_killed`: a node's; `partition`:
//! a node cut off from its cluster).

mod failover;
mod node_killed;
mod partition;

use cyberid_engine::WebNumber;
use cyberid_tests::cluster::{start_cluster, store_url, two_nodes};
use cyberid_tests::node::{SHOP, verdict, verify};
use hyper::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_replay_domain_and_one_revocation_set() {
    let cluster = start_cluster().await;
    let (a, b) = two_nodes(&store_url(&cluster.endpoints(), "two-nodes")).await;
    let shop = a.prepared.shop_key.clone();

    // One certificate sent to both nodes at once, many times over: exactly one valid.
    for _ in 0..10 {
        let text = a.certificate(WebNumber::generate().unwrap(), Some(SHOP));
        let mut answers = Vec::new();
        for node in [&a, &b, &a, &b] {
            let (mut client, shop, text) = (node.client().await, shop.clone(), text.clone());
            answers.push(tokio::spawn(async move {
                verdict(&mut client, &shop, &text).await
            }));
        }
        let mut verdicts = Vec::new();
        for answer in answers {
            verdicts.push(answer.await.unwrap());
        }
        assert_eq!(
            verdicts.iter().filter(|v| *v == "valid").count(),
            1,
            "{verdicts:?}"
        );
        assert!(verdicts.iter().all(|v| v == "valid" || v == "replayed"));
    }

    // Both nodes name a holder by the same pairwise subject: the subject key is the
    // deployment's, not a node's.
    let holder = WebNumber::generate().unwrap();
    let mut subjects = Vec::new();
    for node in [&a, &b] {
        let (status, body) = verify(
            &mut node.client().await,
            &shop,
            &a.certificate(holder, Some(SHOP)),
        )
        .await;
        assert_eq!(
            (status, &body["subject_type"]),
            (200, &"pairwise".into()),
            "{body}"
        );
        subjects.push(body["subject"].clone());
    }
    assert_eq!(subjects[0], subjects[1]);

    // A Web Number suspended through node A is refused by node B.
    let holder = WebNumber::generate().unwrap();
    a.suspend(holder).await;
    let mut client = b.client().await;
    // The revocation travels by the cluster's watch: poll, within the 1 s the store promises
    // and a margin for this shared machine.
    let mut refused = false;
    for _ in 0..40 {
        let text = a.certificate(holder, Some(SHOP));
        if verdict(&mut client, &shop, &text).await == "revoked" {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "node B refuses the suspended Web Number within 2 s"
    );

    // Readiness reflects the shared store.
    let (status, body) = client
        .call(Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200, "{body}");

    // The store's work is in the node's metrics.
    let (status, body) = client
        .call(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let text = body.as_str().unwrap();
    let txns = text
        .lines()
        .find_map(|line| line.strip_prefix("cyberid_etcd_txns_total "))
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no transaction count in {text}"));
    assert!(txns > 0);
    assert!(text.contains("cyberid_etcd_view_age_seconds "));
}

/// The issuing side on a shared store: a person enrolled through one node asks the other for a
/// certificate, is found again by the other (same Web Number, new phone), and the certificate
/// verifies on the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_registry_of_enrollments() {
    use cyberid_engine::Clock;
    use cyberid_identity::{DeviceSigningKey, Disclose, HolderRequest, HolderRequestBody};
    use serde_json::json;

    let cluster = start_cluster().await;
    let (a, b) = two_nodes(&store_url(&cluster.endpoints(), "enrollments")).await;
    let enroll = |node: &cyberid_tests::node::Node, phone: &DeviceSigningKey| {
        let body = json!({
            "document": { "name": "测试", "resident_id": "110105199003151239",
                          "birth_date": "1990-03-15", "valid_from": "2020-01-01" },
            "device_key": phone.public_key().to_spki_pem().unwrap(),
        });
        let (address, key) = (node.address, node.prepared.agent_key.clone());
        async move {
            let mut client = cyberid::Client::connect(address).await.unwrap();
            let (status, answer) = client
                .call(Method::POST, "/v1/enrollments", Some(&key), Some(body))
                .await
                .unwrap();
            (status.as_u16(), answer)
        }
    };
    let first_phone = DeviceSigningKey::generate().unwrap();
    let (status, first) = enroll(&a, &first_phone).await;
    assert_eq!(status, 201, "{first}");
    let holder: WebNumber = first["web_number"].as_str().unwrap().parse().unwrap();

    let new_phone = DeviceSigningKey::generate().unwrap();
    let (status, again) = enroll(&b, &new_phone).await;
    assert_eq!(
        (status, &again["web_number"]),
        (200, &first["web_number"]),
        "{again}"
    );

    let mut request =
        HolderRequest::new(holder, Disclose::Age, cyberid_engine::SystemClock.now()).unwrap();
    request.audience = Some(SHOP.parse().unwrap());
    let body =
        serde_json::to_value(HolderRequestBody::from(&request.sign(&new_phone).unwrap())).unwrap();
    let (status, issued) = b
        .client()
        .await
        .call(Method::POST, "/v1/holder/certificates", None, Some(body))
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 201, "{issued}");
    let mut client = a.client().await;
    let certificate = issued["certificate"].as_str().unwrap();
    assert_eq!(
        verdict(&mut client, &a.prepared.shop_key, certificate).await,
        "valid"
    );
}
