//! Variable-base scalar multiplication, for keys seen once (holders' device keys), where
//! building a 256 KiB comb table (a few milliseconds) would cost far more than it saves.
//!
//! Width-5 NAF: the scalar is recoded into digits in {0, ±1, ±3, ..., ±15} with at least four
//! zeros after each non-zero digit, so `[k]P` is about 256 doublings and 256/6 ≈ 43 additions
//! of the eight precomputed odd multiples `P, 3P, ..., 15P` (negation is free).

use super::field::u256_from_be_bytes;
use super::point::{Affine, Jacobian};

/// NAF window width.
const WIDTH: u32 = 5;
/// Precomputed odd multiples: `1, 3, ..., 2^(WIDTH-1) - 1` times the point.
const ODD_MULTIPLES: usize = 1 << (WIDTH - 2);

impl Jacobian {
    /// Adds two Jacobian points (add-2007-bl): 11M + 5S, with the exceptional cases handled
    /// (either infinity, equal points, opposite points), since inputs may be adversarial.
    pub(crate) fn add(&self, other: &Jacobian) -> Jacobian {
        if self.is_infinity() {
            return *other;
        }
        if other.is_infinity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = other.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = other.x.mul(&z1z1);
        let s1 = self.y.mul(&other.z).mul(&z2z2);
        let s2 = other.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let s_diff = s2.sub(&s1);
        if h.is_zero() {
            return if s_diff.is_zero() {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let i = h.double().square();
        let j = h.mul(&i);
        let r = s_diff.double();
        let v = u1.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&j).double());
        let z3 = self.z.add(&other.z).square().sub(&z1z1).sub(&z2z2).mul(&h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    fn negate(&self) -> Jacobian {
        Jacobian {
            x: self.x,
            y: self.y.negate(),
            z: self.z,
        }
    }
}

/// The width-5 NAF of a 256-bit big-endian scalar, least significant digit first (at most 257
/// digits: recoding can carry one position past the top bit).
fn naf(scalar: &[u8; 32]) -> [i8; 257] {
    let limbs = u256_from_be_bytes(scalar);
    let mut k = [limbs[0], limbs[1], limbs[2], limbs[3], 0u64];
    let mut digits = [0i8; 257];
    let mut position = 0;
    while k != [0; 5] {
        if k[0] & 1 == 1 {
            let low = (k[0] & ((1 << WIDTH) - 1)) as i64;
            let digit = if low >= 1 << (WIDTH - 1) {
                low - (1 << WIDTH)
            } else {
                low
            };
            digits[position] = digit as i8;
            // k -= digit, which clears the low WIDTH bits.
            if digit > 0 {
                let mut borrow = digit as u64;
                for limb in &mut k {
                    let (value, under) = limb.overflowing_sub(borrow);
                    *limb = value;
                    borrow = u64::from(under);
                }
            } else {
                let mut carry = digit.unsigned_abs();
                for limb in &mut k {
                    let (value, over) = limb.overflowing_add(carry);
                    *limb = value;
                    carry = u64::from(over);
                }
            }
        }
        for index in 0..4 {
            k[index] = (k[index] >> 1) | (k[index + 1] << 63);
        }
        k[4] >>= 1;
        position += 1;
    }
    digits
}

/// `[scalar]P` for a 256-bit big-endian scalar.
pub(crate) fn multiply(point: &Affine, scalar: &[u8; 32]) -> Jacobian {
    let base = Jacobian::from_affine(point);
    let twice = base.double();
    let mut odd = [base; ODD_MULTIPLES];
    for index in 1..ODD_MULTIPLES {
        odd[index] = odd[index - 1].add(&twice);
    }
    let mut accumulator = Jacobian::INFINITY;
    // Leading zero digits double the point at infinity, which returns at once.
    for &digit in naf(scalar).iter().rev() {
        accumulator = accumulator.double();
        if digit > 0 {
            accumulator = accumulator.add(&odd[(digit as usize) / 2]);
        } else if digit < 0 {
            accumulator = accumulator.add(&odd[(digit.unsigned_abs() as usize) / 2].negate());
        }
    }
    accumulator
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sm2fast::point::double_and_add;

    fn naf_value(digits: &[i8; 257]) -> Vec<i128> {
        // The digits' weighted sum, as 64-bit chunks would be awkward: compare against the
        // scalar bit by bit through a small big-integer in i128 limbs of 32 bits.
        let mut limbs = vec![0i128; 10];
        for (position, &digit) in digits.iter().enumerate() {
            limbs[position / 32] += i128::from(digit) << (position % 32);
        }
        for index in 0..9 {
            let carry = limbs[index].div_euclid(1 << 32);
            limbs[index] = limbs[index].rem_euclid(1 << 32);
            limbs[index + 1] += carry;
        }
        limbs
    }

    fn scalar_value(scalar: &[u8; 32]) -> Vec<i128> {
        let mut limbs = vec![0i128; 10];
        for (index, chunk) in scalar.rchunks(4).enumerate() {
            limbs[index] = i128::from(u32::from_be_bytes(chunk.try_into().unwrap()));
        }
        limbs
    }

    #[test]
    fn the_edges_agree_with_double_and_add() {
        let g = Affine::generator();
        let mut one = [0u8; 32];
        one[31] = 1;
        let mut sixteen = [0u8; 32];
        sixteen[31] = 16;
        for scalar in [[0xFF; 32], [0x80; 32], [0x7F; 32], [0x0F; 32], one, sixteen] {
            assert_eq!(
                multiply(&g, &scalar).to_affine(),
                double_and_add(&g, &scalar),
                "{scalar:02x?}"
            );
        }
        assert!(multiply(&g, &[0; 32]).is_infinity());
        // P + P and P + (-P) through the full addition.
        let p = Jacobian::from_affine(&g);
        assert_eq!(p.add(&p).to_affine(), p.double().to_affine());
        assert!(p.add(&p.negate()).is_infinity());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn agrees_with_double_and_add(scalar in any::<[u8; 32]>()) {
            let g = Affine::generator();
            prop_assert_eq!(multiply(&g, &scalar).to_affine(), double_and_add(&g, &scalar));
        }

        #[test]
        fn the_naf_sums_to_the_scalar_with_sparse_odd_digits(scalar in any::<[u8; 32]>()) {
            let digits = naf(&scalar);
            prop_assert_eq!(naf_value(&digits), scalar_value(&scalar));
            for (position, &digit) in digits.iter().enumerate() {
                if digit != 0 {
                    prop_assert!(digit % 2 != 0 && digit.abs() < 16);
                    let next = &digits[position + 1..(position + WIDTH as usize).min(257)];
                    prop_assert!(next.iter().all(|&d| d == 0));
                }
            }
        }
    }
}
