//! Points on the SM2 curve y^2 = x^3 - 3x + b in Jacobian coordinates, and fixed-base tables.

use super::field::{Fe, u256_from_be_bytes};

/// The curve coefficient b (big-endian).
const B: [u8; 32] = [
    0x28, 0xe9, 0xfa, 0x9e, 0x9d, 0x9f, 0x5e, 0x34, 0x4d, 0x5a, 0x9e, 0x4b, 0xcf, 0x65, 0x09, 0xa7,
    0xf3, 0x97, 0x89, 0xf5, 0x15, 0xab, 0x8f, 0x92, 0xdd, 0xbc, 0xbd, 0x41, 0x4d, 0x94, 0x0e, 0x93,
];
/// The generator's affine coordinates (big-endian).
const GX: [u8; 32] = [
    0x32, 0xc4, 0xae, 0x2c, 0x1f, 0x19, 0x81, 0x19, 0x5f, 0x99, 0x04, 0x46, 0x6a, 0x39, 0xc9, 0x94,
    0x8f, 0xe3, 0x0b, 0xbf, 0xf2, 0x66, 0x0b, 0xe1, 0x71, 0x5a, 0x45, 0x89, 0x33, 0x4c, 0x74, 0xc7,
];
const GY: [u8; 32] = [
    0xbc, 0x37, 0x36, 0xa2, 0xf4, 0xf6, 0x77, 0x9c, 0x59, 0xbd, 0xce, 0xe3, 0x6b, 0x69, 0x21, 0x53,
    0xd0, 0xa9, 0x87, 0x7c, 0xc6, 0x2a, 0x47, 0x40, 0x02, 0xdf, 0x32, 0xe5, 0x21, 0x39, 0xf0, 0xa0,
];

/// An affine point (never the point at infinity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Affine {
    pub(crate) x: Fe,
    pub(crate) y: Fe,
}

impl Affine {
    /// The generator G.
    pub(crate) fn generator() -> Affine {
        Affine {
            x: Fe::from_be_bytes(&GX).unwrap_or_default(),
            y: Fe::from_be_bytes(&GY).unwrap_or_default(),
        }
    }

    /// A point from big-endian coordinates, if they are below p and on the curve.
    pub(crate) fn from_coordinates(x: &[u8; 32], y: &[u8; 32]) -> Option<Affine> {
        let point = Affine {
            x: Fe::from_be_bytes(x)?,
            y: Fe::from_be_bytes(y)?,
        };
        point.is_on_curve().then_some(point)
    }

    pub(crate) fn is_on_curve(&self) -> bool {
        let b = Fe::from_u256(&u256_from_be_bytes(&B)).unwrap_or_default();
        let x3 = self.x.square().mul(&self.x);
        let three_x = self.x.double().add(&self.x);
        self.y.square() == x3.sub(&three_x).add(&b)
    }
}

/// A point in Jacobian coordinates (X, Y, Z) standing for (X/Z^2, Y/Z^3); Z = 0 is infinity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Jacobian {
    pub(crate) x: Fe,
    pub(crate) y: Fe,
    pub(crate) z: Fe,
}

impl Jacobian {
    pub(crate) const INFINITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    pub(crate) fn from_affine(point: &Affine) -> Jacobian {
        Jacobian {
            x: point.x,
            y: point.y,
            z: Fe::ONE,
        }
    }

    #[inline(always)]
    pub(crate) fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    /// Doubling for a = -3 (dbl-2001-b): 3M + 5S.
    pub(crate) fn double(&self) -> Jacobian {
        if self.is_infinity() || self.y.is_zero() {
            return Jacobian::INFINITY;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let t = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = t.double().add(&t);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(&beta4.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2 = gamma.square();
        let y3 = alpha
            .mul(&beta4.sub(&x3))
            .sub(&gamma2.double().double().double());
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// Adds an affine point (madd-2007-bl): 7M + 4S, with the exceptional cases handled
    /// (infinity, equal points, opposite points), since inputs may be adversarial.
    #[inline(always)]
    pub(crate) fn add_affine(&self, other: &Affine) -> Jacobian {
        if self.is_infinity() {
            return Jacobian::from_affine(other);
        }
        let z1z1 = self.z.square();
        let u2 = other.x.mul(&z1z1);
        let s2 = other.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let s_diff = s2.sub(&self.y);
        if h.is_zero() {
            return if s_diff.is_zero() {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.mul(&i);
        let r = s_diff.double();
        let v = self.x.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&j).double());
        let z3 = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// The affine form, or `None` at infinity.
    pub(crate) fn to_affine(self) -> Option<Affine> {
        if self.is_infinity() {
            return None;
        }
        let z_inv = self.z.invert();
        let z_inv2 = z_inv.square();
        Some(Affine {
            x: self.x.mul(&z_inv2),
            y: self.y.mul(&z_inv2).mul(&z_inv),
        })
    }
}

/// Window width of the fixed-base tables, bits.
const WINDOW: usize = 8;
/// Windows in a 256-bit scalar.
const WINDOWS: usize = 256 / WINDOW;
/// Multiples stored per window. Digits are recoded into [-128, 127] and `-d * Q` is `d * Q`
/// with y negated, so a window needs only `1..=128` times its base: half the table of
/// unsigned digits (`1..=255`), for the price of a carry.
const MULTIPLES: usize = 1 << (WINDOW - 1);

/// One table entry, alone in its cache line: an affine point is exactly 64 bytes, and an
/// entry that straddled two lines would cost two misses instead of one.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Entry(Affine);

/// A fixed-base comb table for one point Q with signed 8-bit digits: entry
/// `[i][m - 1]` is `m * 2^(8i) * Q` for m in `1..=128`, affine, and a last entry `2^256 * Q`
/// takes the carry out of the top window. A scalar multiplication is then at most 33 mixed
/// additions and no doubling. 32 x 128 + 1 points, 256 KiB.
///
/// Why signed digits: the node verifies beside HTTP and kernel work on the same cores, and
/// with unsigned digits the two tables a verification reads (G's and the key's, 510 KiB each)
/// filled the whole of a core's L2 and were evicted between requests (tuning.md §5).
pub(crate) struct FixedBaseTable {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for FixedBaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedBaseTable").finish_non_exhaustive()
    }
}

impl FixedBaseTable {
    /// Builds the table (a few milliseconds).
    pub(crate) fn new(point: &Affine) -> FixedBaseTable {
        let mut jacobian = Vec::with_capacity(WINDOWS * MULTIPLES + 1);
        let mut base = *point;
        for _ in 0..WINDOWS {
            let mut multiple = Jacobian::from_affine(&base);
            jacobian.push(multiple);
            for _ in 1..MULTIPLES {
                multiple = multiple.add_affine(&base);
                jacobian.push(multiple);
            }
            // 2^8 * base = 2 * (128 * base).
            base = multiple.double().to_affine().unwrap_or_default();
        }
        // 2^256 * Q: never infinity, since Q's prime order does not divide 2^256.
        jacobian.push(Jacobian::from_affine(&base));
        FixedBaseTable {
            entries: batch_to_affine(&jacobian).into_iter().map(Entry).collect(),
        }
    }

    /// Adds `k * Q` to `accumulator`, for the 256-bit big-endian scalar `k`.
    #[inline(always)]
    pub(crate) fn accumulate(&self, accumulator: Jacobian, scalar: &[u8; 32]) -> Jacobian {
        let mut accumulator = accumulator;
        let mut carry = 0i16;
        for (window, &byte) in scalar.iter().rev().enumerate() {
            // byte + carry is in [0, 256]; from 128 up it becomes (value - 256) and carries
            // one into the next window, so every digit is in [-128, 127].
            let mut digit = i16::from(byte) + carry;
            carry = i16::from(digit >= 128);
            digit -= carry << 8;
            if digit != 0 {
                let Entry(entry) =
                    self.entries[window * MULTIPLES + usize::from(digit.unsigned_abs()) - 1];
                let entry = if digit < 0 {
                    Affine {
                        x: entry.x,
                        y: entry.y.negate(),
                    }
                } else {
                    entry
                };
                accumulator = accumulator.add_affine(&entry);
            }
        }
        if carry != 0 {
            accumulator = accumulator.add_affine(&self.entries[WINDOWS * MULTIPLES].0);
        }
        accumulator
    }
}

/// Normalises many points with one inversion (Montgomery's trick). None may be infinity; the
/// table multiples of a point of prime order below 2^256 never are.
fn batch_to_affine(points: &[Jacobian]) -> Vec<Affine> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut product = Fe::ONE;
    for point in points {
        prefix.push(product);
        product = product.mul(&point.z);
    }
    let mut inverse = product.invert();
    let mut affine = vec![Affine::default(); points.len()];
    for (index, point) in points.iter().enumerate().rev() {
        let z_inv = inverse.mul(&prefix[index]);
        inverse = inverse.mul(&point.z);
        let z_inv2 = z_inv.square();
        affine[index] = Affine {
            x: point.x.mul(&z_inv2),
            y: point.y.mul(&z_inv2).mul(&z_inv),
        };
    }
    affine
}

/// `k * Q` by plain double-and-add: the reference the comb and the NAF are tested against.
#[cfg(test)]
pub(crate) fn double_and_add(point: &Affine, scalar: &[u8; 32]) -> Option<Affine> {
    let mut accumulator = Jacobian::INFINITY;
    for byte in scalar {
        for bit in (0..8).rev() {
            accumulator = accumulator.double();
            if byte >> bit & 1 == 1 {
                accumulator = accumulator.add_affine(point);
            }
        }
    }
    accumulator.to_affine()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn comb(table: &FixedBaseTable, scalar: &[u8; 32]) -> Option<Affine> {
        table.accumulate(Jacobian::INFINITY, scalar).to_affine()
    }

    fn generator() -> &'static (Affine, FixedBaseTable) {
        static TABLE: std::sync::OnceLock<(Affine, FixedBaseTable)> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let g = Affine::generator();
            (g, FixedBaseTable::new(&g))
        })
    }

    #[test]
    fn signed_digits_agree_with_double_and_add_at_the_carry_edges() {
        let (g, table) = generator();
        // Every digit 0x80 or 0xFF carries (the longest carry chain and the carry out of the
        // top window); 0x7F never does; 0x80 alone is the most negative digit.
        let mut lone = [0u8; 32];
        lone[31] = 0x80;
        let mut top = [0u8; 32];
        top[0] = 0xFF;
        for scalar in [[0xFF; 32], [0x80; 32], [0x7F; 32], [0x01; 32], lone, top] {
            assert_eq!(
                comb(table, &scalar),
                double_and_add(g, &scalar),
                "{scalar:02x?}"
            );
        }
        assert_eq!(comb(table, &[0; 32]), None, "zero is the point at infinity");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn signed_digits_agree_with_double_and_add(scalar in any::<[u8; 32]>()) {
            let (g, table) = generator();
            prop_assert_eq!(comb(table, &scalar), double_and_add(g, &scalar));
        }
    }
}
