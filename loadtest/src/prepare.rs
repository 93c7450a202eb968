//! Preparing a phase's requests before it starts, so that sending one costs the generator a
//! reference count and a header map, never a signature or an encoding.
//!
//! Every valid certificate is unique: it can be verified once. The other kinds are not
//! consumed by verification, so each is made `pool` times at most and reused round-robin.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cyberid_engine::{
    Assurance, CERTIFICATE_LEN, Certificate, CertificateFields, CertificateId, Claims, Clock,
    Issuer, IssuerPolicy, IssuerSigningKey, PlatformId, SystemClock, WebNumber,
};
use rayon::prelude::*;
use serde::Deserialize;

use crate::http::Client;
use crate::verdict::{Expect, Observed};
use crate::{BodyFormat, Config, Error, Kind, Source};

/// How long before the run expired certificates were issued, and how long they lived: expired
/// by 59 minutes, far past any clock skew a node allows.
const EXPIRED_AGE: u64 = 3_600;
const EXPIRED_LIFETIME: u16 = 60;

/// At most this many Web Numbers are revoked for a run's revoked certificates: each is a
/// synced write at the node and a permanent entry in its revocation history.
const REVOKED_HOLDERS: usize = 8;

/// At most this many connections carry the preparation's calls to the node.
const PREPARATION_CONNECTIONS: usize = 8;

/// A phase's requests in send order. Each is its expectation and the index of its body among
/// the distinct bodies: eight bytes a request, so a long closed-loop run of reused kinds does
/// not hold a reference-counted body per request.
#[derive(Debug)]
pub(crate) struct Requests {
    order: Vec<(Expect, u32)>,
    bodies: Vec<Bytes>,
}

impl Requests {
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// What request `index` expects, and its body.
    pub(crate) fn get(&self, index: usize) -> (Expect, &Bytes) {
        let (expect, body) = self.order[index];
        (expect, &self.bodies[body as usize])
    }
}

/// A phase's requests, ready to send.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) requests: Arc<Requests>,
    /// Distinct certificates made.
    pub(crate) certificates: u64,
    /// The earliest expiry of a certificate that must still be current, Unix seconds; `None`
    /// when nothing expires (synthetic bodies).
    pub(crate) expires_at: Option<u64>,
    pub(crate) took: Duration,
}

/// What one certificate should say.
#[derive(Debug, Clone, Copy)]
struct Spec {
    holder: WebNumber,
    audience: Option<PlatformId>,
    expired: bool,
}

/// A made certificate: its binary form and expiry.
#[derive(Debug, Clone, Copy)]
struct Made {
    bytes: [u8; CERTIFICATE_LEN],
    expires_at: u64,
}

/// Prepares `total` requests of the configured mix.
pub(crate) async fn prepare(config: &Config, total: u64) -> Result<Prepared, Error> {
    let started = Instant::now();
    if config.expect_any {
        let requests = Requests {
            order: vec![(Expect::Any, 0); total as usize],
            bodies: vec![synthetic_body(config.body)],
        };
        return Ok(Prepared {
            requests: Arc::new(requests),
            certificates: 0,
            expires_at: None,
            took: started.elapsed(),
        });
    }
    let counts = config.mix.counts(total);
    let mut specs: Vec<(Kind, Vec<Spec>)> = Vec::new();
    let mut revoked_holders = Vec::new();
    for kind in Kind::ALL {
        let count = counts[kind as usize];
        let distinct = match kind {
            Kind::Valid => count,
            _ => count.min(config.pool as u64),
        } as usize;
        if distinct == 0 {
            continue;
        }
        if kind == Kind::Revoked {
            revoked_holders = (0..distinct.min(REVOKED_HOLDERS))
                .map(|_| WebNumber::generate())
                .collect::<Result<_, _>>()?;
        }
        let list = (0..distinct)
            .map(|i| {
                Ok(Spec {
                    holder: match kind {
                        Kind::Revoked => revoked_holders[i % revoked_holders.len()],
                        _ => WebNumber::generate()?,
                    },
                    audience: match kind {
                        Kind::WrongAudience => Some(config.other_platform),
                        _ => config.platform,
                    },
                    expired: kind == Kind::Expired,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        specs.push((kind, list));
    }

    let all: Vec<Spec> = specs.iter().flat_map(|(_, list)| list.clone()).collect();
    let mut made = match &config.source {
        Source::DataDir(dir) => {
            let dir = dir.clone();
            let lifetime = config.lifetime;
            tokio::task::spawn_blocking(move || sign_locally(&dir, &all, lifetime))
                .await
                .map_err(|_| Error::Preparation("the signing threads panicked".into()))??
        }
        Source::IssueEndpoint { api_key } => issue_remotely(config, api_key, &all).await?,
        Source::Synthetic => unreachable!("checked by Config::plan"),
    }
    .into_iter();

    let mut by_kind: Vec<(Kind, Vec<Made>)> = Vec::new();
    for (kind, list) in &specs {
        let mut certificates: Vec<Made> = made.by_ref().take(list.len()).collect();
        if *kind == Kind::Forged {
            for (i, certificate) in certificates.iter_mut().enumerate() {
                forge(&mut certificate.bytes, i);
            }
        }
        by_kind.push((*kind, certificates));
    }
    let certificates = by_kind.iter().map(|(_, list)| list.len() as u64).sum();
    let expires_at = by_kind
        .iter()
        .filter(|(kind, _)| *kind != Kind::Expired)
        .flat_map(|(_, list)| list.iter().map(|made| made.expires_at))
        .min();

    if let Some((_, replayed)) = by_kind.iter().find(|(kind, _)| *kind == Kind::Replayed) {
        consume(config, replayed).await?;
    }
    if !revoked_holders.is_empty() {
        revoke(config, &revoked_holders).await?;
    }

    // The distinct bodies, each kind's together: kind k's j-th body is at first[k] + j.
    let mut bodies = Vec::with_capacity(certificates as usize);
    let mut first = [0usize; 6];
    let mut made_of = [0usize; 6];
    for (kind, list) in &by_kind {
        first[*kind as usize] = bodies.len();
        made_of[*kind as usize] = list.len();
        for made in list {
            bodies.push(body(config.body, &made.bytes)?);
        }
    }
    let index = |i: usize| -> Result<u32, Error> {
        u32::try_from(i).map_err(|_| Error::Config("too many distinct certificates".into()))
    };
    let mut next = [0usize; 6];
    let order = config
        .mix
        .sequence(total)
        .into_iter()
        .map(|kind| {
            let k = kind as usize;
            // Valid bodies are each used once; the others cycle through their pool.
            let body = first[k] + next[k] % made_of[k];
            next[k] += 1;
            Ok((Expect::Verdict(kind), index(body)?))
        })
        .collect::<Result<_, Error>>()?;
    let requests = Arc::new(Requests { order, bodies });
    Ok(Prepared {
        requests,
        certificates,
        expires_at,
        took: started.elapsed(),
    })
}

/// A body of a verification request's size and shape that no node would accept.
fn synthetic_body(format: BodyFormat) -> Bytes {
    match format {
        BodyFormat::Json => Bytes::from(format!(
            r#"{{"certificate":"WZ1:{}"}}"#,
            "0".repeat(cyberid_engine::TEXT_LEN - cyberid_engine::TEXT_PREFIX.len())
        )),
        BodyFormat::Binary => Bytes::from(vec![0u8; CERTIFICATE_LEN]),
    }
}

fn body(format: BodyFormat, bytes: &[u8; CERTIFICATE_LEN]) -> Result<Bytes, Error> {
    Ok(match format {
        BodyFormat::Binary => Bytes::copy_from_slice(bytes),
        BodyFormat::Json => {
            let text = Certificate::from_bytes(bytes)?.to_text();
            Bytes::from(
                serde_json::to_vec(&serde_json::json!({ "certificate": text })).map_err(
                    |error| Error::Preparation(format!("encode a request body: {error}")),
                )?,
            )
        }
    })
}

/// Flips one bit of the signature (bytes 63..127), a different one for each certificate, so
/// that r and s are both hit across a pool.
fn forge(bytes: &mut [u8; CERTIFICATE_LEN], i: usize) {
    const SIGNATURE_AT: usize = CERTIFICATE_LEN - 64;
    let bit = i % 512;
    bytes[SIGNATURE_AT + bit / 8] ^= 1 << (bit % 8);
}

/// Reads the issuing key of the node's data directory (the harness signs as the node does).
pub(crate) fn issuing_key(dir: &Path) -> Result<IssuerSigningKey, Error> {
    let failed = |detail: String| Error::DataDir {
        path: dir.to_path_buf(),
        detail,
    };
    cyberid_datadir::DataDir::open(dir)
        .and_then(|opened| opened.issuing_key())
        .map_err(|error| {
            failed(format!(
                "{error} (the harness signs with the node's issuing key, so it must be able to \
                 read the data directory)"
            ))
        })
}

/// Signs every spec with the node's issuing key, on all cores.
fn sign_locally(dir: &Path, specs: &[Spec], lifetime: u16) -> Result<Vec<Made>, Error> {
    let issuer = Issuer::new(issuing_key(dir)?, IssuerPolicy::default())?;
    let key_id = issuer.key().key_id();
    let now = SystemClock.now();
    specs
        .par_iter()
        .map(|spec| {
            let (issued_at, lifetime) = if spec.expired {
                (now - EXPIRED_AGE, EXPIRED_LIFETIME)
            } else {
                (now, lifetime)
            };
            let certificate = issuer.sign(CertificateFields {
                key_id,
                web_number: spec.holder,
                certificate_id: CertificateId::generate()?,
                issued_at,
                lifetime,
                assurance: Assurance::High,
                claims: Claims::default(),
                audience: spec.audience,
            })?;
            Ok(Made {
                bytes: *certificate.as_bytes(),
                expires_at: certificate.fields().expires_at(),
            })
        })
        .collect()
}

/// Has the node issue every spec through `POST /v1/certificates`.
async fn issue_remotely(
    config: &Config,
    api_key: &str,
    specs: &[Spec],
) -> Result<Vec<Made>, Error> {
    #[derive(Deserialize)]
    struct Issued {
        certificate: String,
        expires_at: u64,
    }
    let calls = specs
        .iter()
        .map(|spec| {
            let mut body = serde_json::json!({
                "web_number": spec.holder,
                "lifetime": config.lifetime,
            });
            if let Some(audience) = &spec.audience {
                body["audience"] = serde_json::json!(audience);
            }
            Call {
                path: "/v1/certificates".into(),
                body: Bytes::from(body.to_string()),
            }
        })
        .collect();
    let answers = post_all(config, api_key, calls).await?;
    answers
        .into_iter()
        .map(|(status, body)| {
            if status != 201 {
                return Err(Error::Preparation(format!(
                    "POST /v1/certificates answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            let issued: Issued = serde_json::from_slice(&body).map_err(|error| {
                Error::Preparation(format!("POST /v1/certificates answered {error}"))
            })?;
            let certificate = Certificate::from_text(&issued.certificate)?;
            Ok(Made {
                bytes: *certificate.as_bytes(),
                expires_at: issued.expires_at,
            })
        })
        .collect()
}

/// Verifies each replayed certificate once, so that the run's verifications of it are
/// replays; each must come back valid, or the run would not be testing what it says.
async fn consume(config: &Config, certificates: &[Made]) -> Result<(), Error> {
    let api_key = config.api_key.as_deref().unwrap_or_default();
    let calls = certificates
        .iter()
        .map(|made| {
            Ok(Call {
                path: "/v1/verify".into(),
                body: body(BodyFormat::Json, &made.bytes)?,
            })
        })
        .collect::<Result<_, Error>>()?;
    for (status, body) in post_all(config, api_key, calls).await? {
        let observed = Observed::parse(status, &body);
        if observed != Observed::Valid {
            let hint = match observed {
                Observed::Invalid(cyberid_engine::Reason::HistoryUnavailable) => {
                    "the node's store is younger than its clock skew allows for certificates \
                     issued now: wait until it is older than clock_skew_s, or create the store \
                     with `cyberid init --history-begins`"
                }
                _ => {
                    "is --api-key the platform the certificates name, and does the node trust \
                     the key that signed them?"
                }
            };
            return Err(Error::Preparation(format!(
                "a certificate for the replayed kind was answered {} on its first \
                 verification; it must be valid ({hint})",
                observed.label()
            )));
        }
    }
    Ok(())
}

/// Revokes the holders of the revoked certificates through the admin API.
async fn revoke(config: &Config, holders: &[WebNumber]) -> Result<(), Error> {
    let authority_key = config
        .authority_key
        .as_deref()
        .ok_or(Error::NeedsAuthorityKey)?;
    let calls = holders
        .iter()
        .map(|holder| Call {
            path: format!("/v1/admin/web-numbers/{holder}/revoke"),
            body: Bytes::from_static(br#"{"reason":"cyberid-loadtest"}"#),
        })
        .collect();
    for (status, body) in post_all(config, authority_key, calls).await? {
        if status != 200 {
            return Err(Error::Preparation(format!(
                "revoking a Web Number was answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Call {
    path: String,
    body: Bytes,
}

/// POSTs every call with `api_key` over a few connections in parallel; the answers in the
/// calls' order.
async fn post_all(
    config: &Config,
    api_key: &str,
    calls: Vec<Call>,
) -> Result<Vec<(u16, Bytes)>, Error> {
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let lanes = config
        .connections
        .clamp(1, PREPARATION_CONNECTIONS)
        .min(calls.len());
    let per_lane = calls.len().div_ceil(lanes);
    let mut calls = calls.into_iter();
    let mut tasks = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let chunk: Vec<Call> = calls.by_ref().take(per_lane).collect();
        let address = config.target;
        let timeout = config.timeout;
        let api_key = api_key.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(address, timeout).await?;
            let mut answers = Vec::with_capacity(chunk.len());
            for call in chunk {
                answers.push(client.post(&call.path, &api_key, call.body).await?);
            }
            Ok::<_, Error>(answers)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(
            task.await
                .map_err(|_| Error::Preparation("a preparation task panicked".into()))??,
        );
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forging_flips_exactly_one_signature_bit() {
        let issuer = Issuer::new(
            IssuerSigningKey::generate().unwrap(),
            IssuerPolicy::default(),
        )
        .unwrap();
        let genuine = *issuer
            .issue(
                &cyberid_engine::IssueRequest::new(WebNumber::generate().unwrap()),
                1_790_000_000,
            )
            .unwrap()
            .as_bytes();
        for i in [0usize, 7, 255, 256, 511, 512] {
            let mut forged = genuine;
            forge(&mut forged, i);
            let differing: u32 = genuine
                .iter()
                .zip(&forged)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(differing, 1, "{i}");
            assert_eq!(
                forged[..CERTIFICATE_LEN - 64],
                genuine[..CERTIFICATE_LEN - 64]
            );
            // Still a well-formed certificate: only the signature check can refuse it.
            let decoded = Certificate::from_bytes(&forged).unwrap();
            assert!(!issuer.key().public_key().verify(
                &forged[..CERTIFICATE_LEN - 64],
                &forged[CERTIFICATE_LEN - 64..].try_into().unwrap()
            ));
            assert_eq!(
                decoded.fields().web_number,
                Certificate::from_bytes(&genuine)
                    .unwrap()
                    .fields()
                    .web_number
            );
        }
    }

    #[test]
    fn the_issuing_key_is_read_from_a_data_directory_or_the_problem_named() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let error = issuing_key(dir).unwrap_err();
        assert_eq!(error.code(), "data_directory");
        assert!(error.to_string().contains("cyberid-data"), "{error}");

        let opened = cyberid_datadir::DataDir::open_or_init(dir).unwrap();
        let verify_only = IssuerSigningKey::generate().unwrap();
        opened
            .add_key(verify_only.public_key(), None, true, 1)
            .unwrap();
        assert!(
            issuing_key(dir)
                .unwrap_err()
                .to_string()
                .contains("no issuing key")
        );

        let key = IssuerSigningKey::generate().unwrap();
        let id = opened
            .add_key(key.public_key(), Some(&key), true, 2)
            .unwrap();
        assert_eq!(issuing_key(dir).unwrap().key_id(), id);

        let specs = [
            Spec {
                holder: WebNumber::generate().unwrap(),
                audience: None,
                expired: false,
            },
            Spec {
                holder: WebNumber::generate().unwrap(),
                audience: Some("shop.example".parse().unwrap()),
                expired: true,
            },
        ];
        let made = sign_locally(dir, &specs, 300).unwrap();
        let now = SystemClock.now();
        let fresh = Certificate::from_bytes(&made[0].bytes).unwrap();
        assert_eq!(fresh.fields().lifetime, 300);
        assert!(fresh.fields().issued_at.abs_diff(now) <= 2);
        assert_eq!(made[0].expires_at, fresh.fields().expires_at());
        let expired = Certificate::from_bytes(&made[1].bytes).unwrap();
        assert!(expired.fields().expires_at() + 3_000 < now);
        assert_eq!(expired.fields().audience, specs[1].audience);
        assert!(key.public_key().verify(
            &made[1].bytes[..63],
            &made[1].bytes[63..].try_into().unwrap()
        ));
    }

    /// A data directory holding just an issuing key, as the harness reads it.
    fn data_dir_with_key() -> (tempfile::TempDir, IssuerSigningKey) {
        let temp = tempfile::tempdir().unwrap();
        let key = IssuerSigningKey::generate().unwrap();
        cyberid_datadir::DataDir::open_or_init(temp.path())
            .unwrap()
            .add_key(key.public_key(), Some(&key), true, 1)
            .unwrap();
        (temp, key)
    }

    #[tokio::test]
    async fn each_request_carries_a_certificate_of_its_kind_and_valid_ones_are_unique() {
        let (dir, key) = data_dir_with_key();
        let mut config = Config::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
            "cyp_a_b",
            Source::DataDir(dir.path().to_path_buf()),
        );
        config.mix = "valid=4,forged=2,expired=1,wrong-audience=1"
            .parse()
            .unwrap();
        config.pool = 3;
        config.platform = Some("shop.example".parse().unwrap());
        config.body = BodyFormat::Binary;
        let prepared = prepare(&config, 80).await.unwrap();
        let requests = &prepared.requests;
        assert_eq!(requests.len(), 80);
        assert_eq!(prepared.certificates, 40 + 3 + 3 + 3);
        let now = SystemClock.now();
        assert!(prepared.expires_at.unwrap().abs_diff(now + 300) <= 2);

        let mut seen = std::collections::HashMap::<Kind, std::collections::HashSet<Bytes>>::new();
        let mut sent = std::collections::HashMap::<Kind, usize>::new();
        for index in 0..requests.len() {
            let (expect, body) = requests.get(index);
            let Expect::Verdict(kind) = expect else {
                panic!("{expect:?}")
            };
            *sent.entry(kind).or_default() += 1;
            seen.entry(kind).or_default().insert(body.clone());
            let certificate = Certificate::from_bytes(body).unwrap();
            let fields = certificate.fields();
            let genuine = key
                .public_key()
                .verify(&body[..63], &body[63..].try_into().unwrap());
            assert_eq!(genuine, kind != Kind::Forged, "{kind}");
            assert_eq!(fields.expires_at() < now, kind == Kind::Expired, "{kind}");
            let audience = fields.audience.map(|a| a.to_string());
            let expected = match kind {
                Kind::WrongAudience => "not-the-caller",
                _ => "shop.example",
            };
            assert_eq!(audience.as_deref(), Some(expected), "{kind}");
        }
        assert_eq!(sent[&Kind::Valid], 40);
        assert_eq!(
            seen[&Kind::Valid].len(),
            40,
            "every valid request is unique"
        );
        assert_eq!((sent[&Kind::Forged], seen[&Kind::Forged].len()), (20, 3));
        assert_eq!((sent[&Kind::Expired], seen[&Kind::Expired].len()), (10, 3));
        assert_eq!(seen[&Kind::WrongAudience].len(), 3);
    }

    #[tokio::test]
    async fn synthetic_requests_share_one_body_and_expect_anything() {
        let config = Config::expect_any(std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
        let prepared = prepare(&config, 5).await.unwrap();
        assert_eq!(prepared.requests.len(), 5);
        assert_eq!(prepared.certificates, 0);
        assert_eq!(prepared.expires_at, None);
        let (expect, body) = prepared.requests.get(4);
        assert_eq!(expect, Expect::Any);
        assert_eq!(body, &synthetic_body(BodyFormat::Json));
    }

    #[test]
    fn bodies_carry_the_certificate_in_the_chosen_form() {
        let issuer = Issuer::new(
            IssuerSigningKey::generate().unwrap(),
            IssuerPolicy::default(),
        )
        .unwrap();
        let certificate = issuer
            .issue(
                &cyberid_engine::IssueRequest::new(WebNumber::generate().unwrap()),
                1_790_000_000,
            )
            .unwrap();
        let json = body(BodyFormat::Json, certificate.as_bytes()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["certificate"], certificate.to_text());
        let binary = body(BodyFormat::Binary, certificate.as_bytes()).unwrap();
        assert_eq!(&binary[..], certificate.as_bytes());
        // The synthetic body has the same size as a real one.
        assert_eq!(synthetic_body(BodyFormat::Json).len(), json.len());
        assert_eq!(synthetic_body(BodyFormat::Binary).len(), binary.len());
    }
}
