//! Administration, for authorities only: suspend, revoke and reinstate Web Numbers, revoke
//! certificates and issuer keys, read the revocation history.

use std::sync::Arc;

use cyberid_engine::{
    CertificateId, KeyId, RevocationChange, RevocationRecord, Standing, WebNumber,
};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use super::{Answer, ApiError, authenticate, body, internal, json, read_body};
use crate::auth::Principal;
use crate::node::App;

const HISTORY_MAX_LIMIT: usize = 1000;

/// An administrative route, its path segments not yet parsed.
pub(super) enum Target<'a> {
    Revocations,
    LogQuery,
    WebNumber(&'a str, Standing),
    Certificate(&'a str),
    Key(&'a str),
}

impl<'a> Target<'a> {
    /// The route under `/v1/admin/` and the method it accepts.
    pub(super) fn resolve(path: &[&'a str]) -> Option<(Self, Method)> {
        Some(match *path {
            ["revocations"] => (Target::Revocations, Method::GET),
            ["log", "query"] => (Target::LogQuery, Method::POST),
            ["web-numbers", number, action] => {
                let standing = match action {
                    "suspend" => Standing::Suspended,
                    "revoke" => Standing::Revoked,
                    "reinstate" => Standing::Active,
                    _ => return None,
                };
                (Target::WebNumber(number, standing), Method::POST)
            }
            ["certificates", id, "revoke"] => (Target::Certificate(id), Method::POST),
            ["keys", id, "revoke"] => (Target::Key(id), Method::POST),
            _ => return None,
        })
    }
}

#[derive(Serialize)]
struct Applied {
    sequence: u64,
}

#[derive(Serialize)]
struct HistoryEntry {
    sequence: u64,
    #[serde(flatten)]
    record: RevocationRecord,
}

#[derive(Serialize)]
struct History {
    revocations: Vec<HistoryEntry>,
    /// The last sequence number returned, or the request's `after` when nothing is newer: pass
    /// it as `after` to read on.
    next_after: u64,
}

pub(super) async fn handle(
    app: &Arc<App>,
    request: Request<Incoming>,
    target: Target<'_>,
) -> Answer {
    let authority = match authenticate(app, &request)? {
        Principal::Authority(authority) => authority,
        Principal::Platform(_) | Principal::EnrollmentAgent(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "administration needs an authority key",
            ));
        }
    };
    if let Target::LogQuery = target {
        return super::log::authority_query(app, request, authority.to_string()).await;
    }
    let engine = app.engine()?;
    let change = match target {
        Target::LogQuery => return Err(internal()),
        Target::Revocations => {
            let (after, limit) = history_query(request.uri().query())?;
            let store = engine.store.clone();
            let entries = tokio::task::spawn_blocking(move || store.history(after, limit))
                .await
                .map_err(|_| internal())?
                .map_err(|error| ApiError::engine(&error, app.config.retry_after_s))?;
            let next_after = entries.last().map_or(after, |(sequence, _)| *sequence);
            let revocations = entries
                .into_iter()
                .map(|(sequence, record)| HistoryEntry { sequence, record })
                .collect();
            return Ok(json(
                StatusCode::OK,
                &History {
                    revocations,
                    next_after,
                },
            ));
        }
        Target::WebNumber(number, standing) => RevocationChange::WebNumber {
            web_number: WebNumber::parse(number)
                .map_err(|error| ApiError::bad_request(error.code(), error.to_string()))?,
            standing,
        },
        Target::Certificate(id) => RevocationChange::Certificate {
            certificate_id: id.parse::<CertificateId>().map_err(|_| {
                ApiError::bad_request("certificate_id", "a certificate id is 32 hex digits")
            })?,
        },
        Target::Key(id) => RevocationChange::IssuerKey {
            key_id: id.parse::<KeyId>().map_err(|error| {
                ApiError::bad_request(error.code(), "a key id is 16 hex digits")
            })?,
        },
    };
    let body = read_body(app, request).await?;
    let reason = body::reason(&body)?;
    match change {
        // A typo must not succeed silently: only a key this node knows can be revoked.
        RevocationChange::IssuerKey { key_id } if !app.key_registered(&key_id) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_key",
                "no issuer key with this id is registered on this node",
            ));
        }
        _ => {}
    }
    let record = RevocationRecord {
        change,
        reason,
        authority: authority.to_string(),
        at: app.now(),
    };
    let target = match record.change {
        RevocationChange::WebNumber { .. } => "web_number",
        RevocationChange::Certificate { .. } => "certificate",
        RevocationChange::IssuerKey { .. } => "issuer_key",
        RevocationChange::Enrollment { .. } => "enrollment",
    };
    let store = engine.store.clone();
    // A synced write: off the async workers.
    let sequence = tokio::task::spawn_blocking(move || store.apply(record))
        .await
        .map_err(|_| internal())?
        .map_err(|error| ApiError::engine(&error, app.config.retry_after_s))?;
    // The audit line names the authority and the kind of target, never the holder.
    tracing::info!(authority = %authority, target, sequence, "revocation applied");
    Ok(json(StatusCode::OK, &Applied { sequence }))
}

fn history_query(query: Option<&str>) -> Result<(u64, usize), ApiError> {
    let mut after = 0;
    let mut limit = 100;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" => {
                after = value.parse().map_err(|_| {
                    ApiError::bad_request("bad_query", "after must be a number from 0 to 2^64-1")
                })?;
            }
            "limit" => {
                limit = value.parse().map_err(|_| {
                    ApiError::bad_request(
                        "bad_query",
                        format!("limit must be a number from 1 to {HISTORY_MAX_LIMIT}"),
                    )
                })?;
            }
            _ => {
                return Err(ApiError::bad_request(
                    "bad_query",
                    "the query accepts only after and limit",
                ));
            }
        }
    }
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be a number from 1 to {HISTORY_MAX_LIMIT}"),
        ));
    }
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_queries_are_bounded() {
        assert_eq!(history_query(None).unwrap(), (0, 100));
        assert_eq!(history_query(Some("after=7&limit=3")).unwrap(), (7, 3));
        assert_eq!(
            history_query(Some("after=18446744073709551615")).unwrap(),
            (u64::MAX, 100)
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "after=x",
            "since=3",
            "after=18446744073709551616",
        ] {
            assert_eq!(
                history_query(Some(bad)).unwrap_err().code,
                "bad_query",
                "{bad}"
            );
        }
        let error = history_query(Some("Zhang-San=1")).unwrap_err();
        assert!(!error.message.contains("Zhang"), "{}", error.message);
    }

    proptest::proptest! {
        #[test]
        fn any_query_is_parsed_or_refused_within_bounds(query in ".{0,64}") {
            if let Ok((_, limit)) = history_query(Some(&query)) {
                proptest::prop_assert!((1..=HISTORY_MAX_LIMIT).contains(&limit));
            }
        }
    }
}
