//! The node's side of the authentication log: signing tree heads, and answering proofs and
//! reads from the store that keeps the log. Appending is the pipeline's (in the nonce write).
//!
//! A head is signed at most once a second, and only when the log grew: an idle node signs
//! nothing, and a busy one signs one head per second whatever its rate. Heads are saved in the
//! store, so the log's history of heads survives restarts and an auditor can fetch any of them.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cyberid_engine::{CertificateId, Clock, IssuerPublicKey, IssuerSigningKey, Receipt, WebNumber};
use cyberid_translog::{
    AccessEntry, Error as LogError, Hash, LogStore, SignedTreeHead, StoredEntry, TreeHead,
    consistency_proof, inclusion_proof, root,
};

/// How often the signer looks for growth.
pub(crate) const HEAD_INTERVAL: Duration = Duration::from_secs(1);
/// Most leaves or entries one read returns.
pub(crate) const PAGE_LIMIT: usize = 1000;

/// The log as the node serves it.
pub(crate) struct LogService {
    store: Arc<dyn LogStore>,
    key: Arc<IssuerSigningKey>,
    latest: Arc<ArcSwapOption<SignedTreeHead>>,
    stop: Option<Sender<()>>,
    signer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogService")
            .field("size", &self.store.size())
            .finish_non_exhaustive()
    }
}

/// Whose entries to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    /// A holder's, from a log index on.
    Holder(WebNumber, u64),
    /// A certificate's.
    Certificate(CertificateId),
}

/// An entry with its inclusion proof in the latest head, if that head covers it.
pub(crate) struct ProvenEntry {
    pub(crate) stored: StoredEntry,
    pub(crate) proof: Option<Vec<Hash>>,
}

impl LogService {
    /// Serves `store`'s log, signing heads with `key` from now on.
    pub(crate) fn start(
        store: Arc<dyn LogStore>,
        key: IssuerSigningKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, cyberid_engine::Error> {
        let latest = Arc::new(ArcSwapOption::from(
            store.latest_head().map_err(into_engine)?.map(Arc::new),
        ));
        let key = Arc::new(key);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let signer = {
            let (store, key, latest) = (store.clone(), key.clone(), latest.clone());
            std::thread::Builder::new()
                .name("cyberid-log-heads".into())
                .spawn(move || sign_heads(&*store, &key, &latest, &*clock, &stopped))
                .map_err(|_| cyberid_engine::Error::Config("cannot start the log head signer"))?
        };
        Ok(Self {
            store,
            key,
            latest,
            stop: Some(stop),
            signer: Some(signer),
        })
    }

    /// The key heads are signed with.
    pub(crate) fn public_key(&self) -> &IssuerPublicKey {
        self.key.public_key()
    }

    /// The latest signed head, if the log has one yet.
    pub(crate) fn latest_head(&self) -> Option<SignedTreeHead> {
        self.latest.load().as_deref().copied()
    }

    /// The head saved for exactly this size.
    pub(crate) fn head_at(&self, size: u64) -> Result<Option<SignedTreeHead>, LogError> {
        self.store.head_at(size)
    }

    /// Entries durably in the log.
    pub(crate) fn size(&self) -> u64 {
        self.store.size()
    }

    pub(crate) fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.within(size)?;
        inclusion_proof(&*self.store, index, size)
    }

    pub(crate) fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, LogError> {
        self.within(to)?;
        consistency_proof(&*self.store, from, to)
    }

    /// The leaves (commitments) from `from`, at most `count` and [`PAGE_LIMIT`].
    pub(crate) fn leaves(&self, from: u64, count: usize) -> Result<Vec<Hash>, LogError> {
        let end = self
            .size()
            .min(from.saturating_add(count.min(PAGE_LIMIT) as u64));
        (from..end)
            .map(|index| self.store.subtree(0, index))
            .collect()
    }

    /// Entries by holder or certificate, each with its inclusion proof in the latest head
    /// (entries newer than that head come without one: the next head covers them).
    pub(crate) fn entries(
        &self,
        lookup: Lookup,
    ) -> Result<(Vec<ProvenEntry>, Option<SignedTreeHead>), LogError> {
        let head = self.latest_head();
        let entries = match lookup {
            Lookup::Holder(web_number, from) => {
                self.store
                    .entries_of_holder(&web_number, from, PAGE_LIMIT)?
            }
            Lookup::Certificate(id) => self.store.entries_of_certificate(&id)?,
        };
        let proven = entries
            .into_iter()
            .map(|stored| {
                let proof = match head {
                    Some(head) if stored.index < head.head.size => {
                        Some(inclusion_proof(&*self.store, stored.index, head.head.size)?)
                    }
                    _ => None,
                };
                Ok(ProvenEntry { stored, proof })
            })
            .collect::<Result<_, LogError>>()?;
        Ok((proven, head))
    }

    /// Records an authority's access, durably, before anything is shown to it.
    pub(crate) fn record_access(&self, access: &AccessEntry) -> Result<Receipt, LogError> {
        self.store.append_access(access)
    }

    /// Proofs are served for sizes the log has reached, never beyond.
    fn within(&self, size: u64) -> Result<(), LogError> {
        let held = self.size();
        if size > held {
            return Err(LogError::OutOfRange {
                index: size,
                size: held,
            });
        }
        Ok(())
    }
}

impl Drop for LogService {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(signer) = self.signer.take() {
            let _ = signer.join();
        }
    }
}

fn into_engine(error: LogError) -> cyberid_engine::Error {
    cyberid_engine::Error::Store {
        context: "authentication log",
        detail: error.to_string(),
    }
}

/// Signs a head whenever the log grew, at most every [`HEAD_INTERVAL`], until `stopped`.
fn sign_heads(
    store: &dyn LogStore,
    key: &IssuerSigningKey,
    latest: &ArcSwapOption<SignedTreeHead>,
    clock: &dyn Clock,
    stopped: &Receiver<()>,
) {
    loop {
        let size = store.size();
        let signed_size = latest.load().as_ref().map(|head| head.head.size);
        if signed_size != Some(size) {
            match sign_head(store, key, size, clock) {
                Ok(head) => latest.store(Some(Arc::new(head))),
                // Tried again next interval; the store reports its own failures.
                Err(error) => tracing::warn!(code = error.code(), "signing a tree head failed"),
            }
        }
        match stopped.recv_timeout(HEAD_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn sign_head(
    store: &dyn LogStore,
    key: &IssuerSigningKey,
    size: u64,
    clock: &dyn Clock,
) -> Result<SignedTreeHead, LogError> {
    let head = TreeHead {
        size,
        timestamp_ms: clock.now_ms(),
        root: root(store, size)?,
    }
    .sign(key)?;
    store.save_head(&head)?;
    Ok(head)
}
