//! The Merkle tree of RFC 9162 §2.1 with SM3 as its hash.
//!
//! `MTH({}) = SM3()`, `MTH({d}) = SM3(0x00 || d)`, and for n > 1, with k the largest power of
//! two below n, `MTH(D[n]) = SM3(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`. Every left operand of
//! that recursion is a *complete, aligned* subtree (2^l leaves starting at a multiple of 2^l),
//! so any root or proof of any tree size can be computed from the hashes of complete subtrees
//! alone: a store keeps those (one per internal node ever completed, fewer than one per leaf)
//! and never rehashes leaves.

use std::fmt;

use sm3::{Digest, Sm3};

use crate::Error;

/// An SM3 hash in the tree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| Error::Encoding("a hash is 64 hex digits"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The root of the empty tree: SM3 of nothing.
pub fn empty_root() -> Hash {
    Hash(Sm3::digest([]).into())
}

/// A leaf's hash: `SM3(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sm3::new();
    hasher.update([0x00]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// An interior node's hash: `SM3(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sm3::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The largest power of two strictly below `n` (n > 1).
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where complete subtrees' hashes come from: a store, or memory.
pub trait Subtrees {
    /// The hash of the complete subtree of `2^level` leaves that starts at leaf
    /// `index << level`. Asked only for subtrees within the tree size being proved.
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Error>;
}

/// `MTH(D[start:end])` for a range the RFC's recursion produces (`start` a multiple of the
/// largest power of two not above `end - start`).
fn range_hash<S: Subtrees + ?Sized>(source: &S, start: u64, end: u64) -> Result<Hash, Error> {
    let n = end - start;
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return source.subtree(level, start >> level);
    }
    let k = split(n);
    Ok(node_hash(
        &range_hash(source, start, start + k)?,
        &range_hash(source, start + k, end)?,
    ))
}

/// The root of the first `size` leaves.
pub fn root<S: Subtrees + ?Sized>(source: &S, size: u64) -> Result<Hash, Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(source, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
/// §2.1.3.1, `PATH(m, D[n])`), leaf side first.
pub fn inclusion_proof<S: Subtrees + ?Sized>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::OutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(source, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<S: Subtrees + ?Sized>(
    source: &S,
    index: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if index < k {
        path(source, index, start, start + k, proof)?;
        proof.push(range_hash(source, start + k, end)?);
    } else {
        path(source, index - k, start + k, end, proof)?;
        proof.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the tree of the first `old` leaves and that of the first
/// `new` (RFC 9162 §2.1.4.1, `PROOF(m, D[n])`); empty when `old` is 0 or equals `new`.
pub fn consistency_proof<S: Subtrees + ?Sized>(
    source: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, Error> {
    if old > new {
        return Err(Error::OutOfRange {
            index: old,
            size: new,
        });
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(source, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: Subtrees + ?Sized>(
    source: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), Error> {
    let n = end - start;
    if m == n {
        if !whole {
            proof.push(range_hash(source, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(source, m, start, start + k, whole, proof)?;
        proof.push(range_hash(source, start + k, end)?);
    } else {
        subproof(source, m - k, start + k, end, false, proof)?;
        proof.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// Which proof a [`walk`] checks, for its error messages.
#[derive(Clone, Copy)]
enum ProofKind {
    Inclusion,
    Consistency,
}

impl ProofKind {
    fn too_long(self) -> Error {
        Error::BadProof(match self {
            ProofKind::Inclusion => "the inclusion proof is too long",
            ProofKind::Consistency => "the consistency proof is too long",
        })
    }

    fn too_short(self) -> Error {
        Error::BadProof(match self {
            ProofKind::Inclusion => "the inclusion proof is too short",
            ProofKind::Consistency => "the consistency proof is too short",
        })
    }
}

/// The index walk both RFC 9162 verifications share (§2.1.3.2 and §2.1.4.2 from their step
/// "for each value in the path"): `fn_` and `sn` are the node's index and the last index at
/// the current level; `combine(hash, left)` is told whether the proof's hash is the left
/// sibling. The proof must end exactly at the root level.
fn walk(
    mut fn_: u64,
    mut sn: u64,
    proof: &[Hash],
    kind: ProofKind,
    mut combine: impl FnMut(&Hash, bool),
) -> Result<(), Error> {
    for hash in proof {
        if sn == 0 {
            return Err(kind.too_long());
        }
        let left = fn_ & 1 == 1 || fn_ == sn;
        combine(hash, left);
        if left && fn_ & 1 == 0 {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(kind.too_short());
    }
    Ok(())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): leaf `index` with hash `leaf` is in the tree
/// of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    if index >= size {
        return Err(Error::OutOfRange { index, size });
    }
    let mut r = *leaf;
    walk(index, size - 1, proof, ProofKind::Inclusion, |p, left| {
        r = if left {
            node_hash(p, &r)
        } else {
            node_hash(&r, p)
        };
    })?;
    if r != *root {
        return Err(Error::BadProof("the inclusion proof leads to another root"));
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), Error> {
    if old > new {
        return Err(Error::OutOfRange {
            index: old,
            size: new,
        });
    }
    if old == new {
        return match (proof.is_empty(), old_root == new_root) {
            (true, true) => Ok(()),
            (false, _) => Err(Error::BadProof("equal sizes need an empty proof")),
            (true, false) => Err(Error::BadProof("equal sizes with different roots")),
        };
    }
    if old == 0 {
        return match proof.is_empty() {
            true => Ok(()),
            false => Err(Error::BadProof("an empty tree needs an empty proof")),
        };
    }
    // Step 1: if the old tree is a complete subtree, its root starts the proof.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(Error::BadProof("the consistency proof is empty"));
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    walk(fn_, sn, rest, ProofKind::Consistency, |c, left| {
        if left {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    })?;
    if fr != *old_root || sr != *new_root {
        return Err(Error::BadProof(
            "the consistency proof leads to other roots",
        ));
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of the complete subtrees that make up
/// `[0, size)`, largest first (a "compact range"). Appending a leaf completes at most
/// log2(size) + 1 subtrees, which [`Frontier::append`] returns for a store to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    peaks: Vec<(u32, Hash)>,
}

/// A complete subtree an append produced: `2^level` leaves from leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// log2 of its leaf count.
    pub level: u32,
    /// Its position among the subtrees of its level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from its complete subtrees.
    pub fn restore<S: Subtrees + ?Sized>(source: &S, size: u64) -> Result<Self, Error> {
        let mut peaks = Vec::new();
        let mut start = 0;
        for level in (0..64).rev() {
            if size & (1 << level) != 0 {
                peaks.push((level, source.subtree(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(Self { size, peaks })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns every subtree it completed, the leaf itself first.
    pub fn append(&mut self, leaf: Hash) -> Vec<Completed> {
        let index = self.size;
        let mut completed = vec![Completed {
            level: 0,
            index,
            hash: leaf,
        }];
        let mut node = (0u32, leaf);
        while let Some(&(level, left)) = self.peaks.last() {
            if level != node.0 {
                break;
            }
            self.peaks.pop();
            let hash = node_hash(&left, &node.1);
            node = (level + 1, hash);
            completed.push(Completed {
                level: level + 1,
                index: index >> (level + 1),
                hash,
            });
        }
        self.peaks.push(node);
        self.size += 1;
        completed
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut hash)) = peaks.next() else {
            return empty_root();
        };
        for (_, left) in peaks {
            hash = node_hash(left, &hash);
        }
        hash
    }
}

/// Complete subtrees in memory: for tests, tools and small logs.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    /// `levels[l][i]`: the complete subtree of level l at index i.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf's data (hashed as a leaf).
    pub fn push(&mut self, data: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(data))
    }

    /// Appends a leaf by its leaf hash (as a log's leaves are served).
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.frontier.size();
        for node in self.frontier.append(leaf) {
            let level = node.level as usize;
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            debug_assert_eq!(self.levels[level].len() as u64, node.index);
            self.levels[level].push(node.hash);
        }
        index
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl Subtrees for MemoryTree {
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.levels
            .get(level as usize)
            .and_then(|nodes| nodes.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(Error::Missing { level, index })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// MTH straight from the definition, over leaf data: the reference the incremental tree
    /// and the proofs are checked against.
    fn reference_root(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MemoryTree, Vec<Vec<u8>>) {
        let mut tree = MemoryTree::new();
        let leaves: Vec<Vec<u8>> = (0..n).map(|i| i.to_be_bytes().to_vec()).collect();
        for leaf in &leaves {
            tree.push(leaf);
        }
        (tree, leaves)
    }

    #[test]
    fn roots_match_the_definition_at_every_size() {
        let (tree, leaves) = tree(70);
        for size in 0..=70u64 {
            assert_eq!(
                root(&tree, size).unwrap(),
                reference_root(&leaves[..size as usize]),
                "size {size}"
            );
        }
        assert_eq!(tree.root(), reference_root(&leaves));
        assert_eq!(
            Frontier::restore(&tree, 37).unwrap().root(),
            reference_root(&leaves[..37])
        );
    }

    #[test]
    fn every_inclusion_and_consistency_proof_of_small_trees_verifies() {
        let (tree, leaves) = tree(33);
        for size in 1..=33u64 {
            let head = root(&tree, size).unwrap();
            for index in 0..size {
                let proof = inclusion_proof(&tree, index, size).unwrap();
                let leaf = leaf_hash(&leaves[index as usize]);
                verify_inclusion(&leaf, index, size, &proof, &head).unwrap();
                let other = leaf_hash(b"not this leaf");
                assert!(verify_inclusion(&other, index, size, &proof, &head).is_err());
                if size > 1 {
                    assert!(verify_inclusion(&leaf, index, size, &proof[1..], &head).is_err());
                }
            }
            for old in 0..=size {
                let proof = consistency_proof(&tree, old, size).unwrap();
                let old_root = root(&tree, old).unwrap();
                verify_consistency(old, size, &proof, &old_root, &head).unwrap();
                if old > 0 && old < size {
                    let wrong = leaf_hash(b"rewritten history");
                    assert!(verify_consistency(old, size, &proof, &wrong, &head).is_err());
                    assert!(verify_consistency(old, size, &proof, &old_root, &wrong).is_err());
                }
            }
        }
    }

    #[test]
    fn the_protocol_vectors_hold() {
        // protocol.md §12, computed by an independent implementation of RFC 9162's recursive
        // definitions (Python, hashlib's SM3 from OpenSSL): leaves are the bytes 0, 1, ..., 6.
        let mut tree = MemoryTree::new();
        for leaf in 0..7u8 {
            tree.push(&[leaf]);
        }
        let hex = |hashes: Vec<Hash>| hashes.iter().map(Hash::to_hex).collect::<Vec<_>>();
        assert_eq!(
            tree.root().to_hex(),
            "a277130053cebb4f5cccfd9cbe98c6a0ba732dce3a481f1d7c7f40f67f8449fc"
        );
        assert_eq!(
            root(&tree, 3).unwrap().to_hex(),
            "8d9a0a05b4b675d107412b72426a3e29940c28e8d847718f0d42dbaf0feb7a1c"
        );
        assert_eq!(
            hex(inclusion_proof(&tree, 4, 7).unwrap()),
            [
                "a9b6413e3fd2b0eac5f8e0fe9090ca4426cfcc8de3689aee037c591ccb35ca8e",
                "fcbd0630a2ae2a05645366091725e8fc52e71d2a8570152490964a8464467aeb",
                "6766eb4bbd91258f2904a956eb4646cb35e3e904f766bb8e6e6dcd9815427348",
            ]
        );
        assert_eq!(
            hex(consistency_proof(&tree, 3, 7).unwrap()),
            [
                "3427bdb3e4e59eb05e2c2bccaa82155ee0c36b300800a1279bf141f2370a735f",
                "92f841c758cf8592816e2ba2193b9a3a07cfdc768d2b3046c835223393344fb0",
                "a2aeb70489c194c619e9183b17f213bb90d739f2a0d966b1ec6f7be9602723e4",
                "5625fb54de80975460942a44359dad89b8670cf36e771edb783bf8bfaf238760",
            ]
        );
    }

    #[test]
    fn the_empty_root_is_sm3_of_nothing() {
        // GB/T 32905's hash of the empty string, as OpenSSL computes it (`openssl dgst -sm3
        // /dev/null`).
        assert_eq!(
            empty_root().to_hex(),
            "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
        );
    }

    proptest! {
        #[test]
        fn proofs_hold_for_any_sizes(size in 1u64..2000, index_seed: u64, old_seed: u64) {
            let (tree, leaves) = tree(size);
            let index = index_seed % size;
            let head = tree.root();
            let proof = inclusion_proof(&tree, index, size).unwrap();
            prop_assert!(
                verify_inclusion(&leaf_hash(&leaves[index as usize]), index, size, &proof, &head)
                    .is_ok()
            );
            let old = old_seed % (size + 1);
            let proof = consistency_proof(&tree, old, size).unwrap();
            prop_assert!(
                verify_consistency(old, size, &proof, &root(&tree, old).unwrap(), &head).is_ok()
            );
        }
    }
}
