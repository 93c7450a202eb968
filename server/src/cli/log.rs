//! `cyberid log verify`: checks an authentication log the way an auditor or a holder's
//! advocate would, trusting nothing the node computed.
//!
//! Online (`--url`), it fetches the log's leaves and latest head, rebuilds the tree from the
//! leaves alone, and checks the head's signature (against `--key`, pinned by the auditor, or
//! the key the node names) and root; with `--state`, it also checks that the log it saw last
//! time is a prefix of this one (the earlier head's root is the root of the first entries of
//! the tree rebuilt now) and records this head for the next run. Offline (`--data-dir`, node stopped), it reads
//! a store directly: every entry against its leaf, every saved head, every stored subtree.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use cyberid_engine::{IssuerPublicKey, SystemClock};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};
use cyberid_translog::{
    Hash, LogStore, MemoryTree, SignedTreeHead, Subtrees, TreeHead, audit_heads, audit_subtrees,
    leaf_hash,
};
use hyper::Method;
use serde_json::Value;

use super::runtime;
use crate::{Client, DataDir, Error};

#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Check a log: every head signed and equal to the root of the log's leaves, the log
    /// grown only by appending since the last check (--state), every entry matching its leaf
    /// (--data-dir). Exits non-zero on the first thing wrong, naming it.
    Verify {
        /// A node serving the log, `host:port` or `http://host:port`.
        #[arg(long, conflicts_with = "data_dir")]
        url: Option<String>,
        /// The data directory of a stopped node, to check its store directly.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The log's public key (SPKI PEM), as the auditor obtained it; without it, the key
        /// the node names (online) or the data directory's (offline).
        #[arg(long)]
        key: Option<PathBuf>,
        /// A file keeping the last head this auditor verified: the new head must extend it.
        /// Created if missing.
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

pub(crate) fn log(command: LogCommand) -> Result<(), Error> {
    let LogCommand::Verify {
        url,
        data_dir,
        key,
        state,
    } = command;
    let pinned = key.map(|path| read_key(&path)).transpose()?;
    let (tree, head, key) = match (url, data_dir) {
        (Some(url), None) => runtime(1)?.block_on(online(&url, pinned))?,
        (None, Some(dir)) => offline(&dir, pinned)?,
        _ => {
            return Err(Error::Config("log verify needs --url or --data-dir".into()));
        }
    };
    let Some(head) = head else {
        println!(
            "log of {} entries, no head signed yet: nothing to check",
            tree.size()
        );
        return Ok(());
    };
    if let Some(state) = state {
        check_state(&state, &tree, &head, &key)?;
    }
    println!(
        "log verified: {} entries, head size {} root {}",
        tree.size(),
        head.head.size,
        head.head.root
    );
    Ok(())
}

fn failed(error: impl std::fmt::Display) -> Error {
    Error::Http(format!("log verification failed: {error}"))
}

fn read_key(path: &Path) -> Result<IssuerPublicKey, Error> {
    let pem =
        std::fs::read_to_string(path).map_err(Error::io(format!("read {}", path.display())))?;
    Ok(IssuerPublicKey::from_spki_pem(&pem)?)
}

fn address(url: &str) -> Result<SocketAddr, Error> {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    host.to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| Error::Config(format!("{url} is not host:port")))
}

async fn get(client: &mut Client, path: &str) -> Result<Value, Error> {
    let (status, body) = client.call(Method::GET, path, None, None).await?;
    if !status.is_success() {
        return Err(Error::Http(format!("GET {path}: {status} {body}")));
    }
    Ok(body)
}

fn hash(value: &Value) -> Result<Hash, Error> {
    value
        .as_str()
        .and_then(|text| Hash::from_hex(text).ok())
        .ok_or_else(|| failed("the node sent a hash that is not 64 hexadecimal digits"))
}

fn head_of(body: &Value) -> Result<SignedTreeHead, Error> {
    let number = |name: &str| {
        body[name]
            .as_u64()
            .ok_or_else(|| failed(format!("the head has no {name}")))
    };
    let mut signature = [0u8; 64];
    hex::decode_to_slice(
        body["signature"].as_str().unwrap_or_default(),
        &mut signature,
    )
    .map_err(|_| failed("the head's signature is not 128 hexadecimal digits"))?;
    Ok(SignedTreeHead {
        head: TreeHead {
            size: number("size")?,
            timestamp_ms: number("timestamp_ms")?,
            root: hash(&body["root"])?,
        },
        signature,
    })
}

async fn online(
    url: &str,
    pinned: Option<IssuerPublicKey>,
) -> Result<(MemoryTree, Option<SignedTreeHead>, IssuerPublicKey), Error> {
    let mut client = Client::connect(address(url)?).await?;
    let key = match pinned {
        Some(key) => key,
        None => {
            let body = get(&mut client, "/v1/log/key").await?;
            IssuerPublicKey::from_spki_pem(body["public_key"].as_str().unwrap_or_default())?
        }
    };
    let (status, body) = client.call(Method::GET, "/v1/log/head", None, None).await?;
    let head = match status.as_u16() {
        200 => Some(head_of(&body)?),
        404 if body["error"]["code"] == "no_head" => None,
        _ => return Err(Error::Http(format!("GET /v1/log/head: {status} {body}"))),
    };
    // The leaves the head covers (the log may have grown since).
    let wanted = head.map_or(0, |head| head.head.size);
    let mut tree = MemoryTree::new();
    while tree.size() < wanted {
        let body = get(&mut client, &format!("/v1/log/leaves?from={}", tree.size())).await?;
        let leaves = body["leaves"].as_array().cloned().unwrap_or_default();
        if leaves.is_empty() {
            return Err(failed(format!(
                "the node serves {} leaves, its head covers {wanted}",
                tree.size()
            )));
        }
        for leaf in leaves.iter().take((wanted - tree.size()) as usize) {
            tree.push_leaf_hash(hash(leaf)?);
        }
    }
    if let Some(head) = head {
        audit_heads(&tree, &[head], &key).map_err(failed)?;
    }
    Ok((tree, head, key))
}

fn offline(
    dir: &Path,
    pinned: Option<IssuerPublicKey>,
) -> Result<(MemoryTree, Option<SignedTreeHead>, IssuerPublicKey), Error> {
    let data = DataDir::open(dir)?;
    let key = match pinned {
        Some(key) => key,
        None => data.log_public_key()?,
    };
    let store = DurableStore::open(
        &data.store_path(),
        StoreOptions::default(),
        Arc::new(SystemClock),
    )?;
    // Each entry still held must be the one its leaf commits to.
    let mut tree = MemoryTree::new();
    for index in 0..store.size() {
        let leaf = store.subtree(0, index).map_err(failed)?;
        if let Some(stored) = store.entry(index).map_err(failed)?
            && leaf_hash(&stored.commitment().0) != leaf
        {
            return Err(failed(format!(
                "entry {index} is not the entry its leaf commits to"
            )));
        }
        tree.push_leaf_hash(leaf);
    }
    audit_subtrees(&tree, &store).map_err(failed)?;
    let mut heads = Vec::new();
    loop {
        let from = heads
            .last()
            .map_or(0, |head: &SignedTreeHead| head.head.size + 1);
        let page = store.heads(from, 1000).map_err(failed)?;
        if page.is_empty() {
            break;
        }
        heads.extend(page);
    }
    audit_heads(&tree, &heads, &key).map_err(failed)?;
    println!("{} signed heads checked", heads.len());
    let latest = heads.last().copied();
    Ok((tree, latest, key))
}

/// The state file: the last verified head's stored form, hex.
fn check_state(
    path: &Path,
    tree: &MemoryTree,
    head: &SignedTreeHead,
    key: &IssuerPublicKey,
) -> Result<(), Error> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let bytes = hex::decode(text.trim()).map_err(|_| failed("the state file is not hex"))?;
        let earlier = SignedTreeHead::decode(&bytes).map_err(failed)?;
        earlier.verify(key).map_err(failed)?;
        if earlier.head.size > head.head.size {
            return Err(failed(format!(
                "the log shrank from {} entries to {}",
                earlier.head.size, head.head.size
            )));
        }
        // The tree was rebuilt from the leaves alone: the earlier head's root must be the root
        // of the first entries of this log, or the log was rewritten in between.
        if cyberid_translog::root(tree, earlier.head.size).map_err(failed)? != earlier.head.root {
            return Err(failed(format!(
                "the log of the earlier head (size {}) is not a prefix of this one",
                earlier.head.size
            )));
        }
        println!(
            "consistent with the head verified before (size {})",
            earlier.head.size
        );
    }
    std::fs::write(path, hex::encode(head.encode()))
        .map_err(Error::io(format!("write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_an_address() {
        assert_eq!(
            address("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(address("no port").is_err());
    }
}
