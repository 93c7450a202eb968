//! Fast SM2 verification for a fixed set of public keys.
//!
//! Every input to a verification is public, so this code is variable-time by design. It wins
//! over a general verifier by preparing each issuer key once:
//!
//! - fixed-base comb tables (signed 8-bit digits, affine entries, 256 KiB) for G and for the
//!   key, so `[s]G + [t]P` is at most 66 mixed additions and no doubling;
//! - the SM3 state with `Z_A` absorbed, cloned per message;
//! - the final check in Jacobian coordinates (`X == (r - e) * Z^2`), with no inversion.
//!
//! Field arithmetic is Montgomery multiplication on four 64-bit limbs (`field.rs`). The results
//! are checked differentially against the RustCrypto `sm2` crate and OpenSSL (see the tests and
//! `tests/tests/it/sm2_differential.rs`).

mod field;
mod point;
mod variable;

use std::sync::OnceLock;

use sm3::{Digest, Sm3};

use field::{Fe, P, add_256, lt_256, sub_256, u256_from_be_bytes, u256_to_be_bytes};
use point::{Affine, FixedBaseTable, Jacobian};

/// The group order n, little-endian limbs.
const N: [u64; 4] = [
    0x53bb_f409_39d5_4123,
    0x7203_df6b_21c6_052b,
    0xffff_ffff_ffff_ffff,
    0xffff_fffe_ffff_ffff,
];

fn generator_table() -> &'static FixedBaseTable {
    static TABLE: OnceLock<FixedBaseTable> = OnceLock::new();
    TABLE.get_or_init(|| FixedBaseTable::new(&Affine::generator()))
}

/// A public key prepared for fast verification with one distinguishing identifier.
pub(crate) struct PreparedKey {
    table: FixedBaseTable,
    /// SM3 with `Z_A` already absorbed.
    prefix: Sm3,
}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedKey").finish_non_exhaustive()
    }
}

/// `Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA)` (GB/T 32918.2 §5.5).
pub(crate) fn z_a(distid: &[u8], x: &[u8; 32], y: &[u8; 32]) -> [u8; 32] {
    let a = u256_to_be_bytes(&sub_256(&P, &[3, 0, 0, 0]).0);
    let generator = Affine::generator();
    let bits = u16::try_from(distid.len() * 8).unwrap_or(u16::MAX);
    let mut hasher = Sm3::new();
    hasher.update(bits.to_be_bytes());
    hasher.update(distid);
    hasher.update(a);
    hasher.update(point_b_bytes());
    hasher.update(generator.x.to_be_bytes());
    hasher.update(generator.y.to_be_bytes());
    hasher.update(x);
    hasher.update(y);
    hasher.finalize().into()
}

fn point_b_bytes() -> [u8; 32] {
    [
        0x28, 0xe9, 0xfa, 0x9e, 0x9d, 0x9f, 0x5e, 0x34, 0x4d, 0x5a, 0x9e, 0x4b, 0xcf, 0x65, 0x09,
        0xa7, 0xf3, 0x97, 0x89, 0xf5, 0x15, 0xab, 0x8f, 0x92, 0xdd, 0xbc, 0xbd, 0x41, 0x4d, 0x94,
        0x0e, 0x93,
    ]
}

impl PreparedKey {
    /// Prepares the key `(x, y)` (big-endian affine coordinates); `None` if the point is not
    /// on the curve. Takes a few milliseconds and about 0.5 MiB.
    pub(crate) fn new(distid: &[u8], x: &[u8; 32], y: &[u8; 32]) -> Option<PreparedKey> {
        let point = Affine::from_coordinates(x, y)?;
        let mut prefix = Sm3::new();
        prefix.update(z_a(distid, x, y));
        // Build G's table now too, so that the first verification is not the slow one.
        generator_table();
        Some(PreparedKey {
            table: FixedBaseTable::new(&point),
            prefix,
        })
    }

    /// Verifies the SM2 signature `r || s` on `message` (GB/T 32918.2 §7.1, steps B1-B7).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        verify_with(&self.prefix, message, signature, |sum, t| {
            self.table.accumulate(sum, t)
        })
    }
}

/// A public key used once or rarely (a holder's device key): no tables of its own, `[t]P` by
/// a width-5 NAF ([`variable::multiply`]), `[s]G` still from G's shared table.
pub(crate) struct UnpreparedKey {
    point: Affine,
    /// SM3 with `Z_A` already absorbed.
    prefix: Sm3,
}

impl std::fmt::Debug for UnpreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnpreparedKey").finish_non_exhaustive()
    }
}

impl UnpreparedKey {
    /// The key `(x, y)` (big-endian affine coordinates); `None` if the point is not on the
    /// curve. One SM3 for `Z_A`, no tables.
    pub(crate) fn new(distid: &[u8], x: &[u8; 32], y: &[u8; 32]) -> Option<UnpreparedKey> {
        let point = Affine::from_coordinates(x, y)?;
        let mut prefix = Sm3::new();
        prefix.update(z_a(distid, x, y));
        Some(UnpreparedKey { point, prefix })
    }

    /// Verifies the SM2 signature `r || s` on `message`, as [`PreparedKey::verify`].
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        verify_with(&self.prefix, message, signature, |sum, t| {
            sum.add(&variable::multiply(&self.point, t))
        })
    }
}

/// GB/T 32918.2 §7.1, steps B1-B7, with `add_tp(sum, t)` adding `[t]P` for the key.
#[inline(always)]
fn verify_with(
    prefix: &Sm3,
    message: &[u8],
    signature: &[u8; 64],
    add_tp: impl FnOnce(Jacobian, &[u8; 32]) -> Jacobian,
) -> bool {
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    s_bytes.copy_from_slice(&signature[32..]);
    let r = u256_from_be_bytes(&r_bytes);
    let s = u256_from_be_bytes(&s_bytes);
    // B1, B2: r and s in [1, n-1].
    let in_range = |value: &[u64; 4]| *value != [0; 4] && lt_256(value, &N);
    if !in_range(&r) || !in_range(&s) {
        return false;
    }
    // B3, B4: e = SM3(Z_A || M), reduced mod n (e < 2^256 < 2n).
    let mut hasher = prefix.clone();
    hasher.update(message);
    let digest: [u8; 32] = hasher.finalize().into();
    let e = reduce_n(u256_from_be_bytes(&digest));
    // B5: t = (r + s) mod n, t != 0.
    let t = add_mod_n(&r, &s);
    if t == [0; 4] {
        return false;
    }
    // B6: (x1, y1) = [s]G + [t]P, not infinity.
    let sum = generator_table().accumulate(Jacobian::INFINITY, &s_bytes);
    let sum = add_tp(sum, &u256_to_be_bytes(&t));
    if sum.is_infinity() {
        return false;
    }
    // B7: r == (e + x1) mod n  <=>  x1 == c or x1 == c + n, with c = (r - e) mod n and
    // x1 < p. With x1 = X / Z^2, compare X with c * Z^2: no inversion.
    let c = sub_mod_n(&r, &e);
    let z2 = sum.z.square();
    let matches =
        |candidate: &[u64; 4]| Fe::from_u256(candidate).is_some_and(|c| c.mul(&z2) == sum.x);
    if matches(&c) {
        return true;
    }
    let (c_plus_n, carry) = add_256(&c, &N);
    carry == 0 && matches(&c_plus_n)
}

fn reduce_n(value: [u64; 4]) -> [u64; 4] {
    let (reduced, borrow) = sub_256(&value, &N);
    if borrow == 0 { reduced } else { value }
}

fn add_mod_n(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let (sum, carry) = add_256(a, b);
    let (reduced, borrow) = sub_256(&sum, &N);
    if carry == 1 || borrow == 0 {
        reduced
    } else {
        sum
    }
}

fn sub_mod_n(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let (difference, borrow) = sub_256(a, b);
    if borrow == 1 {
        add_256(&difference, &N).0
    } else {
        difference
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sm2::dsa::signature::{Signer, Verifier};
    use sm2::elliptic_curve::sec1::ToSec1Point;

    const ID: &[u8] = b"1234567812345678";

    fn annex_a() -> (PreparedKey, [u8; 64]) {
        let hex = |text: &str| -> Vec<u8> {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                .collect()
        };
        let x: [u8; 32] = hex("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020")
            .try_into()
            .unwrap();
        let y: [u8; 32] = hex("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
            .try_into()
            .unwrap();
        let signature = hex(
            "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA",
        );
        (
            PreparedKey::new(ID, &x, &y).unwrap(),
            signature.try_into().unwrap(),
        )
    }

    #[test]
    fn annex_a_signature_verifies() {
        let (key, signature) = annex_a();
        assert!(key.verify(b"message digest", &signature));
        assert!(!key.verify(b"message digesu", &signature));
    }

    #[test]
    fn annex_a_signature_verifies_without_tables() {
        let x: [u8; 32] = u256_to_be_bytes(&[
            0x6bb0_8ff3_56f3_5020,
            0x7217_9fad_1833_fc07,
            0x50dd_7d16_1e4b_c5c6,
            0x09f9_df31_1e54_21a1,
        ]);
        let y: [u8; 32] = u256_to_be_bytes(&[
            0x6632_f607_2da9_ad13,
            0x0aed_05fb_f35e_084a,
            0x2dc6_ea71_8cc1_aa60,
            0xccea_490c_e267_75a5,
        ]);
        let (_, signature) = annex_a();
        let key = UnpreparedKey::new(ID, &x, &y).unwrap();
        assert!(key.verify(b"message digest", &signature));
        assert!(!key.verify(b"message digesu", &signature));
        assert!(UnpreparedKey::new(ID, &[1; 32], &[2; 32]).is_none());
    }

    #[test]
    fn z_a_matches_the_standard() {
        let (x, y) = (
            [
                0x09, 0xF9, 0xDF, 0x31, 0x1E, 0x54, 0x21, 0xA1, 0x50, 0xDD, 0x7D, 0x16, 0x1E, 0x4B,
                0xC5, 0xC6, 0x72, 0x17, 0x9F, 0xAD, 0x18, 0x33, 0xFC, 0x07, 0x6B, 0xB0, 0x8F, 0xF3,
                0x56, 0xF3, 0x50, 0x20,
            ],
            [
                0xCC, 0xEA, 0x49, 0x0C, 0xE2, 0x67, 0x75, 0xA5, 0x2D, 0xC6, 0xEA, 0x71, 0x8C, 0xC1,
                0xAA, 0x60, 0x0A, 0xED, 0x05, 0xFB, 0xF3, 0x5E, 0x08, 0x4A, 0x66, 0x32, 0xF6, 0x07,
                0x2D, 0xA9, 0xAD, 0x13,
            ],
        );
        let expected = [
            0xB2, 0xE1, 0x4C, 0x5C, 0x79, 0xC6, 0xDF, 0x5B, 0x85, 0xF4, 0xFE, 0x7E, 0xD8, 0xDB,
            0x7A, 0x26, 0x2B, 0x9D, 0xA7, 0xE0, 0x7C, 0xCB, 0x0E, 0xA9, 0xF4, 0x74, 0x7B, 0x8C,
            0xCD, 0xA8, 0xA4, 0xF3,
        ];
        assert_eq!(z_a(ID, &x, &y), expected);
    }

    #[test]
    fn off_curve_keys_are_refused() {
        assert!(PreparedKey::new(ID, &[1; 32], &[2; 32]).is_none());
        assert!(PreparedKey::new(ID, &[0xff; 32], &[0xff; 32]).is_none());
    }

    struct Pair {
        signing: sm2::dsa::SigningKey,
        prepared: PreparedKey,
        unprepared: UnpreparedKey,
    }

    fn pair(seed: u8) -> Pair {
        let mut scalar = [seed; 32];
        scalar[0] = 0x11;
        let secret = sm2::SecretKey::from_slice(&scalar).unwrap();
        let signing = sm2::dsa::SigningKey::new("1234567812345678", &secret).unwrap();
        let point = secret.public_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let (x, y) = (
            bytes[1..33].try_into().unwrap(),
            bytes[33..65].try_into().unwrap(),
        );
        Pair {
            signing,
            prepared: PreparedKey::new(ID, x, y).unwrap(),
            unprepared: UnpreparedKey::new(ID, x, y).unwrap(),
        }
    }

    fn keys() -> &'static [Pair; 2] {
        static KEYS: OnceLock<[Pair; 2]> = OnceLock::new();
        KEYS.get_or_init(|| [pair(1), pair(2)])
    }

    fn reference(pair: &Pair, message: &[u8], signature: &[u8; 64]) -> bool {
        sm2::dsa::Signature::from_slice(signature).is_ok_and(|signature| {
            pair.signing
                .verifying_key()
                .verify(message, &signature)
                .is_ok()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn agrees_with_the_sm2_crate_on_valid_and_mutated_signatures(
            message in proptest::collection::vec(any::<u8>(), 0..100),
            flip in 0usize..512,
            other_key in any::<bool>(),
        ) {
            let keys = keys();
            let signature: sm2::dsa::Signature = keys[0].signing.sign(&message);
            let signature: [u8; 64] = signature.to_bytes().into();
            prop_assert!(keys[0].prepared.verify(&message, &signature));
            let mut mutated = signature;
            mutated[flip / 8] ^= 1 << (flip % 8);
            let verifier = &keys[usize::from(other_key)];
            prop_assert_eq!(verifier.prepared.verify(&message, &mutated), reference(verifier, &message, &mutated));
            prop_assert_eq!(verifier.prepared.verify(&message, &signature), reference(verifier, &message, &signature));
            prop_assert!(keys[0].unprepared.verify(&message, &signature));
            prop_assert_eq!(verifier.unprepared.verify(&message, &mutated), reference(verifier, &message, &mutated));
            prop_assert_eq!(verifier.unprepared.verify(&message, &signature), reference(verifier, &message, &signature));
        }

        #[test]
        fn agrees_with_the_sm2_crate_on_arbitrary_signatures(signature in any::<[u8; 32]>(), s in any::<[u8; 32]>()) {
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&signature);
            bytes[32..].copy_from_slice(&s);
            let keys = keys();
            prop_assert_eq!(keys[0].prepared.verify(b"m", &bytes), reference(&keys[0], b"m", &bytes));
            prop_assert_eq!(keys[0].unprepared.verify(b"m", &bytes), reference(&keys[0], b"m", &bytes));
        }
    }
}
