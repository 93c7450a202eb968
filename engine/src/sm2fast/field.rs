//! Arithmetic modulo the SM2 prime p = 2^256 - 2^224 - 2^96 + 2^64 - 1, in Montgomery form on
//! four 64-bit limbs (little-endian).
//!
//! Variable-time: only public data (signatures, public keys, messages) ever passes through
//! here. Every operation returns a fully reduced value (< p), so equality is limb equality.

/// The prime, little-endian limbs.
pub(crate) const P: [u64; 4] = [
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_0000_0000,
    0xffff_ffff_ffff_ffff,
    0xffff_fffe_ffff_ffff,
];
/// R^2 mod p, R = 2^256: multiplying by it enters Montgomery form.
const R2: [u64; 4] = [
    0x0000_0002_0000_0003,
    0x0000_0002_ffff_ffff,
    0x0000_0001_0000_0001,
    0x0000_0004_0000_0002,
];
/// R mod p: one in Montgomery form.
const R: [u64; 4] = [
    0x0000_0000_0000_0001,
    0x0000_0000_ffff_ffff,
    0x0000_0000_0000_0000,
    0x0000_0001_0000_0000,
];

/// A field element in Montgomery form, fully reduced.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Fe(pub(crate) [u64; 4]);

#[inline(always)]
fn mac(acc: u64, a: u64, b: u64, carry: u64) -> (u64, u64) {
    let wide = u128::from(acc) + u128::from(a) * u128::from(b) + u128::from(carry);
    (wide as u64, (wide >> 64) as u64)
}

#[inline(always)]
fn adc(a: u64, b: u64, carry: u64) -> (u64, u64) {
    let wide = u128::from(a) + u128::from(b) + u128::from(carry);
    (wide as u64, (wide >> 64) as u64)
}

#[inline(always)]
fn sbb(a: u64, b: u64, borrow: u64) -> (u64, u64) {
    let wide = u128::from(a).wrapping_sub(u128::from(b) + u128::from(borrow));
    (wide as u64, (wide >> 127) as u64)
}

/// a - b over 256 bits, with the borrow out.
#[inline(always)]
pub(crate) fn sub_256(a: &[u64; 4], b: &[u64; 4]) -> ([u64; 4], u64) {
    let (d0, borrow) = sbb(a[0], b[0], 0);
    let (d1, borrow) = sbb(a[1], b[1], borrow);
    let (d2, borrow) = sbb(a[2], b[2], borrow);
    let (d3, borrow) = sbb(a[3], b[3], borrow);
    ([d0, d1, d2, d3], borrow)
}

/// a + b over 256 bits, with the carry out.
#[inline(always)]
pub(crate) fn add_256(a: &[u64; 4], b: &[u64; 4]) -> ([u64; 4], u64) {
    let (s0, carry) = adc(a[0], b[0], 0);
    let (s1, carry) = adc(a[1], b[1], carry);
    let (s2, carry) = adc(a[2], b[2], carry);
    let (s3, carry) = adc(a[3], b[3], carry);
    ([s0, s1, s2, s3], carry)
}

/// Whether a < b as 256-bit integers.
#[inline(always)]
pub(crate) fn lt_256(a: &[u64; 4], b: &[u64; 4]) -> bool {
    sub_256(a, b).1 == 1
}

/// Reduces a value below 2p (given as 256 bits plus a carry bit) to below p.
#[inline(always)]
fn reduce_once(value: [u64; 4], carry: u64) -> [u64; 4] {
    let (reduced, borrow) = sub_256(&value, &P);
    if carry == 1 || borrow == 0 {
        reduced
    } else {
        value
    }
}

impl Fe {
    pub(crate) const ZERO: Fe = Fe([0; 4]);
    pub(crate) const ONE: Fe = Fe(R);

    /// Enters Montgomery form; `None` unless the integer is below p.
    pub(crate) fn from_u256(value: &[u64; 4]) -> Option<Fe> {
        lt_256(value, &P).then(|| Fe(*value).mul(&Fe(R2)))
    }

    /// Enters Montgomery form from 32 big-endian bytes; `None` unless below p.
    pub(crate) fn from_be_bytes(bytes: &[u8; 32]) -> Option<Fe> {
        Self::from_u256(&u256_from_be_bytes(bytes))
    }

    /// Leaves Montgomery form.
    pub(crate) fn to_u256(self) -> [u64; 4] {
        self.mul(&Fe([1, 0, 0, 0])).0
    }

    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        u256_to_be_bytes(&self.to_u256())
    }

    #[inline(always)]
    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    #[inline(always)]
    pub(crate) fn add(&self, other: &Fe) -> Fe {
        let (sum, carry) = add_256(&self.0, &other.0);
        Fe(reduce_once(sum, carry))
    }

    #[inline(always)]
    pub(crate) fn sub(&self, other: &Fe) -> Fe {
        let (difference, borrow) = sub_256(&self.0, &other.0);
        if borrow == 1 {
            Fe(add_256(&difference, &P).0)
        } else {
            Fe(difference)
        }
    }

    #[inline(always)]
    pub(crate) fn double(&self) -> Fe {
        self.add(self)
    }

    #[inline(always)]
    pub(crate) fn negate(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// Montgomery multiplication (CIOS). Because p = -1 mod 2^64, the per-word Montgomery
    /// factor -p^-1 mod 2^64 is 1: each reduction multiplier is the low word itself.
    #[inline(always)]
    pub(crate) fn mul(&self, other: &Fe) -> Fe {
        let a = &self.0;
        let b = &other.0;
        let mut t = [0u64; 6];
        for &word in b {
            let (t0, carry) = mac(t[0], a[0], word, 0);
            let (t1, carry) = mac(t[1], a[1], word, carry);
            let (t2, carry) = mac(t[2], a[2], word, carry);
            let (t3, carry) = mac(t[3], a[3], word, carry);
            let (t4, t5) = adc(t[4], carry, 0);

            let m = t0;
            let (_, carry) = mac(t0, m, P[0], 0);
            let (r0, carry) = mac(t1, m, P[1], carry);
            let (r1, carry) = mac(t2, m, P[2], carry);
            let (r2, carry) = mac(t3, m, P[3], carry);
            let (r3, carry) = adc(t4, carry, 0);
            t = [r0, r1, r2, r3, t5 + carry, 0];
        }
        Fe(reduce_once([t[0], t[1], t[2], t[3]], t[4]))
    }

    #[inline(always)]
    pub(crate) fn square(&self) -> Fe {
        self.mul(self)
    }

    /// The inverse by Fermat (a^(p-2)); zero maps to zero. Only for precomputation.
    pub(crate) fn invert(&self) -> Fe {
        const EXPONENT: [u64; 4] = [
            0xffff_ffff_ffff_fffd,
            0xffff_ffff_0000_0000,
            0xffff_ffff_ffff_ffff,
            0xffff_fffe_ffff_ffff,
        ];
        let mut result = Fe::ONE;
        for limb in EXPONENT.iter().rev() {
            for bit in (0..64).rev() {
                result = result.square();
                if (limb >> bit) & 1 == 1 {
                    result = result.mul(self);
                }
            }
        }
        result
    }
}

/// 32 big-endian bytes as little-endian limbs.
pub(crate) fn u256_from_be_bytes(bytes: &[u8; 32]) -> [u64; 4] {
    let mut limbs = [0u64; 4];
    for (index, chunk) in bytes.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        limbs[3 - index] = u64::from_be_bytes(word);
    }
    limbs
}

/// Little-endian limbs as 32 big-endian bytes.
pub(crate) fn u256_to_be_bytes(limbs: &[u64; 4]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (index, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&limbs[3 - index].to_be_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference arithmetic: schoolbook on u128 digits would be long; instead check the field
    /// laws and known values, and compare with the sm2 crate's field through the point tests.
    fn fe(value: u64) -> Fe {
        Fe::from_u256(&[value, 0, 0, 0]).unwrap()
    }

    #[test]
    fn montgomery_round_trip_and_small_products() {
        assert_eq!(fe(1), Fe::ONE);
        assert_eq!(fe(6).to_u256(), [6, 0, 0, 0]);
        assert_eq!(fe(2).mul(&fe(3)), fe(6));
        assert_eq!(fe(5).sub(&fe(7)).add(&fe(2)), Fe::ZERO);
        let p_minus_1 = Fe::from_u256(&[P[0] - 1, P[1], P[2], P[3]]).unwrap();
        assert_eq!(p_minus_1.mul(&p_minus_1), Fe::ONE, "(-1)^2 = 1");
        assert_eq!(p_minus_1.add(&Fe::ONE), Fe::ZERO);
        assert!(Fe::from_u256(&P).is_none());
    }

    #[test]
    fn inversion() {
        for value in [1u64, 2, 3, 0xdead_beef, u64::MAX] {
            assert_eq!(fe(value).mul(&fe(value).invert()), Fe::ONE);
        }
    }

    fn arbitrary_fe() -> impl Strategy<Value = Fe> {
        any::<[u64; 4]>().prop_map(|mut limbs| {
            if !lt_256(&limbs, &P) {
                limbs[3] &= 0x7fff_ffff_ffff_ffff;
            }
            Fe::from_u256(&limbs).unwrap()
        })
    }

    proptest! {
        #[test]
        fn field_laws(a in arbitrary_fe(), b in arbitrary_fe(), c in arbitrary_fe()) {
            prop_assert_eq!(a.mul(&b), b.mul(&a));
            prop_assert_eq!(a.mul(&b.add(&c)), a.mul(&b).add(&a.mul(&c)));
            prop_assert_eq!(a.mul(&b).mul(&c), a.mul(&b.mul(&c)));
            prop_assert_eq!(a.sub(&b).add(&b), a);
            prop_assert_eq!(a.add(&a.negate()), Fe::ZERO);
            prop_assert!(lt_256(&a.mul(&b).0, &P));
            prop_assert_eq!(Fe::from_u256(&a.to_u256()).unwrap(), a);
            if !a.is_zero() {
                prop_assert_eq!(a.mul(&a.invert()), Fe::ONE);
            }
        }
    }
}
