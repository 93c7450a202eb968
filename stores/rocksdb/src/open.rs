//! Opening a data directory: refusing what is not a cyberid store, creating a new one, and
//! rebuilding the memory maps from disk.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use cyberid_engine::{CertificateId, Clock, Error, NonceMap, RevocationMaps};
use rocksdb::{ColumnFamilyDescriptor, WriteBatch};

use crate::layout::{
    BUCKET_SECONDS_KEY, CONSENTS, CREATED_AT_KEY, Db, ENROLLMENT_INDEX, ENROLLMENTS, FORMAT_KEY,
    HISTORY_BEGINS_KEY, LOG_BY_CERTIFICATE, LOG_BY_HOLDER, LOG_ENTRIES, LOG_HEADS, LOG_INDEXED_KEY,
    LOG_RETAINED_FROM_KEY, LOG_TREE, META, NONCES_PREFIX, REVOCATION_LOG, REVOCATION_STATE,
    STORE_FORMAT_VERSION, decode_state, decode_u64, nonce_bucket, read_u64, store_error,
};
use crate::options::{StoreOptions, db_options, family_options, index_family_options, synced};
use crate::{Inner, authlog, nonces};

pub(crate) fn open(
    path: &Path,
    options: StoreOptions,
    clock: Arc<dyn Clock>,
) -> Result<Inner, Error> {
    if options.bucket_seconds == 0 {
        return Err(Error::Config("bucket_seconds must be positive"));
    }
    let exists = path.join("CURRENT").exists();
    if !exists {
        prepare_new_directory(path)?;
    }
    let db_options = db_options(&options);
    let existing = if exists {
        Db::list_cf(&db_options, path).map_err(|e| store_error("list column families", &e))?
    } else {
        Vec::new()
    };
    if exists && !existing.iter().any(|name| name == META) {
        return Err(Error::NotADataDirectory(path.display().to_string()));
    }
    let mut families: Vec<String> = [
        META,
        REVOCATION_STATE,
        REVOCATION_LOG,
        ENROLLMENT_INDEX,
        ENROLLMENTS,
        CONSENTS,
        LOG_ENTRIES,
        LOG_TREE,
        LOG_BY_HOLDER,
        LOG_BY_CERTIFICATE,
        LOG_HEADS,
    ]
    .iter()
    .map(|name| (*name).to_owned())
    .collect();
    families.extend(
        existing
            .into_iter()
            .filter(|name| name.starts_with(NONCES_PREFIX)),
    );
    let descriptors = families.iter().map(|name| {
        let family = if name == LOG_BY_HOLDER || name == LOG_BY_CERTIFICATE {
            index_family_options(&options)
        } else {
            family_options(&options)
        };
        ColumnFamilyDescriptor::new(name, family)
    });
    let db = Db::open_cf_descriptors(&db_options, path, descriptors)
        .map_err(|e| store_error("open", &e))?;

    let now = clock.now();
    let (history_begins, bucket_seconds) = read_or_write_meta(&db, exists, &options, now)?;
    let log_retained_from = read_u64(&db, META, LOG_RETAINED_FROM_KEY)?.unwrap_or(0);
    let (index_jobs, index_receiver) = crossbeam_channel::bounded(crate::log_index::QUEUE);
    let inner = Inner {
        db,
        path: path.to_path_buf(),
        nonces: NonceMap::new(bucket_seconds),
        revocations: RevocationMaps::default(),
        revocation_seq: Mutex::new(0),
        buckets: RwLock::new(()),
        creating: Mutex::new(()),
        history_begins: AtomicU64::new(history_begins),
        log: Mutex::new(cyberid_translog::Frontier::new()),
        log_size: AtomicU64::new(0),
        log_retained_from: AtomicU64::new(log_retained_from),
        log_tail: RwLock::new(crate::log_index::Tail::default()),
        index_jobs,
        index_receiver: Mutex::new(Some(index_receiver)),
        poisoned: OnceLock::new(),
        options,
        clock,
        observer: OnceLock::new(),
    };
    load_revocations(&inner)?;
    load_nonces(&inner, &families, now)?;
    let frontier = authlog::restore(&inner)?;
    inner.log_size.store(frontier.size(), Ordering::Release);
    *inner.log.lock().map_err(|_| Error::Poisoned)? = frontier;
    inner.catch_up_index()?;
    Ok(inner)
}

/// A missing directory is created; an existing one must be empty.
fn prepare_new_directory(path: &Path) -> Result<(), Error> {
    match std::fs::read_dir(path).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(Error::NotADataDirectory(path.display().to_string())),
        Ok(false) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(path)
            .map_err(|e| Error::Store {
                context: "create data directory",
                detail: e.to_string(),
            }),
        Err(error) => Err(Error::Store {
            context: "read data directory",
            detail: error.to_string(),
        }),
    }
}

/// The store's history start and bucket width: read back, or written for a new store.
fn read_or_write_meta(
    db: &Db,
    exists: bool,
    options: &StoreOptions,
    now: u64,
) -> Result<(u64, u64), Error> {
    match read_u64(db, META, FORMAT_KEY)? {
        None if !exists => {
            let history_begins = options.history_begins.unwrap_or(now).min(now);
            let meta = db
                .cf_handle(META)
                .ok_or(Error::Corrupt("meta column family missing".into()))?;
            let mut batch = WriteBatch::default();
            batch.put_cf(
                &meta,
                FORMAT_KEY,
                u64::from(STORE_FORMAT_VERSION).to_be_bytes(),
            );
            batch.put_cf(&meta, HISTORY_BEGINS_KEY, history_begins.to_be_bytes());
            batch.put_cf(
                &meta,
                BUCKET_SECONDS_KEY,
                options.bucket_seconds.to_be_bytes(),
            );
            batch.put_cf(&meta, CREATED_AT_KEY, now.to_be_bytes());
            // A new store indexes its log from the start (one of format 4 or earlier has no
            // watermark, and all its entries indexed).
            batch.put_cf(&meta, LOG_INDEXED_KEY, 0u64.to_be_bytes());
            drop(meta);
            db.write_opt(batch, &synced())
                .map_err(|e| store_error("initialise", &e))?;
            Ok((history_begins, options.bucket_seconds))
        }
        None => Err(Error::Corrupt("format version missing".into())),
        // Version 1 lacks request keys in nonce values, version 2 the enrollment families,
        // version 3 the authentication log's and version 4 the consents' (all created empty at
        // open): each reads as it is, and is marked current before anything is written, so
        // that an older build refuses the store rather than misread it.
        Some(1..=4) => {
            let meta = db
                .cf_handle(META)
                .ok_or(Error::Corrupt("meta column family missing".into()))?;
            db.put_cf_opt(
                &meta,
                FORMAT_KEY,
                u64::from(STORE_FORMAT_VERSION).to_be_bytes(),
                &synced(),
            )
            .map_err(|e| store_error("upgrade format", &e))?;
            drop(meta);
            read_or_write_meta(db, exists, options, now)
        }
        Some(found) if found != u64::from(STORE_FORMAT_VERSION) => Err(Error::IncompatibleFormat {
            found,
            supported: STORE_FORMAT_VERSION,
        }),
        Some(_) => Ok((
            read_u64(db, META, HISTORY_BEGINS_KEY)?
                .ok_or(Error::Corrupt("history start missing".into()))?,
            read_u64(db, META, BUCKET_SECONDS_KEY)?
                .filter(|width| *width > 0)
                .ok_or(Error::Corrupt("bucket width missing".into()))?,
        )),
    }
}

fn load_revocations(inner: &Inner) -> Result<(), Error> {
    let state = inner.cf(REVOCATION_STATE)?;
    let mut iterator = inner.db.raw_iterator_cf(&state);
    iterator.seek_to_first();
    while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
        let change = decode_state(key, value)
            .ok_or_else(|| Error::Corrupt("undecodable revocation state entry".into()))?;
        inner.revocations.apply(&change);
        iterator.next();
    }
    iterator
        .status()
        .map_err(|e| store_error("load revocations", &e))?;
    let log = inner.cf(REVOCATION_LOG)?;
    let mut iterator = inner.db.raw_iterator_cf(&log);
    iterator.seek_to_last();
    iterator
        .status()
        .map_err(|e| store_error("load revocation log", &e))?;
    if let Some(key) = iterator.key() {
        let seq = decode_u64(key)
            .ok_or_else(|| Error::Corrupt("revocation log key is not 8 bytes".into()))?;
        *inner.revocation_seq.lock().map_err(|_| Error::Poisoned)? = seq;
    }
    Ok(())
}

/// Rebuilds the nonce buckets that are still live and drops those that are not.
fn load_nonces(inner: &Inner, families: &[String], now: u64) -> Result<(), Error> {
    // Nonces retained only until before now are not loaded: claims for them must be refused as
    // expired, not taken for first uses.
    inner.nonces.raise_horizon(now);
    for name in families {
        let Some(bucket) = nonce_bucket(name) else {
            continue;
        };
        let mut live = 0usize;
        {
            let handle = inner.cf(name)?;
            let mut iterator = inner.db.raw_iterator_cf(&handle);
            iterator.seek_to_first();
            while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
                let id = <[u8; 16]>::try_from(key)
                    .map_err(|_| Error::Corrupt(format!("nonce key in {name} is not 16 bytes")))?;
                let (retain_until, request) = nonces::decode_value(value).ok_or_else(|| {
                    Error::Corrupt(format!("nonce value in {name} is not 8 or 16 bytes"))
                })?;
                if retain_until >= now {
                    let id = CertificateId::from_bytes(id);
                    inner.nonces.load(bucket, id, retain_until, request);
                    live += 1;
                }
                iterator.next();
            }
            iterator
                .status()
                .map_err(|e| store_error("load nonces", &e))?;
        }
        if live == 0 {
            inner
                .db
                .drop_cf(name)
                .map_err(|e| store_error("drop expired bucket", &e))?;
        }
    }
    Ok(())
}
