//! The revocation set: whole in memory for lookups, every change written to the state and the
//! ordered log in one synced batch before it becomes visible and is acknowledged.

use cyberid_engine::{
    CertificateId, Error, KeyId, RevocationCounts, RevocationRecord, RevocationSet, Standing,
    WebNumber,
};
use rocksdb::WriteBatch;

use crate::layout::{REVOCATION_LOG, REVOCATION_STATE, decode_u64, encode_state, store_error};
use crate::{DurableStore, faults};

impl RevocationSet for DurableStore {
    fn standing(&self, web_number: &WebNumber) -> Standing {
        self.inner.revocations.standing(web_number)
    }

    fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.inner.revocations.certificate_revoked(certificate_id)
    }

    fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.inner.revocations.key_revoked(key_id)
    }

    fn apply_batch(&self, records: &[RevocationRecord]) -> Result<u64, Error> {
        let mut seq = self
            .inner
            .revocation_seq
            .lock()
            .map_err(|_| Error::Poisoned)?;
        // Checked under the lock, against the state every earlier write left.
        self.inner.revocations.check_batch(records)?;
        faults::point("rocksdb::revocation_check")?;
        let mut batch = WriteBatch::default();
        self.inner.log_records(&mut batch, records, *seq)?;
        self.inner.write(batch, "revocation")?;
        // Durable first, visible second, acknowledged last: an acknowledged revocation is
        // always both.
        for record in records {
            self.inner.revocations.apply(&record.change);
        }
        *seq += records.len() as u64;
        faults::point("rocksdb::revocation_applied")?;
        Ok(*seq)
    }

    fn history(&self, after: u64, limit: usize) -> Result<Vec<(u64, RevocationRecord)>, Error> {
        let log = self.inner.cf(REVOCATION_LOG)?;
        let mut iterator = self.inner.db.raw_iterator_cf(&log);
        iterator.seek(after.saturating_add(1).to_be_bytes());
        let mut records = Vec::new();
        while records.len() < limit {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                break;
            };
            let seq = decode_u64(key)
                .ok_or_else(|| Error::Corrupt("revocation log key is not 8 bytes".into()))?;
            let record = serde_json::from_slice(value)
                .map_err(|_| Error::Corrupt("undecodable revocation log entry".into()))?;
            records.push((seq, record));
            iterator.next();
        }
        iterator
            .status()
            .map_err(|e| store_error("read revocation log", &e))?;
        Ok(records)
    }

    fn counts(&self) -> RevocationCounts {
        self.inner.revocations.counts()
    }
}

impl crate::Inner {
    /// Adds `records` to `batch`: their state changes and their log entries after `seq`.
    /// Call under the `revocation_seq` lock, after checking the records.
    pub(crate) fn log_records(
        &self,
        batch: &mut WriteBatch,
        records: &[RevocationRecord],
        seq: u64,
    ) -> Result<(), Error> {
        let state = self.cf(REVOCATION_STATE)?;
        let log = self.cf(REVOCATION_LOG)?;
        for (offset, record) in (1..).zip(records) {
            match encode_state(&record.change) {
                Some((key, Some(value))) => batch.put_cf(&state, key, value),
                Some((key, None)) => batch.delete_cf(&state, key),
                None => {}
            }
            let json = serde_json::to_vec(record).map_err(|e| Error::Store {
                context: "encode revocation",
                detail: e.to_string(),
            })?;
            batch.put_cf(&log, (seq + offset).to_be_bytes(), json);
        }
        Ok(())
    }
}
