//! `docs/openapi.yaml` against the running server: the same routes, each served, every answer
//! one the document lists, every body matching its documented schema.

use std::collections::BTreeSet;

use cyberid_engine::{CertificateId, Clock, Reason, SystemClock, WebNumber};
use cyberid_identity::{
    ConsentAction, ConsentRequest, ConsentRequestBody, DeviceSigningKey, Disclose, HolderRequest,
    HolderRequestBody, LogRead, LogReadBody,
};
use cyberid_tests::node::{Node, SHOP};
use cyberid_tests::workspace_root;
use hyper::Method;
use serde_json::{Value, json};

fn document() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("docs/openapi.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// Follows `$ref`s within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local reference");
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {reference}")),
            )
        }
        None => value,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses; the first mismatch.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|option| check(doc, option, value, at).is_ok())
            .count();
        return if matching == 1 {
            Ok(())
        } else {
            Err(format!("{at}: {value} matches {matching} of oneOf"))
        };
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: {value} is not {constant}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let object = value
                .as_object()
                .ok_or(format!("{at}: not an object: {value}"))?;
            let properties = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if !object.contains_key(name) {
                    return Err(format!("{at}: required {name} missing from {value}"));
                }
            }
            for (name, field) in object {
                match properties.get(name) {
                    Some(property) => check(doc, property, field, &format!("{at}.{name}"))?,
                    None if schema["additionalProperties"] == json!(false) => {
                        return Err(format!("{at}: undocumented property {name}"));
                    }
                    None => {}
                }
            }
            Ok(())
        }
        Some("array") => {
            let items = value.as_array().ok_or(format!("{at}: not an array"))?;
            for (index, item) in items.iter().enumerate() {
                check(doc, &schema["items"], item, &format!("{at}[{index}]"))?;
            }
            Ok(())
        }
        Some("integer") if !value.is_u64() => Err(format!("{at}: {value} is not an integer")),
        Some("string") if !value.is_string() => Err(format!("{at}: {value} is not a string")),
        Some("null") if !value.is_null() => Err(format!("{at}: {value} is not null")),
        _ => Ok(()),
    }
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            found.insert((method.to_uppercase(), path.clone()));
        }
    }
    found
}

#[test]
fn the_document_names_exactly_the_servers_routes() {
    let documented = operations(&document());
    let served: BTreeSet<(String, String)> = cyberid::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn the_documented_reason_codes_are_the_engines() {
    let doc = document();
    let documented: Vec<&str> = doc["components"]["schemas"]["Reason"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    let engine: Vec<&str> = Reason::ALL.iter().map(|reason| reason.code()).collect();
    assert_eq!(documented, engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_documented() {
    let doc = document();
    let mut node = Node::start(|config| config.issue_endpoint = true).await;
    let mut client = node.client().await;
    let holder = WebNumber::generate().unwrap();
    let key_id = node.prepared.issuer.key().key_id().to_string();
    let phone = DeviceSigningKey::generate().unwrap();
    // Set by the enrollment, used by the holder's request (the paths run in this order).
    let mut enrolled: Option<WebNumber> = None;
    let mut checked = 0;
    // Administrative actions last: they suspend the holder and revoke the key.
    let mut all: Vec<(String, String)> = operations(&doc).into_iter().collect();
    all.sort_by_key(|(_, template)| template.contains("/admin/"));
    for (method, template) in all {
        let operation = &doc["paths"][&template][method.to_lowercase()];
        let path = template
            .replace("{web_number}", &holder.to_string())
            .replace("{action}", "suspend")
            .replace(
                "{certificate_id}",
                &CertificateId::generate().unwrap().to_string(),
            )
            .replace("{key_id}", &key_id)
            .replace("{platform}", SHOP);
        let path = match template.as_str() {
            "/v1/admin/revocations" => format!("{path}?after=0&limit=5"),
            "/v1/log/proofs/inclusion" => format!("{path}?index=0&size=1"),
            "/v1/log/proofs/consistency" => format!("{path}?from=0&to=0"),
            "/v1/log/leaves" => format!("{path}?from=0&count=10"),
            _ => path,
        };
        let security = operation["security"][0].as_object();
        let key = security.map(|scheme| {
            if scheme.contains_key("authorityKey") {
                node.prepared.authority_key.clone()
            } else if scheme.contains_key("agentKey") {
                node.prepared.agent_key.clone()
            } else {
                node.prepared.shop_key.clone()
            }
        });
        let body = match template.as_str() {
            "/v1/verify" => Some(json!({ "certificate": node.certificate(holder, None) })),
            "/v1/certificates" => {
                Some(json!({ "web_number": holder, "claims": { "age": "adult" } }))
            }
            "/v1/enrollments" => Some(json!({
                "document": {
                    "name": "测试", "resident_id": "110105199003151239",
                    "birth_date": "1990-03-15", "valid_from": "2020-01-01",
                },
                "device_key": phone.public_key().to_spki_pem().unwrap(),
            })),
            "/v1/holder/log" => {
                let holder = enrolled.expect("enrolled first");
                let read = LogRead::new(holder, 0, SystemClock.now())
                    .unwrap()
                    .sign(&phone)
                    .unwrap();
                Some(serde_json::to_value(LogReadBody::from(&read)).unwrap())
            }
            "/v1/holder/consent" => {
                let holder = enrolled.expect("enrolled first");
                let list = ConsentRequest::new(holder, ConsentAction::List, SystemClock.now())
                    .unwrap()
                    .sign(&phone)
                    .unwrap();
                Some(serde_json::to_value(ConsentRequestBody::from(&list)).unwrap())
            }
            "/v1/holder/certificates" => {
                let holder = enrolled.expect("enrolled first");
                let request = HolderRequest::new(holder, Disclose::Age, SystemClock.now())
                    .unwrap()
                    .sign(&phone)
                    .unwrap();
                Some(serde_json::to_value(HolderRequestBody::from(&request)).unwrap())
            }
            _ if method == "POST" => Some(json!({ "reason": "openapi" })),
            _ => None,
        };
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut attempts = vec![(key.clone(), body.clone())];
        if template == "/v1/verify" {
            // Valid, then replayed: both verdict shapes.
            attempts.push((key.clone(), body.clone()));
        }
        if key.is_some() {
            // Without credentials: a documented 401 with a documented error body.
            attempts.push((None, body.clone()));
        }
        for (key, body) in attempts {
            let (status, answer) = client
                .call(method.clone(), &path, key.as_deref(), body)
                .await
                .unwrap();
            let documented = &operation["responses"][status.as_str()];
            assert!(
                !documented.is_null(),
                "{method} {template} answered {status}, which the document does not list: {answer}"
            );
            let response = resolve(&doc, documented);
            if let Some(schema) = response["content"]["application/json"].get("schema") {
                check(
                    &doc,
                    schema,
                    &answer,
                    &format!("{method} {template} {status}"),
                )
                .unwrap_or_else(|mismatch| panic!("{mismatch}"));
            }
            assert!(
                status.as_u16() < 500,
                "{method} {template} failed: {status} {answer}"
            );
            if template == "/v1/enrollments" && status.is_success() {
                enrolled = answer["web_number"]
                    .as_str()
                    .and_then(|text| text.parse().ok());
            }
            checked += 1;
        }
    }
    // Twice per route with credentials (with and without), once per route without (health,
    // readiness, metrics, the holder's signed requests, the public log), and verify once more
    // (replayed).
    let expected: usize = operations(&doc)
        .iter()
        .map(|(method, path)| {
            let secured = doc["paths"][path][method.to_lowercase()]["security"][0].is_object();
            if secured { 2 } else { 1 }
        })
        .sum::<usize>()
        + 1;
    assert_eq!(checked, expected);
    node.shutdown().await;
}

#[test]
fn the_verdict_discriminator_maps_each_value_to_its_schema() {
    let doc = document();
    let verdict = &doc["components"]["schemas"]["Verdict"];
    let mapping = verdict["discriminator"]["mapping"].as_object().unwrap();
    assert_eq!(verdict["discriminator"]["propertyName"], "verdict");
    assert_eq!(mapping.len(), 2);
    for (value, reference) in mapping {
        let reference = json!({ "$ref": reference });
        let schema = resolve(&doc, &reference);
        assert_eq!(
            schema["properties"]["verdict"]["const"], *value,
            "{reference}"
        );
    }
}

#[test]
fn every_error_code_the_server_answers_is_documented() {
    let text = std::fs::read_to_string(workspace_root().join("docs/openapi.yaml")).unwrap();
    for code in [
        "unauthenticated",
        "forbidden",
        "not_found",
        "method_not_allowed",
        "malformed_json",
        "malformed_text",
        "body_unreadable",
        "body_too_large",
        "body_timeout",
        "unsupported_media_type",
        "rate_limited",
        "bad_query",
        "bad_reason",
        "web_number_length",
        "web_number_character",
        "platform_id",
        "lifetime",
        "certificate_id",
        "key_id",
        "unknown_key",
        "issue_disabled",
        "revocation_final",
        "no_issuing_key",
        "overloaded",
        "bad_idempotency_key",
        "nonce_store_full",
        "store",
        "store_opening",
        "store_failed",
        "store_poisoned",
        "shutting_down",
        "malformed_body",
        "guardian_required",
        "guardian_consent",
        "device_signature",
        "holder_standing",
        "request_replayed",
        "stale_request",
        "enrollment_unsupported",
        "consent_not_entitled",
        "not_entitled",
    ] {
        let word = |(at, _): &(usize, &str)| {
            let identifier = |c: char| c.is_ascii_lowercase() || c == '_';
            !text[..*at].ends_with(identifier) && !text[at + code.len()..].starts_with(identifier)
        };
        assert!(
            text.match_indices(code).any(|found| word(&found)),
            "{code} is not documented"
        );
    }
}

/// The maximum of a schema in the document, at a JSON pointer.
fn maximum(doc: &Value, pointer: &str) -> u64 {
    doc.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no maximum at {pointer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_bounds_are_the_servers() {
    let doc = document();
    let mut node = Node::start(|config| config.issue_endpoint = true).await;
    let mut client = node.client().await;
    let shop = node.prepared.shop_key.clone();
    let authority = node.prepared.authority_key.clone();

    let lifetime = maximum(
        &doc,
        "/components/schemas/IssueRequest/properties/lifetime/maximum",
    );
    for (value, expected) in [(lifetime, 201), (lifetime + 1, 400)] {
        let body = json!({ "web_number": WebNumber::generate().unwrap(), "lifetime": value });
        let (status, answer) = client
            .call(Method::POST, "/v1/certificates", Some(&shop), Some(body))
            .await
            .unwrap();
        assert_eq!(status.as_u16(), expected, "lifetime {value}: {answer}");
    }

    let parameters = doc["paths"]["/v1/admin/revocations"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let bound = |name: &str| {
        let parameter = parameters.iter().find(|p| p["name"] == name).unwrap();
        parameter["schema"]["maximum"].as_u64().unwrap()
    };
    let after = bound("after");
    assert_eq!(after, u64::MAX);
    let limit = bound("limit");
    for (query, expected) in [
        (format!("after={after}&limit={limit}"), 200),
        (format!("after={}0", after), 400),
        (format!("limit={}", limit + 1), 400),
    ] {
        let (status, answer) = client
            .call(
                Method::GET,
                &format!("/v1/admin/revocations?{query}"),
                Some(&authority),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), expected, "{query}: {answer}");
    }

    let reason = &doc["components"]["schemas"]["RevokeRequest"]["properties"]["reason"];
    let longest = reason["maxLength"].as_u64().unwrap() as usize;
    let path = format!(
        "/v1/admin/web-numbers/{}/suspend",
        WebNumber::generate().unwrap()
    );
    for (length, expected) in [(longest, 200), (longest + 1, 400)] {
        let body = json!({ "reason": "r".repeat(length) });
        let (status, answer) = client
            .call(Method::POST, &path, Some(&authority), Some(body))
            .await
            .unwrap();
        assert_eq!(status.as_u16(), expected, "reason of {length}: {answer}");
    }
    node.shutdown().await;
}
