//! The authentication log's parsers and proof checks: a verification entry's binary form
//! (never panics; what it accepts is its one encoding) and the inclusion and consistency
//! checks on arbitrary sizes, indexes and proof hashes (never panic, never accept a proof the
//! fuzzer made up for a root it did not build from).
#![no_main]

use cyberid_translog::{
    Hash, MemoryTree, decode_entry, encode_entry, leaf_hash, verify_consistency, verify_inclusion,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = decode_entry(data) {
        assert_eq!(encode_entry(&entry).as_slice(), data);
    }
    if data.len() < 17 {
        return;
    }
    let index = u64::from_le_bytes(data[..8].try_into().unwrap());
    let size = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let proof: Vec<Hash> = data[16..]
        .chunks_exact(32)
        .map(|chunk| Hash(chunk.try_into().unwrap()))
        .collect();
    // A real tree of up to 16 leaves whose root the fuzzer cannot forge.
    let mut tree = MemoryTree::new();
    for leaf in 0..=(data[16] % 16) {
        tree.push(&[leaf]);
    }
    let root = tree.root();
    let real_size = tree.size();
    if verify_inclusion(&leaf_hash(b"not a leaf"), index, real_size, &proof, &root).is_ok() {
        panic!("an inclusion proof for a leaf that is not in the tree");
    }
    let _ = verify_inclusion(&leaf_hash(&[0]), index, size, &proof, &root);
    let _ = verify_consistency(index, size, &proof, &root, &root);
});
