//! Attributes beyond the result (protocol.md §13): what a platform is entitled to, holders'
//! standing consents, and the step before a verification of an entitled platform that opens
//! what its answer may carry.
//!
//! The decision is made before the certificate's nonce is consumed, because the log entry
//! written with the nonce records what the answer discloses: a `valid` answer never carries
//! an attribute its entry does not show. The values are opened from the vault then, too, so a
//! vault or registry failure is a 503 that consumed nothing. They are dropped (and wiped)
//! unless the verdict is `valid` for the same holder.

use std::sync::Arc;

use cyberid_engine::{Attributes, Certificate, OwnedInput, PlatformId, WebNumber};
use cyberid_identity::{
    ConsentRequestBody, Disclosed, IdentityService, Purpose, SignedConsentRequest, StandingConsent,
};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::identity::{parse, service};
use super::{Answer, ApiError, internal, json, read_body};
use crate::auth::{Platform, PlatformDisclosure};
use crate::node::App;

/// What a verification for an entitled platform will disclose if valid: the holder it was
/// opened for and the values.
pub(super) type Prepared = Option<(WebNumber, Disclosed)>;

/// Decides and opens what a valid answer to `platform` for `input` may carry. `None` (the
/// result only) when the platform is entitled to nothing, the node keeps no enrollments, the
/// input does not decode (the engine answers it), or no consent covers anything entitled.
pub(super) async fn prepare(
    app: &App,
    identity: Option<&Arc<IdentityService>>,
    platform: &Platform,
    input: &OwnedInput,
) -> Result<Prepared, ApiError> {
    let (Some(entitled), Some(identity)) = (&platform.disclosure, identity) else {
        return Ok(None);
    };
    let decoded = match input {
        OwnedInput::Text(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| Certificate::from_text(text).ok()),
        OwnedInput::Binary(bytes) => Certificate::from_bytes(bytes).ok(),
    };
    let Some(certificate) = decoded else {
        return Ok(None);
    };
    let fields = *certificate.fields();
    let (identity, entitlement, id) = (identity.clone(), entitled.entitlement, platform.id);
    let retry_after = app.config.retry_after_s;
    // Registry reads and a vault opening: off the async workers.
    tokio::task::spawn_blocking(move || {
        let standing = identity.standing_consent(&fields.web_number, &id)?;
        let allowed = entitlement.allows(&id, &fields, standing.as_ref());
        if allowed.is_empty() {
            return Ok(None);
        }
        Ok(identity
            .disclose(&fields.web_number, allowed)?
            .map(|values| (fields.web_number, values)))
    })
    .await
    .map_err(|_| internal())?
    .map_err(|error| ApiError::identity(&error, retry_after))
}

/// The attributes a prepared answer carries, for the verification's context.
pub(super) fn attributes(prepared: &Prepared) -> Attributes {
    prepared
        .as_ref()
        .map_or(Attributes::NONE, |(_, values)| values.attributes())
}

/// What anyone may read about a platform's entitlement: a holder's app shows it before the
/// holder consents, and signs its purpose digest.
#[derive(Serialize)]
struct EntitlementAnswer<'a> {
    platform: PlatformId,
    attributes: Attributes,
    purpose: &'a str,
    purpose_digest: Purpose,
    legal_basis: &'a str,
    authority: &'a str,
    granted_at: u64,
}

impl<'a> EntitlementAnswer<'a> {
    fn of(platform: PlatformId, disclosure: &'a PlatformDisclosure) -> Self {
        Self {
            platform,
            attributes: disclosure.entitlement.attributes,
            purpose: &disclosure.record.purpose,
            purpose_digest: disclosure.entitlement.purpose,
            legal_basis: &disclosure.record.basis,
            authority: &disclosure.record.authority,
            granted_at: disclosure.record.granted_at,
        }
    }
}

/// `GET /v1/platforms/{platform}/disclosure`: public, like the platform's registration.
pub(super) fn entitlement(app: &App, platform: &str) -> Answer {
    let not_entitled = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_entitled",
            "no such platform, or it is entitled to no attribute: it gets the result only",
        )
    };
    let id: PlatformId = platform.parse().map_err(|_| not_entitled())?;
    let credentials = app.credentials();
    let registered = credentials.platform(&id).ok_or_else(not_entitled)?;
    let disclosure = registered.disclosure.as_ref().ok_or_else(not_entitled)?;
    Ok(json(StatusCode::OK, &EntitlementAnswer::of(id, disclosure)))
}

#[derive(Serialize)]
struct ConsentsAnswer {
    consents: Vec<StandingConsent>,
}

/// `POST /v1/holder/consent`: a holder grants, withdraws or lists standing consents with a
/// device-signed request (no API key: the signature is the credential).
pub(super) async fn consent(app: &Arc<App>, request: Request<Incoming>) -> Answer {
    let service = service(app)?;
    let body = read_body(app, request).await?;
    let body: ConsentRequestBody = parse(&body)?;
    let signed = SignedConsentRequest::try_from(body)
        .map_err(|error| ApiError::identity(&error, app.config.retry_after_s))?;
    let now = app.now();
    let retry_after = app.config.retry_after_s;
    let credentials = arc_swap::Guard::into_inner(app.credentials());
    // A synced write: off the async workers.
    let consents = tokio::task::spawn_blocking(move || {
        service.consent(&signed, now, |platform| {
            credentials
                .platform(platform)
                .and_then(|p| p.disclosure.as_ref())
                .map(|d| d.entitlement)
        })
    })
    .await
    .map_err(|_| internal())?
    .map_err(|error| ApiError::identity(&error, retry_after))?;
    Ok(json(StatusCode::OK, &ConsentsAnswer { consents }))
}
