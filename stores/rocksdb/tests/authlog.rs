//! The authentication log on the embedded store: appended with the nonces, in order, readable
//! by holder and certificate, the same after a reopen, and past retention unreadable while its
//! tree stays whole.

use std::sync::Arc;

use cyberid_engine::contract::{NOW, claim};
use cyberid_engine::{
    LogEntry, LogItem, LogOutcome, ManualClock, NonceOutcome, NonceStore, Receipt, WebNumber,
};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};
use cyberid_translog::{AccessEntry, LogStore, MemoryTree, Record, Subtrees, leaf_hash, root};

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> DurableStore {
    let options = StoreOptions {
        history_begins: Some(NOW - 3600),
        log_retention: Some(3600),
        ..StoreOptions::default()
    };
    DurableStore::open(dir, options, clock.clone()).unwrap()
}

fn item(holder: WebNumber, claimed: usize, at: u64) -> LogItem {
    LogItem {
        entry: LogEntry {
            at_ms: at * 1000,
            platform: "shop.example".parse().unwrap(),
            web_number: holder,
            certificate_id: claim(claimed as u8 + 1, NOW + 200).certificate_id,
            outcome: LogOutcome::Valid,
            disclosed: 0,
        },
        claim: Some(claimed),
    }
}

/// A batch of `n` claims from `first` (ids `first..first + n`), each logged for `holder`.
fn batch(
    store: &DurableStore,
    holder: WebNumber,
    first: u8,
    n: u8,
    at: u64,
) -> Vec<Option<Receipt>> {
    let claims: Vec<_> = (first..first + n).map(|i| claim(i, NOW + 200)).collect();
    let items: Vec<_> = claims
        .iter()
        .enumerate()
        .map(|(position, claimed)| LogItem {
            entry: LogEntry {
                certificate_id: claimed.certificate_id,
                ..item(holder, position, at).entry
            },
            claim: Some(position),
        })
        .collect();
    let (outcomes, receipts) = store.consume_logged(&claims, &items).unwrap();
    assert!(
        outcomes
            .iter()
            .all(|outcome| *outcome == NonceOutcome::Fresh)
    );
    receipts
}

#[test]
fn entries_are_appended_in_order_read_back_and_kept_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let (alice, bob): (WebNumber, WebNumber) =
        ("7K3MQ9XZ2P".parse().unwrap(), "H4TJ8W2NQR".parse().unwrap());
    let mut receipts = Vec::new();
    {
        let store = open(dir.path(), &clock);
        receipts.extend(batch(&store, alice, 1, 5, NOW));
        receipts.extend(batch(&store, bob, 100, 3, NOW));
        // A claim found replayed is logged as such; a claim the log does not keep (none here)
        // would get no receipt.
        let replay = [claim(1, NOW + 200)];
        let (outcomes, again) = store
            .consume_logged(&replay, &[item(alice, 0, NOW)])
            .unwrap();
        assert_eq!(outcomes, [NonceOutcome::Replayed]);
        assert_eq!(
            store.entry(8).unwrap().unwrap().record,
            Record::Verification(LogEntry {
                outcome: LogOutcome::Replayed,
                certificate_id: claim(1, NOW + 200).certificate_id,
                ..item(alice, 0, NOW).entry
            })
        );
        receipts.extend(again);
        assert_eq!(store.size(), 9);
    }
    let receipts: Vec<Receipt> = receipts.into_iter().map(Option::unwrap).collect();
    let indexes: Vec<u64> = receipts.iter().map(|receipt| receipt.index).collect();
    assert_eq!(indexes, (0..9).collect::<Vec<_>>());
    // The tree is the tree of the receipts' leaves, before and after a reopen.
    let mut expected = MemoryTree::new();
    for receipt in &receipts {
        expected.push_leaf_hash(leaf_hash(&receipt.commitment));
    }
    let store = open(dir.path(), &clock);
    assert_eq!(store.size(), 9);
    assert_eq!(root(&store, 9).unwrap(), expected.root());
    for (index, receipt) in receipts.iter().enumerate() {
        let stored = store.entry(index as u64).unwrap().unwrap();
        assert_eq!(stored.commitment().0, receipt.commitment);
        assert_eq!(
            store.subtree(0, index as u64).unwrap(),
            leaf_hash(&receipt.commitment)
        );
    }
    let alices: Vec<u64> = store
        .entries_of_holder(&alice, 0, 100)
        .unwrap()
        .iter()
        .map(|stored| stored.index)
        .collect();
    assert_eq!(alices, [0, 1, 2, 3, 4, 8]);
    assert_eq!(store.entries_of_holder(&bob, 6, 100).unwrap().len(), 2);
    let first_certificate = claim(1, NOW + 200).certificate_id;
    assert_eq!(
        store
            .entries_of_certificate(&first_certificate)
            .unwrap()
            .len(),
        2
    );
    // Appends continue where the log ended.
    let next = batch(&store, bob, 200, 1, NOW);
    assert_eq!(next[0].unwrap().index, 9);
    let access = store
        .append_access(&AccessEntry {
            at_ms: NOW * 1000,
            sealed_until_ms: 0,
            holder: Some(alice),
            certificate_id: None,
            authority: "mps".into(),
            case_reference: "case 1".into(),
        })
        .unwrap();
    assert_eq!(access.index, 10);
    assert_eq!(store.entries_of_holder(&alice, 9, 100).unwrap().len(), 1);
}

#[test]
fn retention_deletes_old_entries_and_keeps_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let holder: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
    let store = open(dir.path(), &clock);
    batch(&store, holder, 1, 4, NOW - 7200);
    batch(&store, holder, 10, 4, NOW);
    let head_root = root(&store, 8).unwrap();
    // The first batch is older than the hour kept.
    assert_eq!(store.apply_log_retention().unwrap(), 4);
    assert_eq!(store.retained_from(), 4);
    assert!(store.entry(0).unwrap().is_none());
    assert!(store.entry(4).unwrap().is_some());
    assert_eq!(store.entries_of_holder(&holder, 0, 100).unwrap().len(), 4);
    assert_eq!(root(&store, 8).unwrap(), head_root, "the tree is whole");
    assert_eq!(store.apply_log_retention().unwrap(), 0);
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.retained_from(), 4);
    assert!(store.entry(1).unwrap().is_none());
    assert_eq!(root(&store, 8).unwrap(), head_root);
}
