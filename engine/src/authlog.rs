//! The authentication log's domain: which verifications it records and what a platform is
//! handed as proof of its answer. The entry's binary form, commitments and the Merkle tree are
//! in `cyberid-translog`; a nonce store that keeps the log appends entries in the same durable
//! write as the nonces they settle ([`NonceStore::consume_logged`](crate::NonceStore)).

use crate::{CertificateId, NonceOutcome, PlatformId, Reason, WebNumber};

/// How a verification that reached a genuine signature ended: what the log records. Checks
/// that fail before the signature (malformed, expired, wrong audience, ...) say nothing about
/// any holder, since anybody can send such bytes, and are not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogOutcome {
    /// Answered `valid`: the certificate's one verification.
    Valid,
    /// Answered `revoked`.
    Revoked,
    /// Answered `replayed`.
    Replayed,
    /// Answered `history_unavailable`.
    HistoryUnavailable,
    /// The same request retried (same request key) after its answer was lost: the earlier
    /// `valid` answer was sent again. Not a second use; logged so that the retry's receipt
    /// points at an entry that says exactly what happened.
    Repeated,
}

impl LogOutcome {
    /// Every outcome, in the order of their byte values in the entry format.
    pub const ALL: [LogOutcome; 5] = [
        LogOutcome::Valid,
        LogOutcome::Revoked,
        LogOutcome::Replayed,
        LogOutcome::HistoryUnavailable,
        LogOutcome::Repeated,
    ];

    /// The outcome an invalid verdict after a genuine signature is logged as, or `None` for a
    /// reason that comes before the signature check.
    pub fn of_reason(reason: Reason) -> Option<Self> {
        match reason {
            Reason::Revoked => Some(LogOutcome::Revoked),
            Reason::Replayed => Some(LogOutcome::Replayed),
            Reason::HistoryUnavailable => Some(LogOutcome::HistoryUnavailable),
            _ => None,
        }
    }

    /// The outcome a claim's nonce decides, or `None` when it is not logged: a claim found
    /// [`Expired`](NonceOutcome::Expired) by the store's clock is answered `expired`, a check
    /// that comes before the signature in protocol order.
    pub fn of_nonce(outcome: NonceOutcome) -> Option<Self> {
        match outcome {
            NonceOutcome::Fresh => Some(LogOutcome::Valid),
            NonceOutcome::Repeated => Some(LogOutcome::Repeated),
            NonceOutcome::Replayed => Some(LogOutcome::Replayed),
            NonceOutcome::BeforeHistory => Some(LogOutcome::HistoryUnavailable),
            NonceOutcome::Expired => None,
        }
    }

    /// Its stable code.
    pub fn code(self) -> &'static str {
        match self {
            LogOutcome::Valid => "valid",
            LogOutcome::Revoked => "revoked",
            LogOutcome::Replayed => "replayed",
            LogOutcome::HistoryUnavailable => "history_unavailable",
            LogOutcome::Repeated => "repeated",
        }
    }
}

/// One verification as the log records it. No identity data: the holder is named by Web
/// Number, and attributes disclosed with the answer by a bit each, never their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The platform that asked.
    pub platform: PlatformId,
    /// The holder the certificate named.
    pub web_number: WebNumber,
    /// The certificate.
    pub certificate_id: CertificateId,
    /// How it ended.
    pub outcome: LogOutcome,
    /// The attributes disclosed with the answer, a bit each (0: the result only).
    pub disclosed: u16,
}

/// A verification to log with a batch: its entry, and the claim of the batch (its position in
/// the claims) whose nonce outcome decides the entry's outcome, if any
/// ([`LogOutcome::of_nonce`]); an entry without a claim (a `revoked` answer) is logged as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogItem {
    /// The entry; its outcome is replaced by the claim's when there is one.
    pub entry: LogEntry,
    /// The claim that decides it.
    pub claim: Option<usize>,
}

/// What a platform receives with a logged answer: where the entry sits in the log and the
/// leaf it became, so that it can later prove what it was told against any signed tree head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The entry's index in the log.
    pub index: u64,
    /// The entry's commitment: the leaf the tree holds (`cyberid-translog`'s `commitment`).
    pub commitment: [u8; 32],
}

impl LogItem {
    /// The entry as it is logged given the batch's nonce outcomes, or `None` when it is not
    /// logged. Every log-keeping store finalises entries with this one rule.
    pub fn finalise(&self, outcomes: &[NonceOutcome]) -> Option<LogEntry> {
        let mut entry = self.entry;
        if let Some(claim) = self.claim {
            entry.outcome = LogOutcome::of_nonce(*outcomes.get(claim)?)?;
        }
        // Attributes go out with a `valid` answer only (a retried request's answer is the
        // first one again, attributes included); any other outcome disclosed nothing.
        if !matches!(entry.outcome, LogOutcome::Valid | LogOutcome::Repeated) {
            entry.disclosed = 0;
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_decides_its_entry_and_an_expired_claim_is_not_logged() {
        let item = LogItem {
            entry: LogEntry {
                at_ms: 1,
                platform: "shop.example".parse().unwrap(),
                web_number: "7K3MQ9XZ2P".parse().unwrap(),
                certificate_id: CertificateId::from_bytes([1; 16]),
                outcome: LogOutcome::Valid,
                disclosed: 0,
            },
            claim: Some(1),
        };
        let outcome = |nonce| {
            item.finalise(&[NonceOutcome::Fresh, nonce])
                .map(|e| e.outcome)
        };
        assert_eq!(outcome(NonceOutcome::Fresh), Some(LogOutcome::Valid));
        assert_eq!(outcome(NonceOutcome::Replayed), Some(LogOutcome::Replayed));
        assert_eq!(outcome(NonceOutcome::Repeated), Some(LogOutcome::Repeated));
        assert_eq!(
            outcome(NonceOutcome::BeforeHistory),
            Some(LogOutcome::HistoryUnavailable)
        );
        assert_eq!(outcome(NonceOutcome::Expired), None);
        let disclosing = LogItem {
            entry: LogEntry {
                disclosed: 0b11,
                ..item.entry
            },
            ..item
        };
        let disclosed = |nonce| {
            disclosing
                .finalise(&[NonceOutcome::Fresh, nonce])
                .map(|e| e.disclosed)
        };
        assert_eq!(disclosed(NonceOutcome::Fresh), Some(0b11));
        assert_eq!(disclosed(NonceOutcome::Repeated), Some(0b11));
        assert_eq!(
            disclosed(NonceOutcome::Replayed),
            Some(0),
            "a replay discloses nothing"
        );
        assert_eq!(disclosed(NonceOutcome::BeforeHistory), Some(0));
        assert_eq!(
            item.finalise(&[NonceOutcome::Fresh]),
            None,
            "a missing claim"
        );
        let revoked = LogItem {
            entry: LogEntry {
                outcome: LogOutcome::Revoked,
                ..item.entry
            },
            claim: None,
        };
        assert_eq!(revoked.finalise(&[]), Some(revoked.entry));
    }
}
