//! What the log-index tests share: a store that keeps history from an hour back, and settling
//! claims with one `valid` log entry each.

use std::sync::Arc;

use cyberid_engine::contract::NOW;
use cyberid_engine::{
    LogEntry, LogItem, LogOutcome, ManualClock, NonceClaim, NonceStore, WebNumber,
};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};

pub(crate) fn open(dir: &std::path::Path) -> DurableStore {
    let options = StoreOptions {
        history_begins: Some(NOW - 3600),
        ..StoreOptions::default()
    };
    DurableStore::open(dir, options, Arc::new(ManualClock::new(NOW))).unwrap()
}

/// Settles `claims` in batches of 64, claim `i` logged as a `valid` verification for
/// `holder(i)`.
pub(crate) fn settle_logged(
    store: &DurableStore,
    claims: &[NonceClaim],
    holder: impl Fn(usize) -> WebNumber,
) {
    for (batch, start) in claims.chunks(64).zip((0..).step_by(64)) {
        let items: Vec<LogItem> = batch
            .iter()
            .enumerate()
            .map(|(position, claimed)| LogItem {
                entry: LogEntry {
                    at_ms: NOW * 1000,
                    platform: "shop.example".parse().unwrap(),
                    web_number: holder(start + position),
                    certificate_id: claimed.certificate_id,
                    outcome: LogOutcome::Valid,
                    disclosed: 0,
                },
                claim: Some(position),
            })
            .collect();
        store.consume_logged(batch, &items).unwrap();
    }
}
