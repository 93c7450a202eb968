//! The issuing side over real HTTP on a real RocksDB store: an enrollment agent enrolls an
//! adult and a child with their guardian, holders ask for certificates with their device keys,
//! a platform verifies them; and nothing of anyone's identity is left in the clear on disk.

use cyberid_engine::{Clock, SystemClock, WebNumber};
use cyberid_identity::{
    DeviceSigningKey, Disclose, GuardianConsent, HolderRequest, HolderRequestBody, ResidentId,
};
use cyberid_tests::node::{AGENT, Node, SHOP, verify};
use hyper::Method;
use serde_json::{Value, json};

/// An adult: 1990-03-15, long-term card. The number's check character is computed by the
/// standard (GB 11643, ISO 7064 MOD 11-2).
const ADULT_NAME: &str = "张伟测试";
const ADULT_ID: &str = "110105199003151239";
/// A child of 9 (born 2017-06-01).
const CHILD_NAME: &str = "张小明测试";
const CHILD_ID: &str = "110105201706010029";

fn document(name: &str, id: &str) -> Value {
    let birth = format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]);
    json!({ "name": name, "resident_id": id, "birth_date": birth, "valid_from": "2020-01-01" })
}

async fn enroll(node: &Node, body: Value) -> (u16, Value) {
    let (status, answer) = node
        .client()
        .await
        .call(
            Method::POST,
            "/v1/enrollments",
            Some(&node.prepared.agent_key),
            Some(body),
        )
        .await
        .unwrap();
    (status.as_u16(), answer)
}

fn enrollment(name: &str, id: &str, device: &DeviceSigningKey) -> Value {
    json!({
        "document": document(name, id),
        "device_key": device.public_key().to_spki_pem().unwrap(),
    })
}

async fn ask(
    node: &Node,
    holder: WebNumber,
    device: &DeviceSigningKey,
    disclose: Disclose,
) -> (u16, Value) {
    let mut request = HolderRequest::new(holder, disclose, SystemClock.now()).unwrap();
    request.audience = Some(SHOP.parse().unwrap());
    let body =
        serde_json::to_value(HolderRequestBody::from(&request.sign(device).unwrap())).unwrap();
    let (status, answer) = node
        .client()
        .await
        .call(Method::POST, "/v1/holder/certificates", None, Some(body))
        .await
        .unwrap();
    (status.as_u16(), answer)
}

fn web_number(answer: &Value) -> WebNumber {
    answer["web_number"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adult_and_a_child_enroll_and_their_certificates_verify() {
    assert!(ADULT_ID.parse::<ResidentId>().is_ok() && CHILD_ID.parse::<ResidentId>().is_ok());
    let node = Node::start(|_| {}).await;
    let parent_phone = DeviceSigningKey::generate().unwrap();
    let (status, parent) = enroll(&node, enrollment(ADULT_NAME, ADULT_ID, &parent_phone)).await;
    assert_eq!(status, 201, "{parent}");
    let parent_number = web_number(&parent);

    // The adult's certificate carries the age bracket only when asked.
    let (status, issued) = ask(&node, parent_number, &parent_phone, Disclose::Age).await;
    assert_eq!(status, 201, "{issued}");
    let mut client = node.client().await;
    let (status, verdict) = verify(
        &mut client,
        &node.prepared.shop_key,
        issued["certificate"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(verdict["verdict"], "valid", "{verdict}");
    assert_eq!(verdict["subject_type"], "pairwise", "{verdict}");
    assert!(!verdict.to_string().contains(parent_number.as_str()));
    assert_eq!(verdict["claims"]["age"], "adult", "{verdict}");

    // A child under 14 needs the guardian's consent, signed on the guardian's phone.
    let child_phone = DeviceSigningKey::generate().unwrap();
    let (status, refused) = enroll(&node, enrollment(CHILD_NAME, CHILD_ID, &child_phone)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("guardian_required")),
        "{refused}"
    );
    let consent = GuardianConsent::sign(
        parent_number,
        &parent_phone,
        &CHILD_ID.parse().unwrap(),
        &child_phone.public_key(),
        SystemClock.now(),
    )
    .unwrap();
    let mut body = enrollment(CHILD_NAME, CHILD_ID, &child_phone);
    body["guardian_consent"] = serde_json::to_value(&consent).unwrap();
    let (status, child) = enroll(&node, body.clone()).await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["guardian"], parent_number.to_string());
    let child_number = web_number(&child);
    // The same consent twice: refused, good once.
    let (status, again) = enroll(&node, body).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("request_replayed")),
        "{again}"
    );

    // A child's certificate says minor even when the child discloses nothing.
    let (status, issued) = ask(&node, child_number, &child_phone, Disclose::Nothing).await;
    assert_eq!(status, 201, "{issued}");
    let (_, verdict) = verify(
        &mut client,
        &node.prepared.shop_key,
        issued["certificate"].as_str().unwrap(),
    )
    .await;
    assert_eq!(verdict["claims"]["age"], "minor", "{verdict}");

    // The audit trail: who enrolled whom, and the guardian link; never a name or number.
    let (status, history) = node
        .client()
        .await
        .call(
            Method::GET,
            "/v1/admin/revocations",
            Some(&node.prepared.authority_key),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let text = history.to_string();
    assert!(
        text.contains("\"guardian_linked\"") && text.contains(AGENT),
        "{text}"
    );
    assert!(!text.contains(ADULT_ID) && !text.contains("张"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_phone_keeps_the_web_number_and_the_old_phone_stops_at_once() {
    let node = Node::start(|_| {}).await;
    let old = DeviceSigningKey::generate().unwrap();
    let (status, first) = enroll(&node, enrollment(ADULT_NAME, ADULT_ID, &old)).await;
    assert_eq!(status, 201);
    let new = DeviceSigningKey::generate().unwrap();
    let (status, second) = enroll(&node, enrollment(ADULT_NAME, ADULT_ID, &new)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["web_number"], first["web_number"]);
    assert_eq!(second["re_enrolled"], true);
    let holder = web_number(&first);
    let (status, refused) = ask(&node, holder, &old, Disclose::Nothing).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("device_signature"))
    );
    assert_eq!(ask(&node, holder, &new, Disclose::Nothing).await.0, 201);
    // An unknown holder is answered exactly as a bad signature.
    let (status, unknown) = ask(
        &node,
        WebNumber::generate().unwrap(),
        &new,
        Disclose::Nothing,
    )
    .await;
    assert_eq!((status, unknown), (401, refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_refuses_bad_documents_and_other_credentials_without_echoing_them() {
    let node = Node::start(|_| {}).await;
    let phone = DeviceSigningKey::generate().unwrap();
    let mut bad_check = enrollment(ADULT_NAME, ADULT_ID, &phone);
    bad_check["document"]["resident_id"] = "110105199003151231".into();
    let (status, answer) = enroll(&node, bad_check).await;
    assert_eq!(status, 400);
    let text = answer.to_string();
    assert!(
        text.contains("check character") && !text.contains("1101051990"),
        "{text}"
    );

    let mut expired = enrollment(ADULT_NAME, ADULT_ID, &phone);
    expired["document"]["valid_until"] = "2021-01-01".into();
    let (status, answer) = enroll(&node, expired).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("document_expired"))
    );

    let mut typo = enrollment(ADULT_NAME, ADULT_ID, &phone);
    typo["document"]["birth_date"] = 19_900_315.into();
    let (status, answer) = enroll(&node, typo).await;
    assert_eq!(status, 400);
    assert!(!answer.to_string().contains("19900315"), "{answer}");

    // A platform's key does not enroll.
    let (status, _) = node
        .client()
        .await
        .call(
            Method::POST,
            "/v1/enrollments",
            Some(&node.prepared.shop_key),
            Some(enrollment(ADULT_NAME, ADULT_ID, &phone)),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 403);
}

/// Every way the identity could appear in a file: as UTF-8, as UTF-16 (either order), as
/// GB 18030 would not matter for the number (ASCII), hex and base64 of the UTF-8 bytes.
fn encodings(text: &str) -> Vec<Vec<u8>> {
    let utf8 = text.as_bytes().to_vec();
    let utf16le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let hex_lower = hex::encode(text).into_bytes();
    let hex_upper = hex::encode_upper(text).into_bytes();
    let base64 = base64_standard(text.as_bytes()).into_bytes();
    vec![utf8, utf16le, utf16be, hex_lower, hex_upper, base64]
}

fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_identity_is_left_on_disk() {
    let mut node = Node::start(|_| {}).await;
    let people = [
        ("李明镜像", "310104198507203019"),
        ("王芳镜像", "440305197711083028"),
        (ADULT_NAME, ADULT_ID),
    ];
    for (name, id) in people {
        assert!(id.parse::<ResidentId>().is_ok(), "{id}");
        let (status, answer) = enroll(
            &node,
            enrollment(name, id, &DeviceSigningKey::generate().unwrap()),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    node.shutdown().await;
    let mut paths = Vec::new();
    files(node.dir.path(), &mut paths);
    assert!(
        paths.iter().any(|p| p.to_string_lossy().contains("store")),
        "{paths:?}"
    );
    for (name, id) in people {
        let birth = &id[6..14];
        let mut needles = encodings(name);
        needles.extend(encodings(id));
        needles.extend(encodings(&id.to_lowercase()));
        needles.extend(encodings(&id[..17])); // without the check character
        needles.push(birth.as_bytes().to_vec());
        for path in &paths {
            let bytes = std::fs::read(path).unwrap();
            for needle in &needles {
                assert!(
                    !bytes
                        .windows(needle.len())
                        .any(|window| window == needle.as_slice()),
                    "{} holds {:?}",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_person_enrolled_at_once_on_many_connections_gets_one_web_number() {
    let node = std::sync::Arc::new(Node::start(|_| {}).await);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move {
                let phone = DeviceSigningKey::generate().unwrap();
                enroll(&node, enrollment(ADULT_NAME, ADULT_ID, &phone)).await
            })
        })
        .collect();
    let mut created = 0;
    let mut numbers = std::collections::HashSet::new();
    for task in tasks {
        let (status, answer) = task.await.unwrap();
        assert!(status == 200 || status == 201, "{status} {answer}");
        created += usize::from(status == 201);
        numbers.insert(answer["web_number"].as_str().unwrap().to_owned());
    }
    assert_eq!((created, numbers.len()), (1, 1), "{numbers:?}");
}
