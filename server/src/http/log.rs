//! The authentication log's routes (protocol.md §12, docs/log.md).
//!
//! Heads, proofs and leaves are public: they are commitments, which reveal nobody without the
//! per-entry secrets, and the point of a transparency log is that anyone can check it. A
//! holder reads their own entries, with the secrets and inclusion proofs, by a request their
//! enrolled device signed.

use std::sync::Arc;

use cyberid_engine::{CertificateId, WebNumber};
use cyberid_identity::{LogReadBody, SignedLogRead};
use cyberid_translog::{
    AccessEntry, Error as LogError, Fault as LogFault, Hash, Record, SignedTreeHead,
};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::identity::{parse, service};
use super::{Answer, ApiError, internal, json, read_body};
use crate::node::{App, Engine, Lookup, PAGE_LIMIT, ProvenEntry};

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
    /// `verification` or `access` (an authority's read of the log).
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disclosed: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    case_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_until_ms: Option<u64>,
    /// The record's binary form (protocol.md §12), hex: what the commitment covers.
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
        let mut body = Self {
            log_index: stored.index,
            at_ms: stored.record.at_ms(),
            kind: "verification",
            platform: None,
            outcome: None,
            certificate_id: stored.record.certificate_id().map(|id| id.to_string()),
            disclosed: None,
            authority: None,
            case_reference: None,
            sealed_until_ms: None,
            entry: hex::encode(stored.record.encode()),
            secret: hex::encode(stored.secret),
            commitment: stored.commitment().to_hex(),
            inclusion_proof: proven.proof.as_deref().map(hexes),
        };
        match &stored.record {
            Record::Verification(entry) => {
                body.platform = Some(entry.platform.to_string());
                body.outcome = Some(entry.outcome.code());
                body.disclosed = Some(entry.disclosed);
            }
            Record::Access(access) => {
                body.kind = "access";
                body.authority = Some(access.authority.clone());
                body.case_reference = Some(access.case_reference.clone());
                body.sealed_until_ms =
                    (access.sealed_until_ms > 0).then_some(access.sealed_until_ms);
            }
        }
        body
    }
}

/// Whether a holder is shown this entry now: everything but an access still sealed.
fn shown_to_holder(proven: &ProvenEntry, now_ms: u64) -> bool {
    !matches!(&proven.stored.record, Record::Access(access) if access.sealed_until_ms > now_ms)
}

fn page(entries: &[ProvenEntry]) -> Option<u64> {
    (entries.len() == PAGE_LIMIT)
        .then(|| entries.last().map(|last| last.stored.index + 1))
        .flatten()
}

/// `POST /v1/holder/log`: the signing holder's own entries, from the index they name. An
/// authority's access sealed for a period is left out until the period ends.
pub(super) async fn holder_log(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    let engine = engine_with_log(app)?;
    let service = service(app)?;
    let body = read_body(app, request).await?;
    let body: LogReadBody = parse(&body)?;
    let retry_after = app.config.retry_after_s;
    let signed =
        SignedLogRead::try_from(body).map_err(|error| ApiError::identity(&error, retry_after))?;
    let now = app.now();
    let now_ms = app.now_ms();
    let read_from = signed.unverified().from;
    // The nonce's synced write and the reads: off the async workers.
    let (entries, head) = tokio::task::spawn_blocking(move || {
        let holder = service
            .authorize_log_read(&signed, now)
            .map_err(|error| ApiError::identity(&error, retry_after))?;
        let log = engine.log.as_ref().ok_or_else(internal)?;
        let (entries, head) = log
            .entries(Lookup::Holder(holder, read_from))
            .map_err(|error| ApiError::log(&error, retry_after))?;
        let key_id = log.public_key().key_id().to_string();
        Ok::<_, ApiError>((entries, head.map(|head| HeadBody::of(&head, key_id))))
    })
    .await
    .map_err(|_| internal())??;
    let next_from = page(&entries);
    let entries: Vec<EntryBody> = entries
        .iter()
        .filter(|entry| shown_to_holder(entry, now_ms))
        .map(EntryBody::of)
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "head": head, "entries": entries, "next_from": next_from }),
    ))
}

/// Longest an authority may seal its access from the holder, days.
const MAX_SEALED_DAYS: u64 = 365;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    #[serde(default)]
    web_number: Option<String>,
    #[serde(default)]
    certificate_id: Option<String>,
    case_reference: String,
    /// Days the holder is not shown this access; 0 (the default) shows it at once.
    #[serde(default)]
    sealed_days: u64,
    /// For a holder's entries: the first log index wanted.
    #[serde(default)]
    from: u64,
}

/// `POST /v1/admin/log/query`: an authority reads a holder's or a certificate's entries, with
/// a case reference. The access is appended to the log (durably) before anything is shown,
/// indexed under the holder, who sees it in their next read unless it is sealed.
pub(super) async fn authority_query(
    app: &Arc<App>,
    request: Request<Incoming>,
    authority: String,
) -> Answer {
    let engine = engine_with_log(app)?;
    let body = read_body(app, request).await?;
    let query: QueryBody = parse(&body)?;
    let lookup = match (&query.web_number, &query.certificate_id) {
        (Some(number), None) => Lookup::Holder(
            WebNumber::parse(number)
                .map_err(|error| ApiError::bad_request(error.code(), error.to_string()))?,
            query.from,
        ),
        (None, Some(id)) => Lookup::Certificate(id.parse::<CertificateId>().map_err(|_| {
            ApiError::bad_request("certificate_id", "a certificate id is 32 hex digits")
        })?),
        _ => {
            return Err(ApiError::bad_request(
                "bad_query",
                "a query names exactly one of web_number and certificate_id",
            ));
        }
    };
    if query.sealed_days > MAX_SEALED_DAYS {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("sealed_days is at most {MAX_SEALED_DAYS}"),
        ));
    }
    let now_ms = app.now_ms();
    let retry_after = app.config.retry_after_s;
    let (receipt, entries, head) = tokio::task::spawn_blocking(move || {
        let log = engine.log.as_ref().ok_or_else(internal)?;
        let read = |lookup| {
            log.entries(lookup)
                .map_err(|error| ApiError::log(&error, retry_after))
        };
        let (found, _) = read(lookup)?;
        let (holder, certificate_id) = match lookup {
            Lookup::Holder(holder, _) => (Some(holder), None),
            // The certificate's holder, from its entries, so that they see the access too.
            Lookup::Certificate(id) => (
                found.iter().find_map(|entry| entry.stored.record.holder()),
                Some(id),
            ),
        };
        let access = AccessEntry {
            at_ms: now_ms,
            sealed_until_ms: match query.sealed_days {
                0 => 0,
                days => now_ms.saturating_add(days * 86_400_000),
            },
            holder,
            certificate_id,
            authority,
            case_reference: query.case_reference,
        };
        let receipt = log
            .record_access(&access)
            .map_err(|error| ApiError::log(&error, retry_after))?;
        // Read again after recording: the answer includes the access itself.
        let (entries, head) = read(lookup)?;
        let key_id = log.public_key().key_id().to_string();
        Ok::<_, ApiError>((
            receipt,
            entries,
            head.map(|head| HeadBody::of(&head, key_id)),
        ))
    })
    .await
    .map_err(|_| internal())??;
    tracing::info!(log_index = receipt.index, "authority log query recorded");
    let next_from = page(&entries);
    let entries: Vec<EntryBody> = entries.iter().map(EntryBody::of).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "access": { "log_index": receipt.index, "commitment": hex::encode(receipt.commitment) },
            "head": head,
            "entries": entries,
            "next_from": next_from,
        }),
    ))
}
