//! Requests to the cluster: each bounded in time, retried while the answer is not definite,
//! and every failure turned into the engine's retryable `store` error.

use std::future::Future;
use std::time::{Duration, Instant};

use cyberid_engine::Error;
use etcd_client::Client;
use tonic::Code;

use crate::Shared;
use crate::stats::Counters;

/// Why a request has no answer.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// No definite answer: the request may or may not have taken effect (timeout, no leader,
    /// leader changed, lost connection). Sending it again is how to find out.
    Unanswered(String),
    /// A lease the request named no longer exists in the cluster.
    LeaseNotFound,
    /// A definite refusal that a retry would meet again (too many operations, request too
    /// large, database space exceeded, compacted revision...).
    Refused(String),
}

impl Failure {
    pub(crate) fn into_error(self, context: &'static str) -> Error {
        let detail = match self {
            Failure::Unanswered(detail) => format!("no definite answer from etcd: {detail}"),
            Failure::LeaseNotFound => "etcd: requested lease not found".into(),
            Failure::Refused(detail) => format!("etcd refused: {detail}"),
        };
        Error::Store { context, detail }
    }
}

pub(crate) fn classify(error: etcd_client::Error) -> Failure {
    match &error {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            // etcd answers Unavailable for "no leader", "leader changed" and "request timed
            // out"; the others are what a broken connection or stream becomes in tonic.
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal => Failure::Unanswered(status.message().to_owned()),
            Code::NotFound if status.message().contains("lease not found") => {
                Failure::LeaseNotFound
            }
            _ => Failure::Refused(format!("{:?}: {}", status.code(), status.message())),
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            Failure::Unanswered(error.to_string())
        }
        _ => Failure::Refused(error.to_string()),
    }
}

/// Backoff before attempt `attempt` (1-based retries): 50 ms, doubling, at most 800 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.saturating_sub(1).min(4))
}

impl Shared {
    /// One attempt, bounded by `timeout`.
    pub(crate) async fn attempt<T, Fut>(
        &self,
        timeout: Duration,
        request: Fut,
    ) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(error)),
            Err(_) => Err(Failure::Unanswered(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Sends a request until it has a definite answer, at most `attempts` times. Only for
    /// requests that are safe to repeat: reads, and writes that recognise their own earlier
    /// attempt.
    pub(crate) async fn call<T, F, Fut>(&self, request: F) -> Result<T, Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_on(&self.client, request).await
    }

    /// [`call`](Self::call) on the cluster of `client`.
    pub(crate) async fn call_on<T, F, Fut>(&self, client: &Client, request: F) -> Result<T, Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_until(client, None, request).await
    }

    /// [`call_on`](Self::call_on), giving up at `deadline` if one is set: no attempt runs
    /// past it.
    pub(crate) async fn call_until<T, F, Fut>(
        &self,
        client: &Client,
        deadline: Option<Instant>,
        mut request: F,
    ) -> Result<T, Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            let timeout = match deadline {
                Some(deadline) => self
                    .options
                    .request_timeout
                    .min(deadline.saturating_duration_since(Instant::now())),
                None => self.options.request_timeout,
            };
            if timeout.is_zero() {
                return Err(Failure::Unanswered("the call's deadline passed".into()));
            }
            let failure = match self.attempt(timeout, request(client.clone())).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            attempt += 1;
            match failure {
                Failure::Unanswered(_) if attempt < self.options.attempts => {
                    Counters::bump(&self.stats.retries);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                failure => return Err(failure),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unanswered_requests_are_retried() {
        let unanswered = [
            tonic::Status::unavailable("etcdserver: no leader"),
            tonic::Status::unavailable("etcdserver: request timed out"),
            tonic::Status::unknown("transport error"),
            tonic::Status::cancelled("stream reset"),
        ];
        for status in unanswered {
            assert!(matches!(
                classify(etcd_client::Error::GRpcStatus(status)),
                Failure::Unanswered(_)
            ));
        }
        assert!(matches!(
            classify(etcd_client::Error::GRpcStatus(tonic::Status::not_found(
                "etcdserver: requested lease not found"
            ))),
            Failure::LeaseNotFound
        ));
        for status in [
            tonic::Status::invalid_argument("etcdserver: too many operations in txn request"),
            tonic::Status::resource_exhausted("etcdserver: mvcc: database space exceeded"),
            tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
        ] {
            let failure = classify(etcd_client::Error::GRpcStatus(status));
            assert!(matches!(failure, Failure::Refused(_)));
            assert_eq!(failure.into_error("test").code(), "store");
        }
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(9), Duration::from_millis(800));
    }
}
