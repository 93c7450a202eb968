//! Reading an answer and judging it against what the request expected.

use std::borrow::Cow;

use cyberid_engine::Reason;
use serde::Deserialize;

use crate::Kind;

/// What a request expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expect {
    /// The verdict its kind of certificate must get.
    Verdict(Kind),
    /// Any HTTP answer (`--expect-any`: a target that does not verify, such as
    /// `cyberid-hyper-baseline`).
    Any,
}

impl Expect {
    /// The name reports list the request under: the kind, or `any`.
    pub fn name(self) -> &'static str {
        match self {
            Expect::Verdict(kind) => kind.name(),
            Expect::Any => "any",
        }
    }

    /// What it must get: a verdict, or `any`.
    pub fn expected(self) -> &'static str {
        match self {
            Expect::Verdict(kind) => kind.expected(),
            Expect::Any => "any",
        }
    }
}

/// A failure below HTTP: no answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportError {
    /// The connection could not be (re)opened.
    Connect,
    /// The node closed the connection before answering.
    Closed,
    /// The request could not be sent or the answer's head not read.
    Request,
    /// The answer's body could not be read.
    Body,
    /// No answer within `--timeout-ms`.
    Timeout,
}

impl TransportError {
    /// The stable name in reports.
    pub fn code(self) -> &'static str {
        match self {
            TransportError::Connect => "connect",
            TransportError::Closed => "closed",
            TransportError::Request => "request",
            TransportError::Body => "body",
            TransportError::Timeout => "timeout",
        }
    }
}

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Observed {
    /// `200 {"verdict":"valid",...}`.
    Valid,
    /// `200 {"verdict":"invalid","reason":...}`.
    Invalid(Reason),
    /// `503 {"error":{"code":"overloaded"}}`: the node shed the request.
    Overloaded,
    /// `429`: the platform's rate limit.
    RateLimited,
    /// Any other answer, with its error code when it has one. A 200 that is not a verdict is
    /// `Status(200, Some("not_a_verdict"))`.
    Status(u16, Option<String>),
    /// An answer not looked into (`--expect-any`).
    Answered(u16),
    /// No answer.
    Transport(TransportError),
}

impl Observed {
    /// Reads an answer to `POST /v1/verify`. Only the fields that decide the verdict are read,
    /// borrowed from the body.
    pub fn parse(status: u16, body: &[u8]) -> Observed {
        #[derive(Deserialize)]
        struct Answer<'a> {
            #[serde(borrow, default)]
            verdict: Option<&'a str>,
            #[serde(default)]
            reason: Option<Reason>,
            #[serde(borrow, default)]
            error: Option<ErrorBody<'a>>,
        }
        #[derive(Deserialize)]
        struct ErrorBody<'a> {
            #[serde(borrow)]
            code: &'a str,
        }
        let answer = serde_json::from_slice::<Answer<'_>>(body).ok();
        let code = answer
            .as_ref()
            .and_then(|answer| answer.error.as_ref())
            .map(|error| error.code);
        match (status, answer) {
            (
                200,
                Some(Answer {
                    verdict: Some("valid"),
                    reason: None,
                    ..
                }),
            ) => Observed::Valid,
            (
                200,
                Some(Answer {
                    verdict: Some("invalid"),
                    reason: Some(reason),
                    ..
                }),
            ) => Observed::Invalid(reason),
            (200, _) => Observed::Status(200, Some("not_a_verdict".to_owned())),
            (503, _) if code == Some("overloaded") => Observed::Overloaded,
            (429, _) => Observed::RateLimited,
            (status, _) => Observed::Status(status, code.map(str::to_owned)),
        }
    }

    /// The name reports count it under: `valid`, a reason code, `overloaded`, `rate_limited`,
    /// `http_<status>[:<code>]`, or a transport error's name.
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Observed::Valid => Cow::Borrowed("valid"),
            Observed::Invalid(reason) => Cow::Borrowed(reason.code()),
            Observed::Overloaded => Cow::Borrowed("overloaded"),
            Observed::RateLimited => Cow::Borrowed("rate_limited"),
            Observed::Status(status, Some(code)) => Cow::Owned(format!("http_{status}:{code}")),
            Observed::Status(status, None) | Observed::Answered(status) => {
                Cow::Owned(format!("http_{status}"))
            }
            Observed::Transport(error) => Cow::Borrowed(error.code()),
        }
    }
}

/// How an answer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// What the protocol requires.
    Match,
    /// A wrong verdict or an unexpected HTTP answer: fails the run.
    Mismatch,
    /// The node shed load (503 `overloaded`, 429): an error by kind, failing the run unless
    /// overload is allowed.
    Overload,
    /// No answer at all: an error by kind that fails the run.
    Transport,
}

/// Judges `observed` against `expect`.
pub fn classify(expect: Expect, observed: &Observed) -> Class {
    match (expect, observed) {
        (_, Observed::Transport(_)) => Class::Transport,
        (_, Observed::Overloaded | Observed::RateLimited) => Class::Overload,
        (Expect::Any, _) => Class::Match,
        (Expect::Verdict(Kind::Valid), Observed::Valid) => Class::Match,
        (Expect::Verdict(kind), Observed::Invalid(reason)) if reason.code() == kind.expected() => {
            Class::Match
        }
        (Expect::Verdict(_), _) => Class::Mismatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Vec<(Observed, &'static str)> {
        let mut answers = vec![
            (
                Observed::parse(
                    200,
                    br#"{"verdict":"valid","subject":"R78NAE04T4HX1G3NG776","subject_type":"pairwise","assurance":"high","claims":{},"expires_at":1}"#,
                ),
                "valid",
            ),
            (
                Observed::parse(
                    503,
                    br#"{"error":{"code":"overloaded","message":"queue full"}}"#,
                ),
                "overloaded",
            ),
            (
                Observed::parse(
                    429,
                    br#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
                ),
                "rate_limited",
            ),
            (
                Observed::parse(
                    503,
                    br#"{"error":{"code":"shutting_down","message":"bye"}}"#,
                ),
                "http_503:shutting_down",
            ),
            (
                Observed::parse(401, br#"{"error":{"code":"unauthenticated","message":""}}"#),
                "http_401:unauthenticated",
            ),
            (
                Observed::parse(200, br#"{"status":"ok"}"#),
                "http_200:not_a_verdict",
            ),
            (Observed::parse(200, b"not json"), "http_200:not_a_verdict"),
            (
                Observed::parse(200, br#"{"verdict":"invalid","reason":"surprised"}"#),
                "http_200:not_a_verdict",
            ),
            (Observed::parse(502, b"<html>"), "http_502"),
            (Observed::Transport(TransportError::Timeout), "timeout"),
            (Observed::Transport(TransportError::Closed), "closed"),
        ];
        for reason in Reason::ALL {
            let body = format!(r#"{{"verdict":"invalid","reason":"{}"}}"#, reason.code());
            answers.push((Observed::parse(200, body.as_bytes()), reason.code()));
        }
        answers
    }

    #[test]
    fn answers_are_read_and_labelled() {
        for (observed, label) in answers() {
            assert_eq!(observed.label(), label, "{observed:?}");
        }
        assert_eq!(
            Observed::parse(200, br#"{"verdict":"invalid","reason":"replayed"}"#),
            Observed::Invalid(Reason::Replayed)
        );
    }

    #[test]
    fn every_kind_matches_exactly_its_verdict() {
        for kind in Kind::ALL {
            for (observed, label) in answers() {
                let class = classify(Expect::Verdict(kind), &observed);
                let expected = match label {
                    "overloaded" | "rate_limited" => Class::Overload,
                    "timeout" | "closed" => Class::Transport,
                    label if label == kind.expected() => Class::Match,
                    _ => Class::Mismatch,
                };
                assert_eq!(class, expected, "{kind} answered {label}");
            }
        }
    }

    #[test]
    fn each_kind_has_exactly_one_matching_verdict() {
        for kind in Kind::ALL {
            let matching: Vec<String> = answers()
                .into_iter()
                .filter(|(observed, _)| classify(Expect::Verdict(kind), observed) == Class::Match)
                .map(|(_, label)| label.to_owned())
                .collect();
            assert_eq!(matching, [kind.expected()], "{kind}");
        }
    }

    #[test]
    fn expect_any_accepts_every_answer_but_not_silence_or_shedding() {
        assert_eq!(
            classify(Expect::Any, &Observed::Answered(200)),
            Class::Match
        );
        assert_eq!(
            classify(Expect::Any, &Observed::Answered(500)),
            Class::Match
        );
        assert_eq!(
            classify(Expect::Any, &Observed::Transport(TransportError::Request)),
            Class::Transport
        );
        assert_eq!(Observed::Answered(204).label(), "http_204");
        assert_eq!(Expect::Any.name(), "any");
    }
}
