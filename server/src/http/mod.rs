//! The HTTP API: routing, authentication, limits, and the translation between JSON and the
//! engine. No verification logic lives here. Every route is documented in `docs/openapi.yaml`.
//!
//! Platform routes (verify, issue) are here; administration is in [`admin`], request bodies and
//! their validation in [`body`].

mod admin;
mod answer;
mod body;
pub(crate) mod client;
mod disclosure;
mod identity;
mod log;
pub(crate) mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cyberid_engine::{
    Assurance, CertificateId, Context, Error as EngineError, Fault, IssueRequest, KeyId,
    OwnedInput, PlatformId, RequestKey,
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::Scope;
use crate::auth::{AuthError, Platform, Principal, Session};
use crate::node::{App, Readiness};

/// A failed request: status, stable code, message. Messages never carry identity data and never
/// echo what the request sent: they name a field, a position or a rule.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// The `Allow` header of a 405 answer.
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 405, with the `Allow` header RFC 9110 §15.5.6 requires.
    fn method_not_allowed(allowed: &Method) -> Self {
        let allow = if *allowed == Method::GET {
            "GET"
        } else {
            "POST"
        };
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this route accepts {allow} only"),
        );
        error.allow = Some(allow);
        error
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
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
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
    ("POST", "/v1/enrollments"),
    ("POST", "/v1/holder/certificates"),
    ("POST", "/v1/holder/log"),
    ("POST", "/v1/holder/consent"),
    ("GET", "/v1/platforms/{platform}/disclosure"),
    ("GET", "/v1/log/head"),
    ("GET", "/v1/log/key"),
    ("GET", "/v1/log/proofs/inclusion"),
    ("GET", "/v1/log/proofs/consistency"),
    ("GET", "/v1/log/leaves"),
    ("POST", "/v1/admin/web-numbers/{web_number}/{action}"),
    ("POST", "/v1/admin/certificates/{certificate_id}/revoke"),
    ("POST", "/v1/admin/keys/{key_id}/revoke"),
    ("GET", "/v1/admin/revocations"),
    ("POST", "/v1/admin/log/query"),
];

/// What a path names. Resolved before anything else, so a wrong method is answered 405 (with
/// `Allow`) whoever asks.
enum Target<'a> {
    Healthz,
    Readyz,
    Metrics,
    Verify,
    Issue,
    Enroll,
    HolderIssue,
    HolderLog,
    HolderConsent,
    PlatformDisclosure(&'a str),
    Log(log::Target),
    Admin(admin::Target<'a>),
}

impl<'a> Target<'a> {
    /// The target, its label in metrics and the one method it accepts.
    fn resolve(segments: &[&'a str]) -> Option<(Self, &'static str, Method)> {
        Some(match segments {
            ["healthz"] => (Target::Healthz, "healthz", Method::GET),
            ["readyz"] => (Target::Readyz, "readyz", Method::GET),
            ["metrics"] => (Target::Metrics, "metrics", Method::GET),
            ["v1", "verify"] => (Target::Verify, "verify", Method::POST),
            ["v1", "certificates"] => (Target::Issue, "issue", Method::POST),
            ["v1", "enrollments"] => (Target::Enroll, "enroll", Method::POST),
            ["v1", "holder", "certificates"] => (Target::HolderIssue, "holder_issue", Method::POST),
            ["v1", "holder", "log"] => (Target::HolderLog, "holder_log", Method::POST),
            ["v1", "holder", "consent"] => (Target::HolderConsent, "holder_consent", Method::POST),
            ["v1", "platforms", platform, "disclosure"] => (
                Target::PlatformDisclosure(platform),
                "platform_disclosure",
                Method::GET,
            ),
            ["v1", "log", rest @ ..] => {
                (Target::Log(log::Target::resolve(rest)?), "log", Method::GET)
            }
            ["v1", "admin", rest @ ..] => {
                let (target, method) = admin::Target::resolve(rest)?;
                (Target::Admin(target), "admin", method)
            }
            _ => return None,
        })
    }
}

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
    let Some((target, route, allowed)) = Target::resolve(&segments) else {
        return ("unknown", Err(ApiError::not_found()));
    };
    if *request.method() != allowed {
        return (route, Err(ApiError::method_not_allowed(&allowed)));
    }
    let answer = match target {
        Target::Healthz => Ok(healthz()),
        Target::Readyz => Ok(readyz(app)),
        Target::Metrics => Ok(metrics(app)),
        Target::Verify => verify(app, request).await,
        Target::Issue => issue(app, request).await,
        Target::Enroll => identity::enroll(app, request).await,
        Target::HolderIssue => identity::holder_issue(app, request).await,
        Target::HolderLog => log::holder_log(app, request).await,
        Target::HolderConsent => disclosure::consent(app, request).await,
        Target::PlatformDisclosure(platform) => disclosure::entitlement(app, platform),
        Target::Log(target) => log::handle(app, request, target).await,
        Target::Admin(target) => admin::handle(app, request, target).await,
    };
    (route, answer)
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
    let table = app.credentials();
    // The connection's session when the listener gave it one (always, in the server).
    let checked = match request.extensions().get::<Arc<Session>>() {
        Some(session) => session.authenticate(&table, header),
        None => table.authenticate(header),
    };
    checked.map_err(|error| {
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
        Principal::Authority(_) | Principal::EnrollmentAgent(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only platform keys verify or issue",
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
    if !(1..=64).contains(&key.len()) || !key.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::bad_request(
            "bad_idempotency_key",
            "Idempotency-Key is 1 to 64 visible ASCII characters",
        ));
    }
    Ok(Some(RequestKey::derive(platform, key)))
}

async fn verify(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    let platform = platform_with(app, &request, Scope::Verify)?;
    let engine = app.engine()?;
    let kind = content_type(&request);
    let request_key = idempotency_key(request.headers(), &platform.id)?;
    let body = read_body(app, request).await?;
    let input = match kind.as_str() {
        "application/octet-stream" => OwnedInput::Binary(body),
        // Only the body's surrounding ASCII whitespace goes (QR scanners end a scan with CR LF):
        // a certificate's text begins with `WZ1:` and ends with a digit, so no certificate
        // character is lost, and the text itself is then decoded strictly.
        "text/plain" => {
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::bad_request("malformed_text", "the body is not UTF-8"))?
                .trim_ascii();
            OwnedInput::Text(body.slice_ref(text.as_bytes()))
        }
        "application/json" | "" => OwnedInput::Text(body::verify(&body)?),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json, text/plain or application/octet-stream",
            ));
        }
    };
    // For a platform entitled to attributes: what a valid answer would carry, decided and
    // opened before the nonce is consumed, so that the log entry written with it says so.
    let prepared = disclosure::prepare(app, engine.identity.as_ref(), &platform, &input).await?;
    let context = Context {
        platform: Some(platform.id),
        now: app.now(),
        request: request_key,
        disclose: disclosure::attributes(&prepared),
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
    let answer = answer::VerifyAnswer::disclosing(&verdict, &platform, &app.subject_key, prepared);
    Ok(json(StatusCode::OK, &answer))
}

#[derive(Serialize)]
pub(crate) struct Issued {
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
            "this node is not a trusted issuer: its issue endpoint is off",
        ));
    }
    platform_with(app, &request, Scope::Issue)?;
    let issuer = issuer(app)?;
    let body = read_body(app, request).await?;
    let body = body::issue(&body, app.config.max_lifetime_s)?;
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
    Ok(json(StatusCode::CREATED, &Issued::of(&certificate)))
}

impl Issued {
    pub(crate) fn of(certificate: &cyberid_engine::Certificate) -> Self {
        let fields = certificate.fields();
        Self {
            certificate: certificate.to_text(),
            certificate_id: fields.certificate_id,
            key_id: fields.key_id,
            issued_at: fields.issued_at,
            expires_at: fields.expires_at(),
        }
    }
}

/// The node's issuing key, or a 503 saying how to get one.
fn issuer(app: &App) -> Result<Arc<cyberid_engine::Issuer>, ApiError> {
    app.issuer().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_issuing_key",
            "this node has no issuing key; `cyberid key generate` makes one",
        )
        .retry_after(app.config.retry_after_s)
    })
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request could not be completed",
    )
}

impl App {
    /// The opened engine, or why requests cannot be served yet.
    fn engine(&self) -> Result<Arc<crate::node::Engine>, ApiError> {
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
    fn every_route_resolves_to_its_one_method() {
        for (method, template) in ROUTES {
            let path = template
                .replace("{web_number}", "7K3MQ9XZ2P")
                .replace("{action}", "suspend")
                .replace("{certificate_id}", "00112233445566778899aabbccddeeff")
                .replace("{key_id}", "0011223344556677");
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let (_, _, allowed) = Target::resolve(&segments).expect(template);
            assert_eq!(allowed.as_str(), *method, "{template}");
        }
        for unknown in [
            "/",
            "/v1",
            "/v1/admin/web-numbers/7K3MQ9XZ2P/delete",
            "/v2/verify",
        ] {
            let segments: Vec<&str> = unknown.trim_start_matches('/').split('/').collect();
            assert!(Target::resolve(&segments).is_none(), "{unknown}");
        }
    }

    #[test]
    fn a_405_names_the_allowed_method() {
        let response = ApiError::method_not_allowed(&Method::POST).into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        let response = ApiError::method_not_allowed(&Method::GET).into_response();
        assert_eq!(response.headers()[header::ALLOW], "GET");
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
