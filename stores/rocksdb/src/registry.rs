//! The registry of enrollments: two column families written with their audit records in one
//! synced batch, under the lock that orders the revocation history, so that an enrollment and
//! its audit entry are durable together or not at all, and two enrollments of one person never
//! both succeed. Holders' standing consents are a third family, keyed by holder and platform.

use cyberid_engine::{
    Error as EngineError, PLATFORM_ID_LEN, PlatformId, RevocationRecord, WebNumber,
};
use cyberid_identity::{BlindIndex, Enrollment, Error, Registry, StandingConsent, check_expected};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::DurableStore;
use crate::layout::{CONSENTS, ENROLLMENT_INDEX, ENROLLMENTS, store_error};

/// A consent's key: the holder, then the platform's 16-byte NUL-padded form.
fn consent_key(web_number: &WebNumber, platform: &PlatformId) -> [u8; 10 + PLATFORM_ID_LEN] {
    let mut key = [0u8; 10 + PLATFORM_ID_LEN];
    key[..10].copy_from_slice(web_number.as_bytes());
    key[10..].copy_from_slice(platform.audience_field());
    key
}

impl DurableStore {
    fn web_number_under(&self, index: &BlindIndex) -> Result<Option<WebNumber>, Error> {
        let family = self.inner.cf(ENROLLMENT_INDEX)?;
        let value = self
            .inner
            .db
            .get_pinned_cf(&family, index.as_bytes())
            .map_err(|e| store_error("read enrollment index", &e))?;
        value
            .map(|bytes| {
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or(Error::Corrupt(
                        "an enrollment index value is not a Web Number",
                    ))
            })
            .transpose()
    }

    fn enrollment_bytes(&self, web_number: &WebNumber) -> Result<Option<Vec<u8>>, Error> {
        let family = self.inner.cf(ENROLLMENTS)?;
        Ok(self
            .inner
            .db
            .get_cf(&family, web_number.as_bytes())
            .map_err(|e| store_error("read enrollment", &e))?)
    }
}

impl Registry for DurableStore {
    fn find(&self, index: &BlindIndex) -> Result<Option<WebNumber>, Error> {
        self.inner.check_poisoned()?;
        self.web_number_under(index)
    }

    fn holder(&self, web_number: &WebNumber) -> Result<Option<Enrollment>, Error> {
        self.inner.check_poisoned()?;
        self.enrollment_bytes(web_number)?
            .map(|bytes| Enrollment::decode(*web_number, &bytes))
            .transpose()
    }

    fn store(
        &self,
        enrollment: &Enrollment,
        expected: Option<WebNumber>,
        audit: &[RevocationRecord],
    ) -> Result<u64, Error> {
        let mut seq = self
            .inner
            .revocation_seq
            .lock()
            .map_err(|_| EngineError::Poisoned)?;
        self.inner.check_poisoned()?;
        // Compared under the lock, against what every earlier write left.
        check_expected(
            enrollment,
            expected,
            self.web_number_under(&enrollment.index)?,
            self.enrollment_bytes(&enrollment.web_number)?.is_some(),
        )?;
        self.inner.revocations.check_batch(audit)?;
        let mut batch = WriteBatch::default();
        {
            let index = self.inner.cf(ENROLLMENT_INDEX)?;
            let holders = self.inner.cf(ENROLLMENTS)?;
            batch.put_cf(
                &index,
                enrollment.index.as_bytes(),
                enrollment.web_number.as_bytes(),
            );
            batch.put_cf(
                &holders,
                enrollment.web_number.as_bytes(),
                enrollment.encode(),
            );
        }
        self.inner.log_records(&mut batch, audit, *seq)?;
        self.inner.write(batch, "enrollment")?;
        for record in audit {
            self.inner.revocations.apply(&record.change);
        }
        *seq += audit.len() as u64;
        Ok(*seq)
    }

    fn consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<Option<StandingConsent>, Error> {
        self.inner.check_poisoned()?;
        let family = self.inner.cf(CONSENTS)?;
        self.inner
            .db
            .get_pinned_cf(&family, consent_key(web_number, platform))
            .map_err(|e| store_error("read consent", &e))?
            .map(|bytes| StandingConsent::decode(*platform, &bytes))
            .transpose()
    }

    fn consents(&self, web_number: &WebNumber) -> Result<Vec<StandingConsent>, Error> {
        self.inner.check_poisoned()?;
        let family = self.inner.cf(CONSENTS)?;
        let mut consents = Vec::new();
        let from = IteratorMode::From(web_number.as_bytes(), Direction::Forward);
        for item in self.inner.db.iterator_cf(&family, from) {
            let (key, value) = item.map_err(|e| store_error("read consents", &e))?;
            let Some(platform) = key.strip_prefix(web_number.as_bytes()) else {
                break;
            };
            let field: &[u8; PLATFORM_ID_LEN] = platform
                .try_into()
                .map_err(|_| Error::Corrupt("a consent key is not 26 bytes"))?;
            let platform = PlatformId::from_audience_field(field)
                .ok()
                .flatten()
                .ok_or(Error::Corrupt("a consent key names no platform"))?;
            consents.push(StandingConsent::decode(platform, &value)?);
        }
        Ok(consents)
    }

    fn put_consent(&self, web_number: &WebNumber, consent: &StandingConsent) -> Result<(), Error> {
        // Under the registry's write lock, so a concurrent withdrawal's answer is exact.
        let _seq = self
            .inner
            .revocation_seq
            .lock()
            .map_err(|_| EngineError::Poisoned)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &self.inner.cf(CONSENTS)?,
            consent_key(web_number, &consent.platform),
            consent.encode(),
        );
        Ok(self.inner.write(batch, "consent")?)
    }

    fn withdraw_consent(
        &self,
        web_number: &WebNumber,
        platform: &PlatformId,
    ) -> Result<bool, Error> {
        let _seq = self
            .inner
            .revocation_seq
            .lock()
            .map_err(|_| EngineError::Poisoned)?;
        if self.consent(web_number, platform)?.is_none() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(&self.inner.cf(CONSENTS)?, consent_key(web_number, platform));
        self.inner.write(batch, "withdraw consent")?;
        Ok(true)
    }
}
