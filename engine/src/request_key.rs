//! Request keys: how a store recognises a retry of the same verification.
//!
//! A platform that sent a verification and lost the answer (a timeout, a node that crashed
//! after making the nonce durable) cannot tell whether its certificate was consumed. Sent again
//! with the same `Idempotency-Key`, the request carries the same [`RequestKey`]; the store finds
//! its own earlier claim and answers as the first time (`valid`), where any other presentation
//! of the certificate, by anyone, is `replayed`. The key is bound to the platform, so another
//! platform that learns it gains nothing.

use std::num::NonZeroU64;

use sm3::{Digest, Sm3};

use crate::PlatformId;

/// One verification request's identity across its retries: 64 bits of SM3 over the platform
/// and the platform's idempotency key. Never zero (zero means "no key" on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(NonZeroU64);

impl RequestKey {
    /// The request key of `platform`'s request with idempotency key `key`.
    pub fn derive(platform: &PlatformId, key: &[u8]) -> Self {
        let digest = Sm3::new()
            .chain_update(b"cyberid request key v1\0")
            .chain_update(platform.as_str().as_bytes())
            .chain_update([0])
            .chain_update(key)
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self::from_u64(u64::from_be_bytes(first)).unwrap_or(Self(NonZeroU64::MIN))
    }

    /// The key as stored (never zero).
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// A key read back from a store; `None` for zero (no key).
    pub fn from_u64(value: u64) -> Option<Self> {
        NonZeroU64::new(value).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bound_to_the_platform_and_the_idempotency_key() {
        let shop: PlatformId = "shop.example".parse().unwrap();
        let bank: PlatformId = "bank.example".parse().unwrap();
        let key = RequestKey::derive(&shop, b"order-1");
        assert_eq!(key, RequestKey::derive(&shop, b"order-1"));
        assert_ne!(key, RequestKey::derive(&shop, b"order-2"));
        assert_ne!(key, RequestKey::derive(&bank, b"order-1"));
        // The separator keeps (platform, key) pairs from colliding by concatenation.
        let a: PlatformId = "ab".parse().unwrap();
        let ab: PlatformId = "a".parse().unwrap();
        assert_ne!(RequestKey::derive(&a, b"c"), RequestKey::derive(&ab, b"bc"));
        assert_eq!(RequestKey::from_u64(key.get()), Some(key));
        assert_eq!(RequestKey::from_u64(0), None);
    }
}

#[cfg(test)]
mod vector {
    use super::*;

    /// The vector in docs/protocol.md §6.
    #[test]
    fn the_documented_request_key_vector() {
        let shop: PlatformId = "shop.example".parse().unwrap();
        let key = RequestKey::derive(&shop, b"login-42");
        assert_eq!(format!("{:016x}", key.get()), DOCUMENTED);
    }

    const DOCUMENTED: &str = "62fc2929632f1270";
}
