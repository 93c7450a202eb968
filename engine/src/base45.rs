//! Strict base45 (RFC 9285) into and out of fixed-size buffers.
//!
//! Written here rather than taken from the `base45` crate because that crate accepts
//! non-canonical input (a final two-character group worth more than 255 is silently truncated),
//! and a certificate's text form must have exactly one spelling. It also works without
//! allocating, on the verification hot path.

const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Maps an ASCII byte to its base45 value, 0xFF for bytes outside the alphabet.
const DECODE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Length of the base45 text for `len` bytes.
pub(crate) const fn encoded_len(len: usize) -> usize {
    len / 2 * 3 + len % 2 * 2
}

/// Encodes `bytes` into `out`, which must be exactly `encoded_len(bytes.len())` long.
pub(crate) fn encode_into(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), encoded_len(bytes.len()));
    let mut chunks = bytes.chunks_exact(2);
    let mut groups = out.chunks_mut(3);
    for (pair, group) in (&mut chunks).zip(&mut groups) {
        let value = usize::from(pair[0]) << 8 | usize::from(pair[1]);
        group[0] = ALPHABET[value % 45];
        group[1] = ALPHABET[value / 45 % 45];
        group[2] = ALPHABET[value / 2025];
    }
    if let ([last], Some(group)) = (chunks.remainder(), groups.next()) {
        let value = usize::from(*last);
        group[0] = ALPHABET[value % 45];
        group[1] = ALPHABET[value / 45];
    }
}

/// Decodes `text` into `out`, accepting only the canonical encoding of exactly `out.len()`
/// bytes. Returns a description of the first rule broken.
pub(crate) fn decode_into(text: &[u8], out: &mut [u8]) -> Result<(), &'static str> {
    if text.len() != encoded_len(out.len()) {
        return Err("text form has the wrong length");
    }
    let digit = |byte: u8| match DECODE[usize::from(byte)] {
        0xFF => Err("text form has a character outside the base45 alphabet"),
        value => Ok(u32::from(value)),
    };
    let mut groups = text.chunks_exact(3);
    let mut pairs = out.chunks_exact_mut(2);
    for (group, pair) in (&mut groups).zip(&mut pairs) {
        let value = digit(group[0])? + digit(group[1])? * 45 + digit(group[2])? * 2025;
        let value = u16::try_from(value).map_err(|_| "base45 group exceeds 65535")?;
        pair.copy_from_slice(&value.to_be_bytes());
    }
    if let ([a, b], [last]) = (groups.remainder(), pairs.into_remainder()) {
        let value = digit(*a)? + digit(*b)? * 45;
        *last = u8::try_from(value).map_err(|_| "final base45 group exceeds 255")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(bytes: &[u8]) -> String {
        let mut out = vec![0; encoded_len(bytes.len())];
        encode_into(bytes, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc_9285_examples() {
        assert_eq!(encode(b"AB"), "BB8");
        assert_eq!(encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(encode(b"ietf!"), "QED8WEX0");
        let mut out = [0u8; 4];
        decode_into(b"QED8WEX0", &mut [0u8; 5]).unwrap();
        assert!(
            decode_into(b"GGW", &mut out[..2]).is_err(),
            "RFC 9285 4.2: GGW is 65536"
        );
    }

    #[test]
    fn rejects_non_canonical_final_group() {
        // "ZZ" = 35 + 35 * 45 = 1610: a lenient decoder would truncate it to one byte.
        assert_eq!(
            decode_into(b"ZZ", &mut [0u8; 1]),
            Err("final base45 group exceeds 255")
        );
        assert_eq!(decode_into(b"U5", &mut [0u8; 1]), Ok(()));
    }

    #[test]
    fn rejects_bad_characters_and_lengths() {
        assert!(decode_into(b"bb8", &mut [0u8; 2]).is_err());
        assert!(decode_into(b"BB", &mut [0u8; 2]).is_err());
        assert!(decode_into(b"BB8", &mut [0u8; 1]).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = encode(&bytes);
            let mut out = vec![0; bytes.len()];
            decode_into(text.as_bytes(), &mut out).unwrap();
            prop_assert_eq!(out, bytes);
        }

        #[test]
        fn anything_that_decodes_re_encodes_identically(text in "[0-9A-Z $%*+\\-./:]{0,12}") {
            if text.len() % 3 != 1 {
                let len = text.len() / 3 * 2 + usize::from(text.len() % 3 == 2);
                let mut out = vec![0; len];
                if decode_into(text.as_bytes(), &mut out).is_ok() {
                    prop_assert_eq!(encode(&out), text);
                }
            }
        }
    }
}
