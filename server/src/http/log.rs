//! The authentication log's routes (protocol.md §12, docs/log.md).
//!
//! Heads, proofs and leaves are public: they are commitments, which reveal nobody without the
//! per-entry secrets, and the point of a transparency log is that anyone can check it. A
//! holder reads their own entries, with the secrets and inclusion proofs, by a request their
//! enrolled device signed.

use std::sync::Arc;

use cyberid_identity::{LogReadBody, SignedLogRead};
use cyberid_translog::{Error as LogError, Fault as LogFault, Hash, SignedTreeHead, encode_entry};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::identity::{parse, service};
use super::{Answer, ApiError, internal, json, read_body};
use crate::node::{App, Engine, PAGE_LIMIT, ProvenEntry};

/// What a path under `/v1/log/` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Head,
    Key,
    Inclusion,
    Consistency,
    Leaves,
}

impl Target {
    pub(super) fn resolve(rest: &[&str]) -> Option<Self> {
        Some(match rest {
            ["head"] => Target::Head,
            ["key"] => Target::Key,
            ["proofs", "inclusion"] => Target::Inclusion,
            ["proofs", "consistency"] => Target::Consistency,
            ["leaves"] => Target::Leaves,
            _ => return None,
        })
    }
}

impl ApiError {
    fn log(error: &LogError, retry_after: u64) -> Self {
        match error.fault() {
            LogFault::Caller => Self::bad_request(error.code(), error.to_string()),
            LogFault::Retry => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error.code(),
                error.to_string(),
            )
            .retry_after(retry_after),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                error.code(),
                error.to_string(),
            ),
        }
    }
}

fn engine_with_log(app: &App) -> Result<Arc<Engine>, ApiError> {
    let engine = app.engine()?;
    if engine.log.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "log_disabled",
            "this node keeps no authentication log",
        ));
    }
    Ok(engine)
}

#[derive(Serialize)]
pub(crate) struct HeadBody {
    size: u64,
    timestamp_ms: u64,
    root: String,
    signature: String,
    key_id: String,
}

impl HeadBody {
    fn of(head: &SignedTreeHead, key_id: String) -> Self {
        Self {
            size: head.head.size,
            timestamp_ms: head.head.timestamp_ms,
            root: head.head.root.to_hex(),
            signature: hex::encode(head.signature),
            key_id,
        }
    }
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_hex).collect()
}

/// Parses `name=u64` pairs; every name must be one of `names`, each at most once.
fn numbers<const N: usize>(
    query: Option<&str>,
    names: [&'static str; N],
) -> Result<[Option<u64>; N], ApiError> {
    let mut values = [None; N];
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let position = names.iter().position(|name| *name == key).ok_or_else(|| {
            ApiError::bad_request(
                "bad_query",
                format!("the query accepts only {}", names.join(", ")),
            )
        })?;
        if values[position].is_some() {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("{key} is given twice"),
            ));
        }
        values[position] = Some(value.parse().map_err(|_| {
            ApiError::bad_request(
                "bad_query",
                format!("{key} must be a number from 0 to 2^64-1"),
            )
        })?);
    }
    Ok(values)
}

fn required(value: Option<u64>, name: &str) -> Result<u64, ApiError> {
    value.ok_or_else(|| ApiError::bad_request("bad_query", format!("{name} is required")))
}

/// `GET /v1/log/...`.
pub(super) async fn handle(app: &Arc<App>, request: Request<Incoming>, target: Target) -> Answer {
    let engine = engine_with_log(app)?;
    let log = engine.log.as_ref().ok_or_else(internal)?;
    let retry_after = app.config.retry_after_s;
    let key_id = log.public_key().key_id().to_string();
    let query = request.uri().query();
    match target {
        Target::Head => {
            let [size] = numbers(query, ["size"])?;
            let head = match size {
                None => log.latest_head(),
                Some(size) => log
                    .head_at(size)
                    .map_err(|error| ApiError::log(&error, retry_after))?,
            };
            let head = head.ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_head",
                    "no tree head was signed for this size (heads are signed once a second \
                     while the log grows)",
                )
            })?;
            Ok(json(StatusCode::OK, &HeadBody::of(&head, key_id)))
        }
        Target::Key => Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "key_id": key_id,
                "public_key": log.public_key().to_spki_pem().map_err(|_| internal())?,
            }),
        )),
        Target::Inclusion => {
            let [index, size] = numbers(query, ["index", "size"])?;
            let (index, size) = (required(index, "index")?, required(size, "size")?);
            let proof = log
                .inclusion(index, size)
                .map_err(|error| ApiError::log(&error, retry_after))?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "index": index, "size": size, "proof": hexes(&proof) }),
            ))
        }
        Target::Consistency => {
            let [from, to] = numbers(query, ["from", "to"])?;
            let (from, to) = (required(from, "from")?, required(to, "to")?);
            let proof = log
                .consistency(from, to)
                .map_err(|error| ApiError::log(&error, retry_after))?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "from": from, "to": to, "proof": hexes(&proof) }),
            ))
        }
        Target::Leaves => {
            let [from, count] = numbers(query, ["from", "count"])?;
            let from = from.unwrap_or(0);
            let count = count.unwrap_or(PAGE_LIMIT as u64).min(PAGE_LIMIT as u64) as usize;
            let leaves = log
                .leaves(from, count)
                .map_err(|error| ApiError::log(&error, retry_after))?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "from": from, "size": log.size(), "leaves": hexes(&leaves) }),
            ))
        }
    }
}

#[derive(Serialize)]
struct EntryBody {
    log_index: u64,
    at_ms: u64,
    platform: String,
    outcome: &'static str,
    certificate_id: String,
    disclosed: u16,
    /// The entry's binary form (protocol.md §12), hex: what the commitment covers.
    entry: String,
    secret: String,
    commitment: String,
    /// In the answer's head; absent for an entry newer than that head.
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<Vec<String>>,
}

impl EntryBody {
    fn of(proven: &ProvenEntry) -> Self {
        let stored = &proven.stored;
        Self {
            log_index: stored.index,
            at_ms: stored.entry.at_ms,
            platform: stored.entry.platform.to_string(),
            outcome: stored.entry.outcome.code(),
            certificate_id: stored.entry.certificate_id.to_string(),
            disclosed: stored.entry.disclosed,
            entry: hex::encode(encode_entry(&stored.entry)),
            secret: hex::encode(stored.secret),
            commitment: stored.commitment().to_hex(),
            inclusion_proof: proven.proof.as_deref().map(hexes),
        }
    }
}

/// `POST /v1/holder/log`: the signing holder's own entries, from the index they name.
pub(super) async fn holder_log(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    let engine = engine_with_log(app)?;
    let service = service(app)?;
    let body = read_body(app, request).await?;
    let body: LogReadBody = parse(&body)?;
    let retry_after = app.config.retry_after_s;
    let signed =
        SignedLogRead::try_from(body).map_err(|error| ApiError::identity(&error, retry_after))?;
    let now = app.now();
    let read_from = signed.unverified().from;
    // The nonce's synced write and the reads: off the async workers.
    let (entries, head) = tokio::task::spawn_blocking(move || {
        let holder = service
            .authorize_log_read(&signed, now)
            .map_err(|error| ApiError::identity(&error, retry_after))?;
        let log = engine.log.as_ref().ok_or_else(internal)?;
        let (entries, head) = log
            .holder_entries(&holder, read_from)
            .map_err(|error| ApiError::log(&error, retry_after))?;
        let key_id = log.public_key().key_id().to_string();
        Ok::<_, ApiError>((entries, head.map(|head| HeadBody::of(&head, key_id))))
    })
    .await
    .map_err(|_| internal())??;
    let next_from = (entries.len() == PAGE_LIMIT)
        .then(|| entries.last().map(|last| last.stored.index + 1))
        .flatten();
    let entries: Vec<EntryBody> = entries.iter().map(EntryBody::of).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "head": head, "entries": entries, "next_from": next_from }),
    ))
}
