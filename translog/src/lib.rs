//! The authentication log's tamper evidence: a Merkle tree in the shape of certificate
//! transparency (RFC 9162 §2.1) with SM3 as its hash.
//!
//! Every verification that reached a genuine signature becomes a leaf. Whoever holds a signed
//! tree head can ask for an *inclusion proof* (this entry is in the log the head commits to)
//! and a *consistency proof* (the log of this head is the log of an earlier head plus
//! appended entries, nothing rewritten). The tree grows by [`Frontier::append`], which returns
//! the complete subtrees each leaf finishes; a store keeps those, and every root and proof of
//! any earlier size is computed from them ([`Subtrees`]). No storage engine here.
//!
//! ```
//! use cyberid_translog::{
//!     MemoryTree, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency,
//!     verify_inclusion,
//! };
//!
//! let mut log = MemoryTree::new();
//! for entry in ["first", "second", "third"] {
//!     log.push(entry.as_bytes());
//! }
//! let old_head = root(&log, 3)?;
//! log.push(b"fourth");
//! log.push(b"fifth");
//! let head = log.root();
//!
//! // "second" (index 1) is in the log of 5 entries...
//! let proof = inclusion_proof(&log, 1, 5)?;
//! verify_inclusion(&leaf_hash(b"second"), 1, 5, &proof, &head)?;
//! // ...and that log extends the log of 3 without rewriting it.
//! let proof = consistency_proof(&log, 3, 5)?;
//! verify_consistency(3, 5, &proof, &old_head, &head)?;
//! # Ok::<(), cyberid_translog::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod entry;
mod error;
mod head;
mod merkle;
mod record;
mod store;

pub use audit::{Audited, audit_heads, audit_subtrees};
pub use cyberid_engine::{LogEntry, LogOutcome, Receipt};
pub use entry::{
    ENTRY_SECRET_LEN, VERIFICATION_ENTRY_LEN, commitment, decode_entry, encode_entry,
    entry_commitment,
};
pub use error::{Error, Fault};
pub use head::{HEAD_SIGNED_LEN, SIGNED_HEAD_LEN, SignedTreeHead, TreeHead};
pub use merkle::{
    Completed, Frontier, Hash, MemoryTree, Subtrees, consistency_proof, empty_root,
    inclusion_proof, leaf_hash, node_hash, root, verify_consistency, verify_inclusion,
};
pub use record::{AccessEntry, Record};
pub use store::{LogStore, StoredEntry};
