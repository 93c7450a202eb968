//! The batched verification pipeline: many callers, one bounded queue, signature checks in
//! parallel on a rayon pool, one nonce-store call per batch.
//!
//! ```text
//! callers ──try_send──▶ [bounded queue] ──▶ batcher ──rayon──▶ signature checks
//!    ▲                                                            │
//!    └──────────── oneshot reply ◀── settler (revocations, one nonce commit) ◀──┘
//! ```
//!
//! The batcher takes the first waiting request at once and everything queued behind it, up to
//! `max_batch`: a lone request never waits for a batch to fill, and under load requests that
//! arrive while one batch is checked form the next. The settler runs the stateful part of one
//! batch (including its fsync) while the batcher checks signatures of the next; with
//! `settlers` above one, several batches settle at once (a store across the network). A full queue is
//! refused at once with [`Error::Overloaded`], never a hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use rayon::prelude::*;

use crate::{Context, Error, Input, Observer, Reason, SignedCertificate, Verdict, Verifier};

/// Settings of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Most requests in one batch.
    pub max_batch: usize,
    /// How long the batcher waits for more requests after the first, when fewer than
    /// `max_batch` are queued. Zero (the default) never delays a request: batches form from
    /// what queued up while the previous batch was being checked.
    pub max_wait: Duration,
    /// Requests that may wait in the queue; one more is refused with [`Error::Overloaded`].
    pub queue_capacity: usize,
    /// Threads of the rayon pool that checks signatures.
    pub threads: usize,
    /// Batches settled at once (revocation check, nonce commit), each on a thread of its
    /// own. One suits a store that answers in microseconds or groups concurrent commits
    /// itself; a store a network round trip away (etcd) needs several batches in flight, or
    /// the node waits on one round trip at a time.
    pub settlers: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_wait: Duration::ZERO,
            queue_capacity: 4096,
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            settlers: 1,
        }
    }
}

/// A certificate owned by a queued request: a slice of the request body itself (`Bytes` are
/// reference-counted), so a certificate is never copied between the socket and its decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedInput {
    /// The text form; bytes that are not UTF-8 are `malformed`.
    Text(Bytes),
    /// The binary form.
    Binary(Bytes),
}

impl OwnedInput {
    fn check(&self, verifier: &Verifier, context: &Context) -> Result<SignedCertificate, Reason> {
        let input = match self {
            OwnedInput::Text(bytes) => {
                Input::Text(std::str::from_utf8(bytes).map_err(|_| Reason::Malformed)?)
            }
            OwnedInput::Binary(bytes) => Input::Binary(bytes),
        };
        verifier.check_signed(input, context)
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<Verdict, Error>>;

struct Job {
    input: OwnedInput,
    context: Context,
    reply: Reply,
}

struct Checked {
    results: Vec<Result<SignedCertificate, Reason>>,
    replies: Vec<Reply>,
}

/// Counters of the pipeline, for metrics.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Batches verified.
    pub batches: AtomicU64,
    /// Requests verified.
    pub requests: AtomicU64,
    /// Requests refused because the queue was full.
    pub overloaded: AtomicU64,
}

/// The running pipeline. Dropping it stops the threads after the queued requests are answered.
pub struct Pipeline {
    queue: Option<Sender<Job>>,
    stats: Arc<PipelineStats>,
    threads: Vec<JoinHandle<()>>,
    config: PipelineConfig,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

/// A verdict on its way.
#[derive(Debug)]
pub struct PendingVerdict(tokio::sync::oneshot::Receiver<Result<Verdict, Error>>);

impl PendingVerdict {
    /// Waits without blocking the async runtime.
    pub async fn wait(self) -> Result<Verdict, Error> {
        self.0.await.map_err(|_| Error::Shutdown)?
    }

    /// Waits, blocking this thread (not for async contexts).
    pub fn wait_blocking(self) -> Result<Verdict, Error> {
        self.0.blocking_recv().map_err(|_| Error::Shutdown)?
    }
}

impl Pipeline {
    /// Starts the batcher, the settler and the rayon pool.
    pub fn start(verifier: Arc<Verifier>, config: PipelineConfig) -> Result<Self, Error> {
        Self::start_observed(verifier, config, None)
    }

    /// Starts the pipeline, reporting each checked batch to `observer`.
    pub fn start_observed(
        verifier: Arc<Verifier>,
        config: PipelineConfig,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Self, Error> {
        if config.max_batch == 0
            || config.queue_capacity == 0
            || config.threads == 0
            || config.settlers == 0
        {
            return Err(Error::Config(
                "max_batch, queue_capacity, threads and settlers must be positive",
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|index| format!("cyberid-verify-{index}"))
            .build()
            .map_err(|_| Error::Config("cannot start the verification threads"))?;
        let (queue, jobs) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
        // One checked batch waiting per settler besides those settling; the batcher then
        // blocks, which bounds memory and lets the queue, not this hand-off, absorb bursts.
        let (checked_sender, checked) = crossbeam_channel::bounded::<Checked>(config.settlers);
        let stats = Arc::new(PipelineStats::default());

        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|_| Error::Config("cannot start the pipeline threads"))
        };
        let batcher = {
            let verifier = verifier.clone();
            let stats = stats.clone();
            spawn(
                "cyberid-batcher",
                Box::new(move || {
                    let batcher = Batcher {
                        verifier: &verifier,
                        pool: &pool,
                        stats: &stats,
                        observer: observer.as_deref(),
                        config,
                    };
                    batcher.run(&jobs, &checked_sender);
                }),
            )?
        };
        let mut threads = vec![batcher];
        for _ in 0..config.settlers {
            let (verifier, checked) = (verifier.clone(), checked.clone());
            threads.push(spawn(
                "cyberid-settler",
                Box::new(move || run_settler(&verifier, &checked)),
            )?);
        }
        Ok(Self {
            queue: Some(queue),
            stats,
            threads,
            config,
        })
    }

    /// Queues a verification. Fails at once with [`Error::Overloaded`] when the queue is full.
    pub fn submit(&self, input: OwnedInput, context: Context) -> Result<PendingVerdict, Error> {
        let (reply, verdict) = tokio::sync::oneshot::channel();
        let queue = self.queue.as_ref().ok_or(Error::Shutdown)?;
        match queue.try_send(Job {
            input,
            context,
            reply,
        }) {
            Ok(()) => Ok(PendingVerdict(verdict)),
            Err(TrySendError::Full(_)) => {
                self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                Err(Error::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Shutdown),
        }
    }

    /// Verifies through the pipeline from async code.
    pub async fn verify(&self, input: OwnedInput, context: Context) -> Result<Verdict, Error> {
        self.submit(input, context)?.wait().await
    }

    /// Requests waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, Sender::len)
    }

    /// Counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The settings in force.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.queue.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

struct Batcher<'a> {
    verifier: &'a Verifier,
    pool: &'a rayon::ThreadPool,
    stats: &'a PipelineStats,
    observer: Option<&'a dyn Observer>,
    config: PipelineConfig,
}

impl Batcher<'_> {
    fn run(&self, jobs: &Receiver<Job>, checked: &Sender<Checked>) {
        let Batcher {
            verifier,
            pool,
            stats,
            observer,
            config,
        } = *self;
        while let Ok(first) = jobs.recv() {
            let mut batch = Vec::with_capacity(config.max_batch);
            batch.push(first);
            let deadline = Instant::now() + config.max_wait;
            while batch.len() < config.max_batch {
                let next = if config.max_wait.is_zero() {
                    jobs.try_recv().ok()
                } else {
                    jobs.recv_deadline(deadline).ok()
                };
                match next {
                    Some(job) => batch.push(job),
                    None => break,
                }
            }
            let started = Instant::now();
            let results = pool.install(|| {
                batch
                    .par_iter()
                    .map(|job| job.input.check(verifier, &job.context))
                    .collect()
            });
            if let Some(observer) = observer {
                observer.batch_checked(batch.len(), started.elapsed());
            }
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .requests
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let replies = batch.into_iter().map(|job| job.reply).collect();
            if checked.send(Checked { results, replies }).is_err() {
                return;
            }
        }
    }
}
fn run_settler(verifier: &Verifier, checked: &Receiver<Checked>) {
    while let Ok(Checked { results, replies }) = checked.recv() {
        match verifier.settle(&results) {
            Ok(verdicts) => {
                for (reply, verdict) in replies.into_iter().zip(verdicts) {
                    let _ = reply.send(Ok(verdict));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
