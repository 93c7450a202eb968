//! The issuing side's routes: enrollment by an enrollment agent, and certificates for the
//! holder who signs the request with their enrolled device key (no API key: the signature is
//! the credential).

use std::sync::Arc;

use cyberid_engine::Fault;
use cyberid_identity::{
    EnrollmentRequest, Error as IdentityError, HolderRequestBody, IdentityService,
    SignedHolderRequest,
};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::{Answer, ApiError, Issued, authenticate, internal, issuer, json, read_body};
use crate::auth::Principal;
use crate::node::App;

impl ApiError {
    /// The issuing side's errors by who must act, as for the engine's; a few get the status
    /// that says more than 400.
    pub(super) fn identity(error: &IdentityError, retry_after: u64) -> Self {
        if let IdentityError::Engine(engine) = error {
            return Self::engine(engine, retry_after);
        }
        let status = match (error, error.fault()) {
            (IdentityError::DeviceSignature, _) => StatusCode::UNAUTHORIZED,
            (IdentityError::HolderStanding(_), _) => StatusCode::FORBIDDEN,
            (IdentityError::Replayed, _) => StatusCode::CONFLICT,
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
}

/// The node's identity service, or why it has none.
pub(super) fn service(app: &App) -> Result<Arc<IdentityService>, ApiError> {
    let engine = app.engine()?;
    engine.identity.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "enrollment_unsupported",
            "this node's store keeps no enrollments",
        )
    })
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        // The identity types' own messages name a rule, never a value; serde's messages about
        // types and unknown names quote what was sent, which may be personal data, so those
        // are replaced by the position alone.
        let text = error.to_string();
        let message = if text.contains(['"', '`']) {
            format!(
                "the body does not match the request schema at line {} column {}",
                error.line(),
                error.column()
            )
        } else {
            text
        };
        ApiError::bad_request("malformed_body", message)
    })
}

/// `POST /v1/enrollments`.
pub(super) async fn enroll(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    let agent = match authenticate(app, &request)? {
        Principal::EnrollmentAgent(agent) => agent,
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "enrollment needs an enrollment agent's key",
            ));
        }
    };
    let service = service(app)?;
    let body = read_body(app, request).await?;
    let enrollment: EnrollmentRequest = parse(&body)?;
    let now = app.now();
    let retry_after = app.config.retry_after_s;
    let agent_name = agent.clone();
    // A synced write: off the async workers.
    let enrolled =
        tokio::task::spawn_blocking(move || service.enroll(enrollment, &agent_name, now))
            .await
            .map_err(|_| internal())?
            .map_err(|error| ApiError::identity(&error, retry_after))?;
    // The audit line names the agent and what happened, never the person.
    tracing::info!(agent = %agent, re_enrolled = enrolled.re_enrolled, "enrollment");
    let status = if enrolled.re_enrolled {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, &enrolled))
}

/// `POST /v1/holder/certificates`.
pub(super) async fn holder_issue(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    let service = service(app)?;
    let issuer = issuer(app)?;
    let body = read_body(app, request).await?;
    let body: HolderRequestBody = parse(&body)?;
    let signed = SignedHolderRequest::try_from(body)
        .map_err(|error| ApiError::identity(&error, app.config.retry_after_s))?;
    let now = app.now();
    let retry_after = app.config.retry_after_s;
    let certificate = tokio::task::spawn_blocking(move || service.issue(&signed, &issuer, now))
        .await
        .map_err(|_| internal())?
        .map_err(|error| ApiError::identity(&error, retry_after))?;
    Ok(json(StatusCode::CREATED, &Issued::of(&certificate)))
}
