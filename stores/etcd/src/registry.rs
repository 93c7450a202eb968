//! The registry of enrollments on the cluster: an enrollment, its index entry and its audit
//! records are one etcd transaction, guarded by comparisons on the index and holder keys, so
//! two nodes enrolling one person at once yield one Web Number, and an enrollment is never
//! without its audit entry.

use cyberid_engine::{Error as EngineError, PlatformId, RevocationRecord, WebNumber};
use cyberid_identity::{BlindIndex, Enrollment, Error, Registry, StandingConsent, check_expected};
use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};

use crate::layout::Keys;
use crate::revocations::Race;
use crate::{EtcdStore, Shared};

/// The condition and the writes of one enrollment.
#[derive(Debug)]
pub(crate) struct Guard {
    enrollment: Enrollment,
    expected: Option<WebNumber>,
    index_key: String,
    holder_key: String,
    holder_value: Vec<u8>,
}

impl Guard {
    fn new(shared: &Shared, enrollment: &Enrollment, expected: Option<WebNumber>) -> Self {
        Self {
            index_key: shared.keys.enrollment_index(&enrollment.index),
            holder_key: shared.keys.enrollment(&enrollment.web_number),
            holder_value: enrollment.encode(),
            enrollment: enrollment.clone(),
            expected,
        }
    }

    /// What the transaction compares: the registry still holds what the enrollment read.
    pub(crate) fn compares(&self) -> Vec<Compare> {
        let absent = |key: &str| Compare::create_revision(key, CompareOp::Equal, 0);
        let names =
            |key: &str, number: &WebNumber| Compare::value(key, CompareOp::Equal, number.as_str());
        match self.expected {
            None => vec![absent(&self.index_key), absent(&self.holder_key)],
            Some(previous) if previous == self.enrollment.web_number => {
                vec![names(&self.index_key, &previous)]
            }
            Some(previous) => vec![names(&self.index_key, &previous), absent(&self.holder_key)],
        }
    }

    /// The two puts.
    pub(crate) fn operations(&self) -> Vec<TxnOp> {
        vec![
            TxnOp::put(
                self.index_key.as_str(),
                self.enrollment.web_number.as_str(),
                None,
            ),
            TxnOp::put(self.holder_key.as_str(), self.holder_value.clone(), None),
        ]
    }

    /// Whether the condition holds now (read linearizably).
    pub(crate) async fn holds(&self, shared: &Shared) -> Result<bool, EngineError> {
        let under_index = match shared.get_value(&self.index_key).await? {
            Some(bytes) => Some(parse_number(&bytes).map_err(|_| {
                EngineError::Corrupt("an enrollment index value is not a Web Number".into())
            })?),
            None => None,
        };
        let taken = shared.get_value(&self.holder_key).await?.is_some();
        Ok(check_expected(&self.enrollment, self.expected, under_index, taken).is_ok())
    }

    /// Whether an attempt whose answer was lost took effect: the holder key holds exactly
    /// what this write put (a sealed record's nonce makes it unique).
    pub(crate) async fn written(&self, shared: &Shared) -> Result<bool, EngineError> {
        Ok(shared.get_value(&self.holder_key).await?.as_deref() == Some(&self.holder_value[..]))
    }
}

fn parse_number(bytes: &[u8]) -> Result<WebNumber, Error> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(Error::Corrupt(
            "an enrollment index value is not a Web Number",
        ))
}

impl Shared {
    /// One key's value, read linearizably.
    pub(crate) async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let key = key.to_owned();
        let answer = self
            .call(|mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await
            .map_err(|failure| failure.into_error("read enrollment"))?;
        Ok(answer.kvs().first().map(|kv| kv.value().to_vec()))
    }
}

impl Registry for EtcdStore {
    fn find(&self, index: &BlindIndex) -> Result<Option<WebNumber>, Error> {
        let key = self.shared.keys.enrollment_index(index);
        self.block_on(self.shared.get_value(&key))?
            .map(|bytes| parse_number(&bytes))
            .transpose()
    }

    fn holder(&self, web_number: &WebNumber) -> Result<Option<Enrollment>, Error> {
        let key = self.shared.keys.enrollment(web_number);
        self.block_on(self.shared.get_value(&key))?
            .map(|bytes| Enrollment::decode(*web_number, &bytes))
            .transpose()
    }

    fn store(
        &self,
        enrollment: &Enrollment,
        expected: Option<WebNumber>,
        audit: &[RevocationRecord],
    ) -> Result<u64, Error> {
        for record in audit {
            record.validate()?;
        }
        let guard = Guard::new(&self.shared, enrollment, expected);
        match self.block_on(self.shared.write_guarded(audit, Some(&guard)))? {
            Ok(seq) => Ok(seq),
            Err(Race) => Err(Error::EnrollmentRace),
        }
    }

    fn consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<Option<StandingConsent>, Error> {
        let key = self.shared.keys.consent(web_number, platform);
        self.block_on(self.shared.get_value(&key))?
            .map(|bytes| StandingConsent::decode(*platform, &bytes))
            .transpose()
    }

    fn consents(&self, web_number: &WebNumber) -> Result<Vec<StandingConsent>, Error> {
        let prefix = self.shared.keys.consents(web_number);
        let end = Keys::range_end(&prefix);
        // A holder consents to a handful of platforms: one linearizable range read.
        let answer = self
            .block_on(self.shared.call(|mut client| {
                let (prefix, end) = (prefix.clone(), end.clone());
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_range(end)))
                        .await
                }
            }))
            .map_err(|failure| failure.into_error("read consents"))?;
        answer
            .kvs()
            .iter()
            .map(|kv| {
                let platform = kv
                    .key()
                    .strip_prefix(prefix.as_bytes())
                    .and_then(|id| std::str::from_utf8(id).ok())
                    .and_then(|id| id.parse().ok())
                    .ok_or(Error::Corrupt("a consent key names no platform"))?;
                StandingConsent::decode(platform, kv.value())
            })
            .collect()
    }

    fn put_consent(&self, web_number: &WebNumber, consent: &StandingConsent) -> Result<(), Error> {
        let key = self.shared.keys.consent(web_number, &consent.platform);
        let value = consent.encode().to_vec();
        self.block_on(self.shared.call(|mut client| {
            let (key, value) = (key.clone(), value.clone());
            async move { client.put(key, value, None).await }
        }))
        .map_err(|failure| failure.into_error("write consent"))?;
        Ok(())
    }

    fn withdraw_consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<bool, Error> {
        let key = self.shared.keys.consent(web_number, platform);
        let answer = self
            .block_on(self.shared.call(|mut client| {
                let key = key.clone();
                async move { client.delete(key, None).await }
            }))
            .map_err(|failure| failure.into_error("withdraw consent"))?;
        Ok(answer.deleted() > 0)
    }
}
