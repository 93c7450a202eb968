//! The HTTP API: routing, authentication, limits, and the translation between JSON and the
//! engine. No verification logic lives here. Every route is documented in `docs/openapi.yaml`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cyberid_engine::{
    Assurance, CertificateId, Claims, Context, Error as EngineError, Fault, IssueRequest, KeyId,
    OwnedInput, PlatformId, RequestKey, RevocationChange, RevocationRecord, RevocationSet,
    Standing, WebNumber,
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::app::{App, Readiness};
use crate::credentials::{AuthError, Platform, Principal, Scope};

/// A failed request: status, stable code, message. Messages never carry identity data.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn engine(error: &EngineError, retry_after: u64) -> Self {
        // The engine says who must act; that alone picks the status, so a retryable failure is
        // always 503 with Retry-After and a 500 always means a defect.
        let status = match (error, error.fault()) {
            (EngineError::RevocationFinal, _) => StatusCode::CONFLICT,
            (_, Fault::Caller) => StatusCode::BAD_REQUEST,
            (_, Fault::Retry) => StatusCode::SERVICE_UNAVAILABLE,
            (_, _) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let api = Self::new(status, error.code(), error.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            api.retry_after(retry_after)
        } else {
            api
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = json(self.status, &body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cyberid\""),
            );
        }
        response
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

type Answer = Result<Response<Full<Bytes>>, ApiError>;

/// Every route, as `docs/openapi.yaml` names it; the OpenAPI test checks the two agree and
/// that each is served.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/verify"),
    ("POST", "/v1/certificates"),
    ("POST", "/v1/admin/web-numbers/{web_number}/{action}"),
    ("POST", "/v1/admin/certificates/{certificate_id}/revoke"),
    ("POST", "/v1/admin/keys/{key_id}/revoke"),
    ("GET", "/v1/admin/revocations"),
];

/// Answers one request. Never fails: every error becomes a JSON error body.
pub(crate) async fn handle(app: Arc<App>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (route, answer) = route(&app, request).await;
    let response = answer.unwrap_or_else(ApiError::into_response);
    let took = started.elapsed();
    app.metrics
        .response(route, response.status().as_u16(), took);
    tracing::debug!(
        route,
        status = response.status().as_u16(),
        micros = took.as_micros() as u64,
        "request"
    );
    response
}

async fn route(app: &Arc<App>, request: Request<Incoming>) -> (&'static str, Answer) {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    let only = |allowed: Method, route: &'static str| -> Option<(&'static str, Answer)> {
        (method != allowed).then(|| {
            (
                route,
                Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{path} accepts {allowed} only"),
                )),
            )
        })
    };
    match segments.as_slice() {
        ["healthz"] => only(Method::GET, "healthz").unwrap_or(("healthz", Ok(healthz()))),
        ["readyz"] => only(Method::GET, "readyz").unwrap_or(("readyz", Ok(readyz(app)))),
        ["metrics"] => only(Method::GET, "metrics").unwrap_or(("metrics", Ok(metrics(app)))),
        ["v1", "verify"] => match only(Method::POST, "verify") {
            Some(refused) => refused,
            None => ("verify", verify(app, request).await),
        },
        ["v1", "certificates"] => match only(Method::POST, "issue") {
            Some(refused) => refused,
            None => ("issue", issue(app, request).await),
        },
        ["v1", "admin", rest @ ..] => ("admin", admin(app, request, rest).await),
        _ => ("unknown", Err(ApiError::not_found())),
    }
}

fn healthz() -> Response<Full<Bytes>> {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

fn readyz(app: &App) -> Response<Full<Bytes>> {
    match app.readiness() {
        Readiness::Ready => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        not_ready => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not_ready", "reason": not_ready.code() }),
        ),
    }
}

fn metrics(app: &App) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(app.render_metrics())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

fn authenticate(app: &App, request: &Request<Incoming>) -> Result<Principal, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    app.credentials().authenticate(header).map_err(|error| {
        let message = match error {
            AuthError::Missing => "an Authorization: Bearer <API key> header is required",
            AuthError::Unknown => "the API key is not valid",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    })
}

/// A platform with `scope`, within its rate limit.
fn platform_with(
    app: &App,
    request: &Request<Incoming>,
    scope: Scope,
) -> Result<Arc<Platform>, ApiError> {
    let platform = match authenticate(app, request)? {
        Principal::Platform(platform) => platform,
        Principal::Authority(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "authority keys administer; only platform keys verify or issue",
            ));
        }
    };
    if !platform.scopes.contains(&scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this platform's key lacks the {scope:?} scope").to_lowercase(),
        ));
    }
    if let Some(limiter) = &platform.limiter
        && let Err(not_until) = limiter.check()
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "this platform's request rate limit is exceeded",
        )
        .retry_after(wait.as_secs_f64().ceil() as u64));
    }
    Ok(platform)
}

/// Reads the body within the size cap and the body timeout.
async fn read_body(app: &App, request: Request<Incoming>) -> Result<Bytes, ApiError> {
    let cap = app.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds {cap} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > cap as u64) {
        return Err(too_large());
    }
    let timeout = Duration::from_millis(app.config.body_timeout_ms);
    let body = Limited::new(request.into_body(), cap);
    match tokio::time::timeout(timeout, body.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(ApiError::bad_request(
            "body_unreadable",
            "the request body could not be read",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parses a JSON object body. Only an object: serde would also read a struct from an array.
fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        // serde_json's message names the field and position, never echoes a value.
        ApiError::bad_request(
            "malformed_json",
            format!("the JSON body is not valid: {error}"),
        )
    })
}

/// The request key of a verification that names itself with `Idempotency-Key` (1 to 64
/// visible ASCII characters): a retry with the same key, from the same platform, of a request
/// whose answer was lost is answered as the first time, never `replayed`.
fn idempotency_key(
    headers: &hyper::HeaderMap,
    platform: &PlatformId,
) -> Result<Option<RequestKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.as_bytes();
    if !(1..=64).contains(&key.len()) || !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "bad_idempotency_key",
            "Idempotency-Key is 1 to 64 visible ASCII characters",
        ));
    }
    Ok(Some(RequestKey::derive(platform, key)))
}

fn content_type(request: &Request<Incoming>) -> String {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    certificate: String,
}

async fn verify(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    let platform = platform_with(app, &request, Scope::Verify)?;
    let engine = app.engine()?;
    let kind = content_type(&request);
    let headers = request.headers().clone();
    let body = read_body(app, request).await?;
    let input = match kind.as_str() {
        "application/octet-stream" => OwnedInput::Binary(body.to_vec()),
        "text/plain" => OwnedInput::Text(
            std::str::from_utf8(&body)
                .map_err(|_| ApiError::bad_request("malformed_text", "the body is not UTF-8"))?
                .trim()
                .to_owned(),
        ),
        "application/json" | "" => OwnedInput::Text(parse_json::<VerifyBody>(&body)?.certificate),
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "{other} is not accepted; send application/json, text/plain or \
                     application/octet-stream"
                ),
            ));
        }
    };
    let context = Context {
        platform: Some(platform.id),
        now: app.now(),
        request: idempotency_key(&headers, &platform.id)?,
    };
    let pending = engine
        .pipeline
        .submit(input, context)
        .map_err(|error| ApiError::engine(&error, app.config.retry_after_s))?;
    let verdict = pending
        .wait()
        .await
        .map_err(|error| ApiError::engine(&error, app.config.retry_after_s))?;
    app.metrics.verdict(&verdict);
    Ok(json(StatusCode::OK, &verdict))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    web_number: WebNumber,
    #[serde(default)]
    assurance: Option<Assurance>,
    #[serde(default)]
    claims: Claims,
    #[serde(default)]
    audience: Option<PlatformId>,
    #[serde(default)]
    lifetime: Option<u16>,
}

#[derive(Serialize)]
struct Issued {
    certificate: String,
    certificate_id: CertificateId,
    key_id: KeyId,
    issued_at: u64,
    expires_at: u64,
}

async fn issue(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    if !app.config.issue_endpoint {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "issue_disabled",
            "this node does not issue certificates",
        ));
    }
    platform_with(app, &request, Scope::Issue)?;
    let issuer = app.issuer().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_issuing_key",
            "this node has no issuing key; `cyberid key generate` makes one",
        )
    })?;
    let body = read_body(app, request).await?;
    let body: IssueBody = parse_json(&body)?;
    let issue_request = IssueRequest {
        web_number: body.web_number,
        assurance: body.assurance.unwrap_or(Assurance::Substantial),
        claims: body.claims,
        audience: body.audience,
        lifetime: body.lifetime,
    };
    let certificate = issuer
        .issue(&issue_request, app.now())
        .map_err(|error| ApiError::engine(&error, app.config.retry_after_s))?;
    let fields = certificate.fields();
    Ok(json(
        StatusCode::CREATED,
        &Issued {
            certificate: certificate.to_text(),
            certificate_id: fields.certificate_id,
            key_id: fields.key_id,
            issued_at: fields.issued_at,
            expires_at: fields.expires_at(),
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: String,
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
    /// Pass as `after` to read on; equal to the request's `after` when nothing is newer.
    next_after: u64,
}

const HISTORY_MAX_LIMIT: usize = 1000;

async fn admin(app: &Arc<App>, request: Request<Incoming>, path: &[&str]) -> Answer {
    let authority = match authenticate(app, &request)? {
        Principal::Authority(authority) => authority,
        Principal::Platform(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "administration needs an authority key, never a platform's",
            ));
        }
    };
    let engine = app.engine()?;
    let method = request.method().clone();
    if let ["revocations"] = path {
        if method != Method::GET {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "revocations accepts GET only",
            ));
        }
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
    let change = match path {
        ["web-numbers", number, action] => {
            let standing = match *action {
                "suspend" => Standing::Suspended,
                "revoke" => Standing::Revoked,
                "reinstate" => Standing::Active,
                _ => return Err(ApiError::not_found()),
            };
            RevocationChange::WebNumber {
                web_number: number.parse().map_err(path_error)?,
                standing,
            }
        }
        ["certificates", id, "revoke"] => RevocationChange::Certificate {
            certificate_id: id.parse().map_err(path_error)?,
        },
        ["keys", id, "revoke"] => RevocationChange::IssuerKey {
            key_id: id.parse().map_err(path_error)?,
        },
        _ => return Err(ApiError::not_found()),
    };
    if method != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "administrative actions accept POST only",
        ));
    }
    let body = read_body(app, request).await?;
    let body: RevokeBody = parse_json(&body)?;
    let record = RevocationRecord {
        change,
        reason: body.reason,
        authority: authority.to_string(),
        at: app.now(),
    };
    let target = match record.change {
        RevocationChange::WebNumber { .. } => "web_number",
        RevocationChange::Certificate { .. } => "certificate",
        RevocationChange::IssuerKey { .. } => "issuer_key",
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

fn path_error(error: EngineError) -> ApiError {
    ApiError::bad_request(error.code(), error.to_string())
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request could not be completed",
    )
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
        let bad = || ApiError::bad_request("bad_query", format!("{key} must be a number"));
        match key {
            "after" => after = value.parse().map_err(|_| bad())?,
            "limit" => limit = value.parse().map_err(|_| bad())?,
            _ => {
                return Err(ApiError::bad_request(
                    "bad_query",
                    format!("unknown query parameter {key}"),
                ));
            }
        }
    }
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be between 1 and {HISTORY_MAX_LIMIT}"),
        ));
    }
    Ok((after, limit))
}

impl App {
    /// The opened engine, or why requests cannot be served yet.
    fn engine(&self) -> Result<Arc<crate::app::Engine>, ApiError> {
        self.opened_engine().ok_or_else(|| {
            let readiness = self.readiness();
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                readiness.code(),
                "the node is not ready to serve verifications",
            )
            .retry_after(self.config.retry_after_s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_queries_are_bounded() {
        assert_eq!(history_query(None).unwrap(), (0, 100));
        assert_eq!(history_query(Some("after=7&limit=3")).unwrap(), (7, 3));
        for bad in ["limit=0", "limit=1001", "after=x", "since=3"] {
            assert_eq!(
                history_query(Some(bad)).unwrap_err().code,
                "bad_query",
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_query_is_parsed_or_refused_within_bounds(query in ".{0,64}") {
            if let Ok((_, limit)) = history_query(Some(&query)) {
                proptest::prop_assert!((1..=HISTORY_MAX_LIMIT).contains(&limit));
            }
        }
    }

    #[test]
    fn engine_errors_map_to_the_party_at_fault() {
        let overloaded = ApiError::engine(&EngineError::Overloaded, 2);
        assert_eq!(overloaded.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(overloaded.retry_after, Some(2));
        let bad = ApiError::engine(&EngineError::WebNumberLength(3), 1);
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let store = ApiError::engine(
            &EngineError::Store {
                context: "write",
                detail: "disk full".into(),
            },
            1,
        );
        assert_eq!(store.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(store.retry_after, Some(1));
        let full = ApiError::engine(&EngineError::NonceCapacity { capacity: 4 }, 1);
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.retry_after, Some(1));
        let signing = ApiError::engine(&EngineError::Signing, 1);
        assert_eq!(signing.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(signing.retry_after, None);
        let last = ApiError::engine(&EngineError::RevocationFinal, 1);
        assert_eq!(last.status, StatusCode::CONFLICT);
    }
}
