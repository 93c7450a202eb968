//! Disclosure beyond the result over real HTTP (protocol.md §13): attributes reach a platform
//! only with an authority's entitlement and the holder's consent, only with a `valid` answer,
//! and every disclosure is in the log entry of that answer; withdrawal takes effect at once; a
//! new purpose needs consent again; and no attribute ever appears in a log line, a metric or
//! on disk.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use cyberid::{DataDir, Scope};
use cyberid_engine::{
    Attribute, Attributes, Certificate, Clock, PlatformId, SystemClock, WebNumber,
};
use cyberid_identity::{
    ConsentAction, ConsentRequest, ConsentRequestBody, DeviceSigningKey, Disclose, HolderRequest,
    HolderRequestBody, LogRead, LogReadBody, Purpose,
};
use cyberid_tests::node::{AUTHORITY, Node, verify};
use cyberid_tests::process::{self, KillOnDrop, wait_ready};
use hyper::Method;
use serde_json::{Value, json};

const NAME: &str = "欧阳披露测试";
const RESIDENT_ID: &str = "110105199003151239";
const PURPOSE: &str = "opening an account (KYC)";

fn name() -> Attributes {
    Attributes::of(&[Attribute::Name])
}

fn both() -> Attributes {
    Attributes::of(&Attribute::ALL)
}

/// Calls the node; the status and body.
async fn call(
    address: std::net::SocketAddr,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut client = cyberid::Client::connect(address).await.unwrap();
    let (status, answer) = client.call(method, path, key, body).await.unwrap();
    (status.as_u16(), answer)
}

async fn enroll(
    address: std::net::SocketAddr,
    agent_key: &str,
    device: &DeviceSigningKey,
) -> WebNumber {
    let body = json!({
        "document": { "name": NAME, "resident_id": RESIDENT_ID, "birth_date": "1990-03-15",
                      "valid_from": "2020-01-01" },
        "device_key": device.public_key().to_spki_pem().unwrap(),
    });
    let (status, answer) = call(
        address,
        Method::POST,
        "/v1/enrollments",
        Some(agent_key),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    answer["web_number"].as_str().unwrap().parse().unwrap()
}

/// A certificate for `audience`, asked for with `consent` in the signed request.
async fn certificate(
    address: std::net::SocketAddr,
    holder: WebNumber,
    device: &DeviceSigningKey,
    audience: &str,
    consent: Attributes,
) -> String {
    let mut request = HolderRequest::new(holder, Disclose::Nothing, SystemClock.now()).unwrap();
    request.audience = Some(audience.parse().unwrap());
    request.consent = consent;
    let body =
        serde_json::to_value(HolderRequestBody::from(&request.sign(device).unwrap())).unwrap();
    let (status, issued) = call(
        address,
        Method::POST,
        "/v1/holder/certificates",
        None,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    issued["certificate"].as_str().unwrap().to_owned()
}

/// Sends a signed consent request; the status and body.
async fn consent(
    address: std::net::SocketAddr,
    holder: WebNumber,
    device: &DeviceSigningKey,
    action: ConsentAction,
) -> (u16, Value) {
    let signed = ConsentRequest::new(holder, action, SystemClock.now())
        .unwrap()
        .sign(device)
        .unwrap();
    let body = serde_json::to_value(ConsentRequestBody::from(&signed)).unwrap();
    call(
        address,
        Method::POST,
        "/v1/holder/consent",
        None,
        Some(body),
    )
    .await
}

fn grant(platform: &str, attributes: Attributes, purpose: &str) -> ConsentAction {
    ConsentAction::Grant {
        platform: platform.parse().unwrap(),
        attributes,
        purpose: Purpose::of(purpose),
    }
}

fn withdraw(platform: &str) -> ConsentAction {
    ConsentAction::Withdraw {
        platform: platform.parse().unwrap(),
    }
}

/// The holder's log entries, by certificate id: `disclosed` bits and outcome.
async fn logged(
    address: std::net::SocketAddr,
    holder: WebNumber,
    device: &DeviceSigningKey,
) -> Vec<Value> {
    let read = LogRead::new(holder, 0, SystemClock.now())
        .unwrap()
        .sign(device)
        .unwrap();
    let body = serde_json::to_value(LogReadBody::from(&read)).unwrap();
    let (status, log) = call(address, Method::POST, "/v1/holder/log", None, Some(body)).await;
    assert_eq!(status, 200, "{log}");
    log["entries"].as_array().unwrap().clone()
}

/// The attributes object a platform should see for `attributes`.
fn expected(attributes: Attributes) -> Option<Value> {
    if attributes.is_empty() {
        return None;
    }
    let mut object = serde_json::Map::new();
    if attributes.contains(Attribute::Name) {
        object.insert("name".into(), json!(NAME));
    }
    if attributes.contains(Attribute::ResidentId) {
        object.insert("resident_id".into(), json!(RESIDENT_ID));
    }
    Some(Value::Object(object))
}

/// Registers a verifying platform with its entitlement (if any); its API key.
fn platform(dir: &DataDir, id: &str, entitled: Attributes, purpose: &str) -> String {
    let id: PlatformId = id.parse().unwrap();
    let key = dir
        .add_platform(&id, &[Scope::Verify], Some(0), SystemClock.now())
        .unwrap();
    if !entitled.is_empty() {
        dir.entitle_disclosure(
            &id,
            entitled,
            purpose,
            AUTHORITY,
            "Anti-Money Laundering Law art. 29",
            SystemClock.now(),
        )
        .unwrap();
    }
    key
}

/// Waits until the node has read the credentials file and serves `platform`'s entitlement as
/// `attributes` (none: not entitled).
async fn until_entitled(
    address: std::net::SocketAddr,
    platform: &str,
    attributes: Attributes,
    purpose: &str,
) {
    let path = format!("/v1/platforms/{platform}/disclosure");
    for _ in 0..100 {
        let (status, body) = call(address, Method::GET, &path, None, None).await;
        let current = match status {
            200 => serde_json::from_value::<Attributes>(body["attributes"].clone()).unwrap(),
            404 => Attributes::NONE,
            other => panic!("{other} {body}"),
        };
        if current == attributes && (status == 404 || body["purpose"] == purpose) {
            if status == 200 {
                assert_eq!(body["purpose_digest"], Purpose::of(purpose).to_string());
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node did not apply the entitlement of {platform} within 10 s");
}

#[derive(Debug, Clone, Copy)]
enum Consent {
    None,
    InCertificate,
    Standing,
    Withdrawn,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlement_times_consent_times_verdict_gives_exactly_the_allowed_fields() {
    let node = Node::start(|_| {}).await;
    let address = node.address;
    let dir = DataDir::open(node.dir.path()).unwrap();
    let platforms = [
        ("plain.example", Attributes::NONE),
        ("named.example", name()),
        ("kyc.example", both()),
    ];
    let keys: Vec<String> = platforms
        .iter()
        .map(|(id, entitled)| platform(&dir, id, *entitled, PURPOSE))
        .collect();
    for (id, entitled) in platforms {
        until_entitled(address, id, entitled, PURPOSE).await;
    }
    let phone = DeviceSigningKey::generate().unwrap();
    let holder = enroll(address, &node.prepared.agent_key, &phone).await;
    let mut client = node.client().await;
    // certificate id -> the disclosed bits its log entries must show, in order of use.
    let mut expected_log: Vec<(String, u16)> = Vec::new();

    for ((id, entitled), key) in platforms.into_iter().zip(&keys) {
        for mode in [
            Consent::None,
            Consent::InCertificate,
            Consent::Standing,
            Consent::Withdrawn,
        ] {
            match mode {
                Consent::Standing => {
                    let (status, body) =
                        consent(address, holder, &phone, grant(id, both(), PURPOSE)).await;
                    if entitled == both() {
                        assert_eq!(status, 200, "{body}");
                    } else {
                        // Never beyond the entitlement: refused, and nothing is recorded.
                        assert_eq!(
                            (status, body["error"]["code"].as_str()),
                            (400, Some("consent_not_entitled")),
                            "{body}"
                        );
                        if !entitled.is_empty() {
                            let (status, body) =
                                consent(address, holder, &phone, grant(id, entitled, PURPOSE))
                                    .await;
                            assert_eq!(status, 200, "{body}");
                        }
                    }
                }
                Consent::Withdrawn => {
                    let (status, body) = consent(address, holder, &phone, withdraw(id)).await;
                    assert_eq!(status, 200, "{body}");
                    assert!(
                        !body["consents"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|c| c["platform"] == id),
                        "{body}"
                    );
                }
                Consent::None | Consent::InCertificate => {}
            }
            let in_certificate = match mode {
                Consent::InCertificate => both(),
                _ => Attributes::NONE,
            };
            let allowed = match mode {
                Consent::None | Consent::Withdrawn => Attributes::NONE,
                Consent::InCertificate | Consent::Standing => entitled,
            };
            let context = format!("{id} {mode:?}");

            // Valid: exactly the allowed fields, and never the values elsewhere in the answer.
            let first = certificate(address, holder, &phone, id, in_certificate).await;
            let (status, body) = verify(&mut client, key, &first).await;
            assert_eq!(
                (status, body["verdict"].as_str()),
                (200, Some("valid")),
                "{context}: {body}"
            );
            assert_eq!(
                body.get("attributes").cloned(),
                expected(allowed),
                "{context}: {body}"
            );
            let mut rest = body.clone();
            rest.as_object_mut().unwrap().remove("attributes");
            assert!(
                !rest.to_string().contains(NAME) && !rest.to_string().contains(RESIDENT_ID),
                "{context}: {body}"
            );
            expected_log.push((certificate_id(&first), u16::from(allowed.bits())));

            // Replayed: the result only.
            let (status, body) = verify(&mut client, key, &first).await;
            assert_eq!(
                (status, body["reason"].as_str()),
                (200, Some("replayed")),
                "{context}: {body}"
            );
            assert!(body.get("attributes").is_none(), "{context}: {body}");
            expected_log.push((certificate_id(&first), 0));

            // Revoked before use: the result only.
            let revoked = certificate(address, holder, &phone, id, in_certificate).await;
            let path = format!("/v1/admin/certificates/{}/revoke", certificate_id(&revoked));
            let (status, body) = call(
                address,
                Method::POST,
                &path,
                Some(&node.prepared.authority_key),
                Some(json!({ "reason": "lost phone" })),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let (status, body) = verify(&mut client, key, &revoked).await;
            assert_eq!(
                (status, body["reason"].as_str()),
                (200, Some("revoked")),
                "{context}: {body}"
            );
            assert!(body.get("attributes").is_none(), "{context}: {body}");
            expected_log.push((certificate_id(&revoked), 0));

            // Another platform presenting it: wrong audience, never logged, nothing disclosed.
            let elsewhere = certificate(address, holder, &phone, id, in_certificate).await;
            let (status, body) = verify(&mut client, &node.prepared.shop_key, &elsewhere).await;
            assert_eq!(
                (status, body["reason"].as_str()),
                (200, Some("wrong_audience")),
                "{context}: {body}"
            );
            assert!(body.get("attributes").is_none(), "{context}: {body}");
        }
    }

    // The log shows exactly what each answer disclosed, in order.
    let entries = logged(address, holder, &phone).await;
    let shown: Vec<(String, u16)> = entries
        .iter()
        .filter(|e| e["kind"] == "verification")
        .map(|e| {
            (
                e["certificate_id"].as_str().unwrap().to_owned(),
                e["disclosed"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    assert_eq!(shown, expected_log);
}

/// The `attributes` of a `valid` answer to the platform with `key` for `text`.
async fn valid_attributes(address: std::net::SocketAddr, key: &str, text: &str) -> Option<Value> {
    let body = json!({ "certificate": text });
    let (status, body) = call(address, Method::POST, "/v1/verify", Some(key), Some(body)).await;
    assert_eq!(
        (status, body["verdict"].as_str()),
        (200, Some("valid")),
        "{body}"
    );
    body.get("attributes").cloned()
}

fn certificate_id(text: &str) -> String {
    Certificate::from_text(text)
        .unwrap()
        .fields()
        .certificate_id
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_is_immediate_and_a_new_purpose_needs_consent_again() {
    let node = Node::start(|_| {}).await;
    let address = node.address;
    let dir = DataDir::open(node.dir.path()).unwrap();
    let bank = "bank.example";
    let key = platform(&dir, bank, both(), PURPOSE);
    until_entitled(address, bank, both(), PURPOSE).await;
    let phone = DeviceSigningKey::generate().unwrap();
    let holder = enroll(address, &node.prepared.agent_key, &phone).await;
    let mut client = node.client().await;
    // What a valid answer for a new certificate (asked for with `consent`) carries.
    let attributes = async |consent: Attributes| {
        let text = certificate(address, holder, &phone, bank, consent).await;
        valid_attributes(address, &key, &text).await
    };

    // A grant names the purpose the app was shown: another purpose is refused.
    let (status, body) = consent(address, holder, &phone, grant(bank, name(), "marketing")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("consent_not_entitled")),
        "{body}"
    );
    let (status, body) = consent(address, holder, &phone, grant(bank, name(), PURPOSE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["consents"][0]["platform"], bank);
    assert_eq!(body["consents"][0]["attributes"], json!(["name"]));
    assert_eq!(
        body["consents"][0]["purpose"],
        Purpose::of(PURPOSE).to_string()
    );
    assert_eq!(attributes(Attributes::NONE).await, expected(name()));

    // Withdrawn: the very next verification carries the result only.
    let (status, body) = consent(address, holder, &phone, withdraw(bank)).await;
    assert_eq!(
        (status, body["consents"].clone()),
        (200, json!([])),
        "{body}"
    );
    assert_eq!(attributes(Attributes::NONE).await, None);

    // Granted again; then the authority re-registers the entitlement for another purpose: the
    // standing consent no longer counts, nor does consent in a certificate issued before it.
    let (status, body) = consent(address, holder, &phone, grant(bank, both(), PURPOSE)).await;
    assert_eq!(status, 200, "{body}");
    let early = certificate(address, holder, &phone, bank, both()).await;
    assert_eq!(attributes(Attributes::NONE).await, expected(both()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new_purpose = "statutory reporting";
    dir.entitle_disclosure(
        &bank.parse().unwrap(),
        both(),
        new_purpose,
        AUTHORITY,
        "basis",
        SystemClock.now(),
    )
    .unwrap();
    until_entitled(address, bank, both(), new_purpose).await;
    let (status, body) = verify(&mut client, &key, &early).await;
    assert_eq!((status, body.get("attributes")), (200, None), "{body}");
    assert_eq!(attributes(Attributes::NONE).await, None);
    // Consent in a new certificate, or to the new purpose, counts again.
    assert_eq!(attributes(name()).await, expected(name()));
    let (status, _) = consent(address, holder, &phone, grant(bank, both(), new_purpose)).await;
    assert_eq!(status, 200);
    assert_eq!(attributes(Attributes::NONE).await, expected(both()));

    // Listing changes nothing and needs the device: another key is refused.
    let (status, body) = consent(address, holder, &phone, ConsentAction::List).await;
    assert_eq!(
        (status, body["consents"].as_array().unwrap().len()),
        (200, 1),
        "{body}"
    );
    let stranger = DeviceSigningKey::generate().unwrap();
    let (status, _) = consent(address, holder, &stranger, ConsentAction::List).await;
    assert_eq!(status, 401);

    // The entitlement withdrawn: the result only, whatever the holder consented to.
    dir.withdraw_disclosure(&bank.parse().unwrap()).unwrap();
    until_entitled(address, bank, Attributes::NONE, "").await;
    assert_eq!(attributes(both()).await, None);
}

/// The node as a process, logging at `debug`: after disclosures, no attribute value appears
/// in anything it wrote (stdout, stderr), in its metrics, or anywhere in its data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attribute_appears_in_logs_metrics_or_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = cyberid_tests::node::prepare(dir.path());
    let data = DataDir::open(dir.path()).unwrap();
    let bank = "bank.example";
    let key = platform(&data, bank, both(), PURPOSE);
    let log_path = dir.path().join("..").join(format!(
        "{}.stderr",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    let stderr = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cyberid_node"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log",
            "debug",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let address = line
        .trim()
        .strip_prefix("cyberid listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    let mut child = KillOnDrop(child);
    wait_ready(address).await;

    let phone = DeviceSigningKey::generate().unwrap();
    let holder = enroll(address, &prepared.agent_key, &phone).await;
    let (status, body) = consent(address, holder, &phone, grant(bank, both(), PURPOSE)).await;
    assert_eq!(status, 200, "{body}");
    let mut client = cyberid::Client::connect(address).await.unwrap();
    for consent in [Attributes::NONE, both()] {
        let text = certificate(address, holder, &phone, bank, consent).await;
        let (status, body) = verify(&mut client, &key, &text).await;
        assert_eq!(
            (status, body.get("attributes").cloned()),
            (200, expected(both())),
            "{body}"
        );
        let (status, body) = verify(&mut client, &key, &text).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (200, Some("replayed")),
            "{body}"
        );
    }
    let (_, metrics) = client
        .call(Method::GET, "/metrics", None, None)
        .await
        .unwrap();
    let metrics = metrics.to_string();
    assert!(metrics.contains("cyberid_"), "{metrics}");
    let status = tokio::task::spawn_blocking(move || process::signal(&mut child.0, "TERM"))
        .await
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    std::fs::remove_file(&log_path).unwrap();
    assert!(
        logs.contains("DEBUG") || logs.contains("debug"),
        "the node logged at debug: {logs}"
    );

    let needles: Vec<Vec<u8>> = [NAME, RESIDENT_ID, &RESIDENT_ID[..17], "欧阳"]
        .iter()
        .flat_map(|text| {
            let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
            [text.as_bytes().to_vec(), utf16]
        })
        .collect();
    let mut texts = vec![
        ("stderr".to_owned(), logs.into_bytes()),
        ("stdout".to_owned(), rest.into_bytes()),
        ("metrics".to_owned(), metrics.into_bytes()),
    ];
    let mut files = Vec::new();
    walk(dir.path(), &mut files);
    for path in files {
        texts.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    for (place, bytes) in &texts {
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{place} holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}

fn walk(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            walk(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}
