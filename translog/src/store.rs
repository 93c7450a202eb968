//! What a store that keeps the log offers its readers. Appending is not here: verification
//! entries are appended by the nonce store in the same durable write as their nonces
//! (`cyberid_engine::NonceStore::consume_logged`), so no reader can see a log that a crash
//! would take back.

use cyberid_engine::{CertificateId, Receipt, WebNumber};

use crate::{AccessEntry, ENTRY_SECRET_LEN, Error, Hash, Record, SignedTreeHead, Subtrees};

/// An entry as the log keeps it, with the secret that opens its commitment.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its index in the log.
    pub index: u64,
    /// The per-entry secret of its commitment.
    pub secret: [u8; ENTRY_SECRET_LEN],
    /// The record.
    pub record: Record,
}

impl StoredEntry {
    /// The leaf it became.
    pub fn commitment(&self) -> Hash {
        self.record.commitment(&self.secret)
    }
}

impl std::fmt::Debug for StoredEntry {
    // The secret opens the commitment: it never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEntry")
            .field("index", &self.index)
            .field("at_ms", &self.record.at_ms())
            .finish_non_exhaustive()
    }
}

/// The log as a store keeps it: the tree's complete subtrees ([`Subtrees`]), the entries with
/// their secrets, the indexes by holder and by certificate, and the signed heads.
///
/// Entries past the retention period are gone (their secrets with them); their leaves and the
/// subtrees above them stay, so every head and proof stays checkable and the commitments
/// reveal nothing.
pub trait LogStore: Subtrees + Send + Sync {
    /// Entries durably in the log.
    fn size(&self) -> u64;
    /// Index of the oldest entry still held (entries before it are past retention).
    fn retained_from(&self) -> u64;
    /// The entry at `index`, or `None` if it is past retention or beyond the log.
    fn entry(&self, index: u64) -> Result<Option<StoredEntry>, Error>;
    /// Up to `limit` entries naming this holder with an index at or above `from`, oldest first.
    fn entries_of_holder(
        &self,
        web_number: &WebNumber,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, Error>;
    /// Every entry held for this certificate, oldest first.
    fn entries_of_certificate(
        &self,
        certificate_id: &CertificateId,
    ) -> Result<Vec<StoredEntry>, Error>;
    /// Appends an authority's access (checked with [`AccessEntry::validate`]) with one synced
    /// write, before the authority is shown anything; its receipt.
    fn append_access(&self, access: &AccessEntry) -> Result<Receipt, Error>;
    /// Keeps a signed head (durably), so that the log's heads survive a restart.
    fn save_head(&self, head: &SignedTreeHead) -> Result<(), Error>;
    /// The latest head saved.
    fn latest_head(&self) -> Result<Option<SignedTreeHead>, Error>;
    /// The head saved for exactly this size, if any.
    fn head_at(&self, size: u64) -> Result<Option<SignedTreeHead>, Error>;
    /// Up to `limit` saved heads with a size at or above `from_size`, smallest first.
    fn heads(&self, from_size: u64, limit: usize) -> Result<Vec<SignedTreeHead>, Error>;
}
