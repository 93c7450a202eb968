//! The registry of enrollments: two column families written with their audit records in one
//! synced batch, under the lock that orders the revocation history, so that an enrollment and
//! its audit entry are durable together or not at all, and two enrollments of one person never
//! both succeed.

use cyberid_engine::{Error as EngineError, RevocationRecord, WebNumber};
use cyberid_identity::{BlindIndex, Enrollment, Error, Registry, check_expected};
use rocksdb::WriteBatch;

use crate::DurableStore;
use crate::layout::{ENROLLMENT_INDEX, ENROLLMENTS, store_error};

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
}
