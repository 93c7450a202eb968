//! What a platform receives for a verification: the engine's verdict, with the holder named
//! the way this platform may know them (protocol.md §11).
//!
//! The engine's [`Verdict`] carries the Web Number; it never goes out as is. A platform an
//! authority entitled to Web Numbers gets it; every other platform gets its pairwise subject,
//! stable for that platform and unlinkable across platforms.

use cyberid_engine::{Assurance, Claims, Reason, Receipt, Verdict, WebNumber};
use cyberid_identity::{Disclosed, PairwiseSubject, SubjectKey};
use serde::Serialize;

use crate::auth::Platform;

/// How a result names the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum Subject {
    Pairwise(PairwiseSubject),
    WebNumber(WebNumber),
}

impl Subject {
    fn kind(self) -> &'static str {
        match self {
            Subject::Pairwise(_) => "pairwise",
            Subject::WebNumber(_) => "web_number",
        }
    }
}

/// Where a valid answer sits in the authentication log (protocol.md §12): the platform keeps
/// it to prove later what it was told, against any signed tree head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceiptAnswer(Receipt);

impl Serialize for ReceiptAnswer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut receipt = serializer.serialize_struct("Receipt", 2)?;
        receipt.serialize_field("log_index", &self.0.index)?;
        receipt.serialize_field("commitment", &hex::encode(self.0.commitment))?;
        receipt.end()
    }
}

/// The body of a `200` answer to `POST /v1/verify`.
#[derive(Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub(crate) enum VerifyAnswer {
    Valid {
        subject: Subject,
        subject_type: &'static str,
        assurance: Assurance,
        claims: Claims,
        expires_at: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        receipt: Option<ReceiptAnswer>,
        /// Attributes beyond the result: only with an entitlement and the holder's consent
        /// (protocol.md §13), and recorded in the log entry the receipt points at.
        #[serde(skip_serializing_if = "Option::is_none")]
        attributes: Option<Disclosed>,
    },
    Invalid {
        reason: Reason,
    },
}

impl VerifyAnswer {
    /// The answer for `platform`: an invalid verdict names nobody; a valid one names the holder
    /// by what the platform is entitled to, and carries `disclosed` when it was opened for
    /// this holder.
    pub(crate) fn disclosing(
        verdict: &Verdict,
        platform: &Platform,
        key: &SubjectKey,
        disclosed: Option<(WebNumber, Disclosed)>,
    ) -> Self {
        let mut answer = Self::for_platform(verdict, platform, key);
        if let (
            VerifyAnswer::Valid { attributes, .. },
            Verdict::Valid(verified),
            Some((holder, values)),
        ) = (&mut answer, verdict, disclosed)
            && holder == verified.web_number
            && !values.attributes().is_empty()
        {
            *attributes = Some(values);
        }
        answer
    }

    /// The answer for `platform`, the result only.
    pub(crate) fn for_platform(verdict: &Verdict, platform: &Platform, key: &SubjectKey) -> Self {
        match verdict {
            Verdict::Invalid { reason } => VerifyAnswer::Invalid { reason: *reason },
            Verdict::Valid(verified) => {
                let subject = if platform.web_number_entitled {
                    Subject::WebNumber(verified.web_number)
                } else {
                    Subject::Pairwise(key.subject(&platform.id, &verified.web_number))
                };
                VerifyAnswer::Valid {
                    subject,
                    subject_type: subject.kind(),
                    assurance: verified.assurance,
                    claims: verified.claims,
                    expires_at: verified.expires_at,
                    receipt: verified.receipt.map(ReceiptAnswer),
                    attributes: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cyberid_engine::{AgeBracket, Verified};
    use serde_json::json;

    use super::*;

    fn platform(entitled: bool) -> Platform {
        Platform {
            id: "shop.example".parse().unwrap(),
            scopes: vec![],
            limiter: None,
            web_number_entitled: entitled,
            disclosure: None,
        }
    }

    fn valid(holder: WebNumber) -> Verdict {
        Verdict::Valid(Verified {
            web_number: holder,
            assurance: Assurance::High,
            claims: Claims {
                age: Some(AgeBracket::Adult),
                ..Claims::default()
            },
            expires_at: 7,
            receipt: None,
        })
    }

    #[test]
    fn a_platform_gets_its_pairwise_subject_unless_entitled() {
        let key = SubjectKey::from_bytes(&[2; 32]).unwrap();
        let holder: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
        let pairwise = serde_json::to_value(VerifyAnswer::for_platform(
            &valid(holder),
            &platform(false),
            &key,
        ))
        .unwrap();
        assert_eq!(
            pairwise,
            json!({
                "verdict": "valid", "subject": "R78NAE04T4HX1G3NG776", "subject_type": "pairwise",
                "assurance": "high", "claims": { "age": "adult" }, "expires_at": 7,
            })
        );
        let entitled = serde_json::to_value(VerifyAnswer::for_platform(
            &valid(holder),
            &platform(true),
            &key,
        ))
        .unwrap();
        assert_eq!(entitled["subject"], "7K3MQ9XZ2P");
        assert_eq!(entitled["subject_type"], "web_number");
        let invalid = Verdict::Invalid {
            reason: Reason::Replayed,
        };
        assert_eq!(
            serde_json::to_value(VerifyAnswer::for_platform(&invalid, &platform(true), &key))
                .unwrap(),
            json!({ "verdict": "invalid", "reason": "replayed" })
        );
    }
}
