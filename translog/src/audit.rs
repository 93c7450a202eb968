//! Auditing a whole log from its leaves: what `cyberid log verify` runs, online (leaves and
//! heads fetched from a node) or offline (read from a stopped node's store).
//!
//! The leaves are rebuilt into a tree here, from nothing but themselves, so a store whose
//! interior nodes or proofs were tampered with cannot vouch for itself: every head must be
//! signed by the log's key and its root must be the root of the first `size` leaves.

use cyberid_engine::IssuerPublicKey;

use crate::{Error, MemoryTree, SignedTreeHead, Subtrees, root};

/// What an audit checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audited {
    /// Leaves in the log.
    pub size: u64,
    /// Heads checked.
    pub heads: usize,
}

/// Checks `heads` (in any order) against the log of `leaves`: each is signed by `key`, is no
/// larger than the log, and commits to the root of its first `size` leaves; and no head
/// contradicts another (two heads of one size with different roots cannot both pass).
pub fn audit_heads(
    leaves: &MemoryTree,
    heads: &[SignedTreeHead],
    key: &IssuerPublicKey,
) -> Result<Audited, Error> {
    let mut sorted: Vec<&SignedTreeHead> = heads.iter().collect();
    sorted.sort_by_key(|head| (head.head.size, head.head.timestamp_ms));
    for head in &sorted {
        let size = head.head.size;
        head.verify(key)?;
        if size > leaves.size() {
            return Err(Error::Inconsistent {
                what: "a signed head is larger than the log: entries were removed",
                at: size,
            });
        }
        if root(leaves, size)? != head.head.root {
            return Err(Error::Inconsistent {
                what: "a signed head's root is not the root of the log's leaves",
                at: size,
            });
        }
    }
    // Time runs forward with size: a head that is larger but older is a fork or a replay.
    for pair in sorted.windows(2) {
        if pair[1].head.size > pair[0].head.size
            && pair[1].head.timestamp_ms < pair[0].head.timestamp_ms
        {
            return Err(Error::Inconsistent {
                what: "a larger head is dated before a smaller one",
                at: pair[1].head.size,
            });
        }
    }
    Ok(Audited {
        size: leaves.size(),
        heads: sorted.len(),
    })
}

/// Checks that every complete subtree `stored` holds within `size` leaves is the one the
/// leaves make: a store whose interior nodes were changed would serve proofs that fail.
pub fn audit_subtrees<S: Subtrees + ?Sized>(leaves: &MemoryTree, stored: &S) -> Result<(), Error> {
    let size = leaves.size();
    let mut level = 0u32;
    while level < 64 && (size >> level) > 0 {
        for index in 0..(size >> level) {
            if stored.subtree(level, index)? != leaves.subtree(level, index)? {
                return Err(Error::Inconsistent {
                    what: "a stored subtree is not the one its leaves make",
                    at: index << level,
                });
            }
        }
        level += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cyberid_engine::IssuerSigningKey;

    use super::*;
    use crate::TreeHead;

    fn head(tree: &MemoryTree, size: u64, at: u64, key: &IssuerSigningKey) -> SignedTreeHead {
        TreeHead {
            size,
            timestamp_ms: at,
            root: root(tree, size).unwrap(),
        }
        .sign(key)
        .unwrap()
    }

    #[test]
    fn heads_of_the_leaves_pass_and_a_truncated_or_rewritten_log_fails() {
        let key = IssuerSigningKey::generate().unwrap();
        let mut tree = MemoryTree::new();
        for leaf in 0..7u8 {
            tree.push(&[leaf]);
        }
        let heads = [head(&tree, 3, 1, &key), head(&tree, 7, 2, &key)];
        assert_eq!(
            audit_heads(&tree, &heads, key.public_key()).unwrap(),
            Audited { size: 7, heads: 2 }
        );
        audit_subtrees(&tree, &tree).unwrap();

        // Truncated: the last leaves are gone, the head that covered them is not.
        let mut truncated = MemoryTree::new();
        for leaf in 0..5u8 {
            truncated.push(&[leaf]);
        }
        let error = audit_heads(&truncated, &heads, key.public_key()).unwrap_err();
        assert_eq!(error.code(), "log_inconsistent");
        // Rewritten: one leaf differs.
        let mut rewritten = MemoryTree::new();
        for leaf in 0..7u8 {
            rewritten.push(&[if leaf == 1 { 9 } else { leaf }]);
        }
        assert!(audit_heads(&rewritten, &heads, key.public_key()).is_err());
        assert!(audit_subtrees(&tree, &rewritten).is_err());
        // A head under another key.
        let other = IssuerSigningKey::generate().unwrap();
        assert!(audit_heads(&tree, &[head(&tree, 7, 2, &other)], key.public_key()).is_err());
        // A larger head dated before a smaller one.
        let backwards = [head(&tree, 3, 5, &key), head(&tree, 7, 4, &key)];
        assert!(audit_heads(&tree, &backwards, key.public_key()).is_err());
    }
}
