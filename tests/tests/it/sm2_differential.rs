//! The fast SM2 path against two independent verifiers, the RustCrypto sm2 crate and OpenSSL's
//! libcrypto: 100,000 valid signatures and 100,000 invalid ones of many kinds, plus off-curve
//! and malformed public keys. All three must agree on every case, and so must the table-free
//! path for one-off keys (`verify_once`) on a quarter of them.
//!
//! The cases come from a seeded generator; the seed is printed, and `CYBERID_DIFF_SEED=<n>`
//! replays a run.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::process::{Command, Stdio};

use cyberid_engine::{IssuerPublicKey, IssuerSigningKey};
use cyberid_tests::workspace_root;
use sm2::elliptic_curve::ff::PrimeField;

const VALID: usize = 100_000;
const INVALID: usize = 100_000;
const OFF_CURVE_KEYS: usize = 2_000;

/// The group order n, big-endian.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x72, 0x03, 0xdf, 0x6b, 0x21, 0xc6, 0x05, 0x2b, 0x53, 0xbb, 0xf4, 0x09, 0x39, 0xd5, 0x41, 0x23,
];

/// splitmix64: small, seedable, good enough to draw test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }

    fn message(&mut self) -> Vec<u8> {
        let len = self.below(130);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

struct Key {
    scalar: [u8; 32],
    signing: IssuerSigningKey,
    public: IssuerPublicKey,
    point: Vec<u8>,
}

fn key(rng: &mut Rng) -> Key {
    let mut scalar: [u8; 32] = rng.bytes();
    scalar[0] &= 0x7f; // below n
    let signing = IssuerSigningKey::from_scalar_bytes(&scalar).expect("scalar below n");
    let public = signing.public_key().clone();
    public.prepare();
    let point = public.to_sec1_bytes().to_vec();
    Key {
        scalar,
        signing,
        public,
        point,
    }
}

struct Case {
    key: usize,
    message: Vec<u8>,
    signature: [u8; 64],
    kind: &'static str,
}

fn add_small(value: &[u8; 32], small: u32) -> [u8; 32] {
    let mut out = *value;
    let mut carry = u64::from(small);
    for byte in out.iter_mut().rev() {
        let sum = u64::from(*byte) + (carry & 0xff);
        *byte = sum as u8;
        carry = (carry >> 8) + (sum >> 8);
    }
    out
}

fn scalar(bytes: &[u8; 32]) -> sm2::Scalar {
    Option::from(sm2::Scalar::from_repr((*bytes).into())).expect("below n")
}

fn join(r: &[u8], s: &[u8]) -> [u8; 64] {
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(r);
    signature[32..].copy_from_slice(s);
    signature
}

/// One invalid case of the given kind, from a valid signature on `message` by key 0.
fn invalid(kind: usize, rng: &mut Rng, keys: &[Key], message: Vec<u8>, valid: [u8; 64]) -> Case {
    let (r, s) = (&valid[..32], &valid[32..]);
    let random_scalar = |rng: &mut Rng| {
        let mut bytes: [u8; 32] = rng.bytes();
        bytes[0] &= 0x7f;
        bytes
    };
    let case = |key, message, signature, kind| Case {
        key,
        message,
        signature,
        kind,
    };
    match kind {
        0 => {
            let mut signature = valid;
            let bit = rng.below(512);
            signature[bit / 8] ^= 1 << (bit % 8);
            case(0, message, signature, "signature bit flip")
        }
        1 => {
            let mut message = message;
            if message.is_empty() {
                message.push(0);
            } else {
                let bit = rng.below(message.len() * 8);
                message[bit / 8] ^= 1 << (bit % 8);
            }
            case(0, message, valid, "message bit flip")
        }
        2 => case(0, message, join(&[0; 32], s), "r = 0"),
        3 => case(0, message, join(r, &[0; 32]), "s = 0"),
        4 => case(0, message, join(&N, s), "r = n"),
        5 => case(0, message, join(r, &N), "s = n"),
        6 => case(
            0,
            message,
            join(&add_small(&N, rng.next() as u32 | 1), s),
            "r > n",
        ),
        7 => case(
            0,
            message,
            join(r, &add_small(&N, rng.next() as u32 | 1)),
            "s > n",
        ),
        8 => {
            // r + s = n: t = 0.
            let s = (-scalar(&r.try_into().expect("32 bytes"))).to_repr();
            case(0, message, join(r, &s), "r + s = n")
        }
        9 => case(1 + rng.below(keys.len() - 1), message, valid, "wrong key"),
        10 => {
            let signature = join(&rng.bytes::<32>(), &rng.bytes::<32>());
            case(0, message, signature, "random r and s")
        }
        11 => {
            // [s]G + [t]P = O: with P = dG, s + (r + s) d = 0, so s = -r d / (1 + d).
            let d = scalar(&keys[0].scalar);
            let r = scalar(&random_scalar(rng));
            let inverse: sm2::Scalar =
                Option::from((sm2::Scalar::ONE + d).invert()).expect("1 + d is not zero");
            let s: sm2::Scalar = -(r * d) * inverse;
            case(
                0,
                message,
                join(&r.to_repr(), &s.to_repr()),
                "sum at infinity",
            )
        }
        _ => {
            let other = rng.message();
            if other == message {
                return invalid(1, rng, keys, message, valid);
            }
            case(0, other, valid, "signature of another message")
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles the OpenSSL reference verifier once per test run.
fn openssl_verifier(dir: &std::path::Path) -> std::path::PathBuf {
    let binary = dir.join("sm2_verify");
    let source = workspace_root().join("tests/openssl/sm2_verify.c");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .arg("-lcrypto")
        .status()
        .expect("a C compiler (apt-get install gcc libssl-dev)");
    assert!(
        status.success(),
        "building the OpenSSL reference verifier needs libssl-dev"
    );
    binary
}

/// Runs OpenSSL over `lines` in `shards` parallel processes; one bool per line.
fn openssl_verdicts(binary: &std::path::Path, lines: &[String], shards: usize) -> Vec<bool> {
    let chunk = lines.len().div_ceil(shards);
    let children: Vec<_> = lines
        .chunks(chunk)
        .map(|part| {
            let mut child = Command::new(binary)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run the OpenSSL verifier");
            let mut stdin = child.stdin.take().expect("stdin");
            let input = part.join("\n") + "\n";
            let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
            (child, writer, part.len())
        })
        .collect();
    let mut verdicts = Vec::with_capacity(lines.len());
    for (child, writer, expected) in children {
        let output = child.wait_with_output().expect("OpenSSL verifier output");
        writer.join().expect("writer thread").expect("write cases");
        let text = String::from_utf8(output.stdout).expect("ascii");
        let answers: Vec<bool> = text.trim_end().chars().map(|c| c == '1').collect();
        assert_eq!(
            answers.len(),
            expected,
            "the OpenSSL verifier answered every case"
        );
        verdicts.extend(answers);
    }
    verdicts
}

#[test]
fn fast_path_agrees_with_the_sm2_crate_and_openssl() {
    let seed = std::env::var("CYBERID_DIFF_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| RandomState::new().build_hasher().finish());
    eprintln!("sm2 differential seed: {seed} (replay with CYBERID_DIFF_SEED={seed})");
    let mut rng = Rng(seed);
    let keys: Vec<Key> = (0..3).map(|_| key(&mut rng)).collect();

    // Valid signatures, signed in parallel (signing is the slow part of building the cases).
    let messages: Vec<(usize, Vec<u8>)> = (0..VALID + INVALID)
        .map(|index| {
            (
                if index < VALID { index % keys.len() } else { 0 },
                rng.message(),
            )
        })
        .collect();
    let signatures: Vec<[u8; 64]> = std::thread::scope(|scope| {
        let halves: Vec<_> = messages
            .chunks(messages.len().div_ceil(2))
            .map(|part| {
                let keys = &keys;
                scope.spawn(move || {
                    part.iter()
                        .map(|(key, message)| keys[*key].signing.sign(message).expect("sign"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|half| half.join().expect("signer"))
            .collect()
    });
    let mut cases: Vec<Case> = Vec::with_capacity(VALID + INVALID);
    for (index, ((key, message), signature)) in messages.into_iter().zip(signatures).enumerate() {
        if index < VALID {
            cases.push(Case {
                key,
                message,
                signature,
                kind: "valid",
            });
        } else {
            cases.push(invalid(index % 13, &mut rng, &keys, message, signature));
        }
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let openssl = openssl_verifier(dir.path());
    let lines: Vec<String> = cases
        .iter()
        .map(|case| {
            format!(
                "{} {} {}",
                hex(&keys[case.key].point),
                hex(&case.message),
                hex(&case.signature)
            )
        })
        .collect();
    let reference = openssl_verdicts(&openssl, &lines, 2);

    // The table-free path for one-off keys (holders' device keys) on every fourth case: it is
    // the slower of the two fast paths, and a quarter still covers every kind many times.
    let (fast, general): (Vec<(bool, Option<bool>)>, Vec<bool>) = std::thread::scope(|scope| {
        let halves: Vec<_> = cases
            .chunks(cases.len().div_ceil(2))
            .map(|part| {
                let keys = &keys;
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(index, case)| {
                            let key = &keys[case.key].public;
                            let once = (index % 4 == 0)
                                .then(|| key.verify_once(&case.message, &case.signature));
                            (
                                (key.verify(&case.message, &case.signature), once),
                                key.verify_general(&case.message, &case.signature),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|half| half.join().expect("verifier"))
            .unzip()
    });

    let mut disagreements = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let expected = case.kind == "valid";
        let (fast, once) = fast[index];
        if fast != expected
            || once.is_some_and(|once| once != expected)
            || general[index] != expected
            || reference[index] != expected
        {
            disagreements.push(format!(
                "case {index} ({}): fast {fast} once {once:?} sm2 crate {} openssl {} expected {expected}",
                case.kind, general[index], reference[index]
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements (seed {seed}), first: {:#?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(10)]
    );
    let kinds: std::collections::BTreeSet<_> = cases.iter().map(|case| case.kind).collect();
    assert_eq!(kinds.len(), 14, "every kind of case was drawn: {kinds:?}");
}

#[test]
fn off_curve_and_malformed_keys_are_refused_like_openssl() {
    let mut rng = Rng(RandomState::new().build_hasher().finish());
    let mut points: Vec<Vec<u8>> = (0..OFF_CURVE_KEYS)
        .map(|_| {
            let mut point = vec![4u8];
            point.extend_from_slice(&rng.bytes::<64>());
            point
        })
        .collect();
    // The point at infinity, coordinates at or above p, and a truncated point.
    points.push(vec![0]);
    points.push([&[4u8][..], &[0xff; 64][..]].concat());
    points.push(vec![4, 1, 2, 3]);
    let dir = tempfile::tempdir().expect("temp dir");
    let openssl = openssl_verifier(dir.path());
    let signature = [0x11u8; 64];
    let lines: Vec<String> = points
        .iter()
        .map(|point| format!("{} {} {}", hex(point), hex(b"message"), hex(&signature)))
        .collect();
    let reference = openssl_verdicts(&openssl, &lines, 1);
    for (point, openssl_valid) in points.iter().zip(reference) {
        assert!(!openssl_valid);
        assert!(
            IssuerPublicKey::from_sec1_bytes(point).is_err(),
            "the engine accepted a key that is not a curve point: {}",
            hex(point)
        );
    }
}
