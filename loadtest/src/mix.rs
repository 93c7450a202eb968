//! The traffic mix: which kinds of certificate a run sends, in what proportions, and the order
//! they go out in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A kind of certificate, named for what the node must answer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Fresh and genuine, sent once: `valid`.
    Valid,
    /// Genuine but already consumed during preparation: `replayed`.
    Replayed,
    /// A genuine certificate with one signature bit flipped: `bad_signature`.
    Forged,
    /// Genuinely signed, but issued an hour ago with a one-minute lifetime: `expired`.
    Expired,
    /// Genuine, restricted to another platform: `wrong_audience`.
    WrongAudience,
    /// Genuine, for a Web Number revoked through the admin API: `revoked`.
    Revoked,
}

impl Kind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Kind; 6] = [
        Kind::Valid,
        Kind::Replayed,
        Kind::Forged,
        Kind::Expired,
        Kind::WrongAudience,
        Kind::Revoked,
    ];

    /// The name used in `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Replayed => "replayed",
            Kind::Forged => "forged",
            Kind::Expired => "expired",
            Kind::WrongAudience => "wrong-audience",
            Kind::Revoked => "revoked",
        }
    }

    /// The verdict the node must give: `valid` or the reason code of `docs/protocol.md`.
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Replayed => "replayed",
            Kind::Forged => "bad_signature",
            Kind::Expired => "expired",
            Kind::WrongAudience => "wrong_audience",
            Kind::Revoked => "revoked",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let wanted = text.trim().replace('_', "-");
        Kind::ALL
            .into_iter()
            .find(|kind| kind.name() == wanted)
            .ok_or_else(|| {
                Error::Mix(format!(
                    "unknown kind {text:?}; the kinds are {}",
                    Kind::ALL.map(Kind::name).join(", ")
                ))
            })
    }
}

/// Relative weights of the six kinds. Only the proportions matter: `valid=9,forged=1` and
/// `valid=0.9,forged=0.1` are the same mix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    weights: [f64; 6],
}

impl Default for Mix {
    /// Only valid certificates: the traffic a healthy deployment mostly sees.
    fn default() -> Self {
        Self::only(Kind::Valid)
    }
}

impl Mix {
    /// A mix of one kind.
    pub fn only(kind: Kind) -> Self {
        let mut weights = [0.0; 6];
        weights[kind.index()] = 1.0;
        Self { weights }
    }

    /// A mix from `(kind, weight)` pairs; kinds not named weigh nothing. Weights must be finite
    /// and not negative, at least one positive, and each kind named once.
    pub fn new(pairs: impl IntoIterator<Item = (Kind, f64)>) -> Result<Self, Error> {
        let mut weights = [0.0; 6];
        let mut seen = [false; 6];
        for (kind, weight) in pairs {
            if std::mem::replace(&mut seen[kind.index()], true) {
                return Err(Error::Mix(format!("{kind} is given twice")));
            }
            if !weight.is_finite() || weight < 0.0 {
                return Err(Error::Mix(format!(
                    "{kind}={weight}: a ratio is a number of at least 0"
                )));
            }
            weights[kind.index()] = weight;
        }
        if weights.iter().all(|weight| *weight == 0.0) {
            return Err(Error::Mix(
                "every ratio is 0: nothing would be sent".to_owned(),
            ));
        }
        Ok(Self { weights })
    }

    /// The weight of `kind`.
    pub fn weight(&self, kind: Kind) -> f64 {
        self.weights[kind.index()]
    }

    /// The kinds with a positive weight.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL
            .into_iter()
            .filter(|kind| self.weight(*kind) > 0.0)
    }

    /// Splits `total` requests between the kinds, in proportion to their weights, summing to
    /// exactly `total`: each kind gets the whole part of its share, and the requests left over
    /// go to the largest remainders (ties to the kind listed first). No kind with a positive
    /// weight gets more than one request away from its exact share.
    pub fn counts(&self, total: u64) -> [u64; 6] {
        let sum: f64 = self.weights.iter().sum();
        let shares = self.weights.map(|weight| total as f64 * weight / sum);
        let mut counts = shares.map(|share| share.floor() as u64);
        let assigned: u64 = counts.iter().sum();
        let mut order: Vec<usize> = (0..6).filter(|i| self.weights[*i] > 0.0).collect();
        // Stable sort: equal remainders keep the kinds' order, so the split is deterministic.
        order.sort_by(|a, b| {
            let remainder = |i: usize| shares[i] - shares[i].floor();
            remainder(*b).total_cmp(&remainder(*a))
        });
        for i in order
            .into_iter()
            .cycle()
            .take(total.saturating_sub(assigned) as usize)
        {
            counts[i] += 1;
        }
        counts
    }

    /// The order `total` requests go out in: [`counts`](Self::counts) of each kind, spread
    /// evenly so that every stretch of the run sees the whole mix. Each request goes to the kind
    /// furthest behind its exact share of the requests so far (ties to the kind listed first),
    /// which keeps every kind within one request of its share at every point of the run, and
    /// makes the sequence the same on every run.
    pub fn sequence(&self, total: u64) -> Vec<Kind> {
        let counts = self.counts(total);
        let mut sent = [0u64; 6];
        let mut sequence = Vec::with_capacity(total as usize);
        for position in 1..=total {
            // Kind k is behind by position·counts[k]/total − sent[k]; compared exactly, scaled
            // by total.
            let behind = |k: usize| {
                i128::from(position) * i128::from(counts[k])
                    - i128::from(total) * i128::from(sent[k])
            };
            let Some(k) = (0..6)
                .filter(|k| sent[*k] < counts[*k])
                .reduce(|best, k| if behind(k) > behind(best) { k } else { best })
            else {
                break;
            };
            sent[k] += 1;
            sequence.push(Kind::ALL[k]);
        }
        sequence
    }
}

impl FromStr for Mix {
    type Err = Error;

    /// `valid=90,replayed=4,forged=2,expired=2,wrong-audience=1,revoked=1`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let mut pairs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| Error::Mix(format!("{part:?} is not kind=ratio")))?;
            let weight: f64 = weight
                .trim()
                .parse()
                .map_err(|_| Error::Mix(format!("{part:?}: the ratio is not a number")))?;
            pairs.push((kind.parse()?, weight));
        }
        Mix::new(pairs)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .kinds()
            .map(|kind| format!("{kind}={}", self.weight(kind)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(sequence: &[Kind], kind: Kind) -> u64 {
        sequence.iter().filter(|k| **k == kind).count() as u64
    }

    #[test]
    fn kinds_parse_by_either_spelling_and_name_their_verdict() {
        assert_eq!(
            "wrong_audience".parse::<Kind>().unwrap(),
            Kind::WrongAudience
        );
        assert_eq!(
            "wrong-audience".parse::<Kind>().unwrap(),
            Kind::WrongAudience
        );
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>().unwrap(), kind);
        }
        assert_eq!(Kind::Forged.expected(), "bad_signature");
        let error = "stale".parse::<Kind>().unwrap_err();
        assert!(error.to_string().contains("wrong-audience"), "{error}");
    }

    #[test]
    fn a_mix_parses_and_prints_back() {
        let mix: Mix = "valid=90, replayed=4,forged=2,expired=2,wrong_audience=1,revoked=1"
            .parse()
            .unwrap();
        assert_eq!(mix.weight(Kind::Valid), 90.0);
        assert_eq!(mix.weight(Kind::WrongAudience), 1.0);
        assert_eq!(mix.to_string().parse::<Mix>().unwrap(), mix);
        assert_eq!(
            "replayed=1".parse::<Mix>().unwrap(),
            Mix::only(Kind::Replayed)
        );
    }

    #[test]
    fn bad_mixes_are_refused_with_the_reason() {
        for (text, words) in [
            ("valid", "kind=ratio"),
            ("valid=x", "not a number"),
            ("valid=-1", "at least 0"),
            ("valid=inf", "at least 0"),
            ("valid=0,forged=0", "nothing would be sent"),
            ("", "nothing would be sent"),
            ("valid=1,valid=2", "twice"),
            ("fresh=1", "unknown kind"),
        ] {
            let error = text.parse::<Mix>().unwrap_err();
            assert_eq!(error.code(), "mix");
            assert!(error.to_string().contains(words), "{text}: {error}");
        }
    }

    #[test]
    fn counts_sum_to_the_total_and_stay_within_one_of_the_share() {
        let mix: Mix = "valid=90,replayed=4,forged=2,expired=2,wrong-audience=1,revoked=1"
            .parse()
            .unwrap();
        assert_eq!(mix.counts(100), [90, 4, 2, 2, 1, 1]);
        assert_eq!(mix.counts(0), [0; 6]);
        for total in [1u64, 7, 99, 101, 1_000, 12_345] {
            let counts = mix.counts(total);
            assert_eq!(counts.iter().sum::<u64>(), total);
            for kind in Kind::ALL {
                let share = total as f64 * mix.weight(kind) / 100.0;
                let got = counts[kind.index()] as f64;
                assert!((got - share).abs() < 1.0, "{kind}: {got} vs {share}");
            }
        }
    }

    #[test]
    fn leftover_requests_go_to_the_largest_remainders_then_the_first_kind() {
        // Shares 1.5, 1.5, 0: the one left over goes to the first of the tied kinds.
        let mix: Mix = "valid=1,forged=1".parse().unwrap();
        assert_eq!(mix.counts(3), [2, 0, 1, 0, 0, 0]);
        // Shares 0.2, 0.7, 0.1 of 1: the largest remainder wins.
        let mix: Mix = "valid=2,replayed=7,revoked=1".parse().unwrap();
        assert_eq!(mix.counts(1), [0, 1, 0, 0, 0, 0]);
        // A kind weighing nothing never gets a request.
        let mix: Mix = "valid=1,forged=0".parse().unwrap();
        assert_eq!(mix.counts(5), [5, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn the_sequence_has_the_counts_is_deterministic_and_spreads_every_kind() {
        for (text, total) in [
            (
                "valid=90,replayed=4,forged=2,expired=2,wrong-audience=1,revoked=1",
                1_000u64,
            ),
            (
                "valid=1,replayed=1,forged=1,expired=1,wrong-audience=1,revoked=1",
                997,
            ),
            ("valid=0.5,replayed=0.3,forged=0.2", 1_013),
            ("valid=1000,revoked=1", 2_002),
            (
                "valid=7,replayed=5,forged=3,expired=2,wrong-audience=1,revoked=1",
                19,
            ),
        ] {
            let mix: Mix = text.parse().unwrap();
            let sequence = mix.sequence(total);
            assert_eq!(sequence, mix.sequence(total));
            let counts = mix.counts(total);
            for kind in Kind::ALL {
                assert_eq!(count(&sequence, kind), counts[kind.index()], "{text}");
            }
            // Every prefix holds each kind within one request of its share: no kind bunches
            // up at one end of the run.
            for end in 1..=sequence.len() {
                for kind in Kind::ALL {
                    let ideal = end as f64 * counts[kind.index()] as f64 / total as f64;
                    let got = count(&sequence[..end], kind) as f64;
                    assert!(
                        (got - ideal).abs() <= 1.0,
                        "{text}: {kind} at {end}: {got} vs {ideal}"
                    );
                }
            }
        }
    }

    #[test]
    fn two_kinds_alternate_and_one_kind_fills_the_run() {
        let mix: Mix = "valid=1,replayed=1".parse().unwrap();
        assert_eq!(
            mix.sequence(4),
            [Kind::Valid, Kind::Replayed, Kind::Valid, Kind::Replayed]
        );
        assert_eq!(
            Mix::only(Kind::Forged).sequence(3),
            [Kind::Forged; 3].to_vec()
        );
        assert!(Mix::default().sequence(0).is_empty());
    }
}
