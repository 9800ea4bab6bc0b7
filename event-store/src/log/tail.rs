//! The confirming tail: reads partitions continuously in log order, applies the arbitration rule,
//! hands every commit and its verdict to a [`TailSink`], and tells writers whether their commit won.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Appender, LogConfig, LogPosition, LogReader, LogRecord, StartAt, admin};
use crate::arbiter::{Arbiter, Verdict};
use crate::commit::Commit;
use crate::error::{Error, Result};
use crate::metrics;

/// Receives what the tail reads, in log order per partition.
pub trait TailSink: Send + 'static {
    /// A decoded commit and what the arbitration rule decided for it. Apply its events only if
    /// the verdict is [`Verdict::Accepted`].
    fn on_commit(&mut self, record: &LogRecord, commit: &Commit, verdict: Verdict);

    /// A record that is not a valid commit. It is skipped by the arbitration rule.
    fn on_undecodable(&mut self, record: &LogRecord, error: &Error) {
        tracing::error!(position = %record.position(), %error, "undecodable record in the log");
    }
}

/// A sink that keeps nothing; the tail still arbitrates and confirms.
impl TailSink for () {
    fn on_commit(&mut self, _: &LogRecord, _: &Commit, _: Verdict) {}
}

/// Where a commit landed and whether it won.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub position: LogPosition,
    pub verdict: Verdict,
}

#[derive(Default)]
struct Waiters(HashMap<Uuid, oneshot::Sender<Confirmation>>);

struct Shared {
    waiters: Mutex<Waiters>,
    /// Next offset to read per partition.
    progress: watch::Sender<BTreeMap<i32, i64>>,
    /// Set once every partition was read to the end it had when the tail started.
    caught_up: watch::Sender<bool>,
    partitions: Vec<i32>,
}

impl Shared {
    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A background task reading partitions of the log; see the module docs.
pub struct LogTail {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LogTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTail")
            .field("partitions", &self.shared.partitions)
            .finish_non_exhaustive()
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LogTail {
    /// Starts tailing `starts` (partition, where to begin) of the configured topic. `arbiter`
    /// must hold the aggregate versions as of those start offsets (empty when starting at the
    /// beginning). `name` labels the tail's metrics.
    pub async fn start<S: TailSink>(
        config: &LogConfig,
        name: &'static str,
        starts: &[(i32, StartAt)],
        arbiter: Arbiter,
        sink: S,
    ) -> Result<Self> {
        // The ends the partitions have now: reaching them completes the state rebuild.
        let ends: Vec<(i32, i64)> = admin::watermarks(config, &config.topic)
            .await?
            .into_iter()
            .filter(|(p, low, high)| starts.iter().any(|(s, _)| s == p) && high > low)
            .map(|(p, _, high)| (p, high))
            .collect();
        let reader = LogReader::assign(config, &config.topic, starts)?;
        let (progress, _) = watch::channel(BTreeMap::new());
        let (caught_up, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            waiters: Mutex::new(Waiters::default()),
            progress,
            caught_up,
            partitions: starts.iter().map(|(p, _)| *p).collect(),
        });
        let task = tokio::spawn(run(reader, ends, name, arbiter, sink, Arc::clone(&shared)));
        Ok(Self { shared, task })
    }

    /// Whether this tail reads `partition`.
    pub fn covers(&self, partition: i32) -> bool {
        self.shared.partitions.contains(&partition)
    }

    /// Registers interest in `commit_id` **before** it is appended, so its verdict cannot be
    /// missed however fast the tail reads it.
    pub fn expect(&self, commit_id: Uuid) -> PendingConfirmation {
        let (tx, rx) = oneshot::channel();
        self.shared.waiters().0.insert(commit_id, tx);
        PendingConfirmation {
            rx,
            commit_id,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits until every partition was read to the end it had when the tail started (the state
    /// rebuild is complete).
    pub async fn caught_up(&self) -> Result<()> {
        let mut rx = self.shared.caught_up.subscribe();
        rx.wait_for(|c| *c)
            .await
            .map(|_| ())
            .map_err(|_| Error::TailStopped("tail task ended".into()))
    }

    /// Waits until the tail has read past `position`.
    pub async fn reached(&self, position: LogPosition) -> Result<()> {
        let mut rx = self.shared.progress.subscribe();
        rx.wait_for(|p| {
            p.get(&position.partition)
                .is_some_and(|n| *n > position.offset)
        })
        .await
        .map(|_| ())
        .map_err(|_| Error::TailStopped("tail task ended".into()))
    }

    /// The next offset to read per partition.
    pub fn progress(&self) -> BTreeMap<i32, i64> {
        self.shared.progress.borrow().clone()
    }
}

/// A registered interest in one commit's verdict; dropping it unregisters.
#[derive(Debug)]
pub struct PendingConfirmation {
    rx: oneshot::Receiver<Confirmation>,
    commit_id: Uuid,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl PendingConfirmation {
    async fn wait(mut self, timeout: Duration) -> Option<Result<Confirmation, ()>> {
        tokio::time::timeout(timeout, &mut self.rx)
            .await
            .ok()
            .map(|r| r.map_err(|_| ()))
    }
}

impl Drop for PendingConfirmation {
    fn drop(&mut self) {
        self.shared.waiters().0.remove(&self.commit_id);
    }
}

async fn run<S: TailSink>(
    mut reader: LogReader,
    ends: Vec<(i32, i64)>,
    name: &'static str,
    mut arbiter: Arbiter,
    mut sink: S,
    shared: Arc<Shared>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut caught_up = false;
    loop {
        if !caught_up && ends.iter().all(|(p, end)| reader.has_reached(*p, *end)) {
            caught_up = true;
            shared.caught_up.send_replace(true);
        }
        let batch = match reader.next_batch(2_000, Duration::from_millis(200)).await {
            Ok(batch) => {
                backoff = Duration::from_millis(50);
                batch
            }
            Err(error) => {
                tracing::warn!(tail = name, %error, "log tail read failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        for record in &batch {
            match record.decode() {
                Ok(commit) => {
                    let verdict = arbiter.judge(&commit);
                    let label = if verdict.is_accepted() {
                        "accepted"
                    } else {
                        "lost_race"
                    };
                    metrics::COMMITS_READ
                        .with_label_values(&[name, label])
                        .inc();
                    sink.on_commit(record, &commit, verdict);
                    let waiter = shared.waiters().0.remove(&commit.commit_id);
                    if let Some(tx) = waiter {
                        let _ = tx.send(Confirmation {
                            position: record.position(),
                            verdict,
                        });
                    }
                }
                Err(error) => {
                    metrics::COMMITS_READ
                        .with_label_values(&[name, "undecodable"])
                        .inc();
                    sink.on_undecodable(record, &error);
                }
            }
        }
        if !batch.is_empty() {
            shared.progress.send_modify(|progress| {
                for record in &batch {
                    progress.insert(record.partition, record.offset + 1);
                }
            });
        }
    }
}

/// Appends commits and confirms each by reading the log back up to it: the writer's half of the
/// arbitration rule. A command is answered only with a [`Confirmation`] from here.
#[derive(Clone, Debug)]
pub struct Writer {
    appender: Appender,
    tail: Arc<LogTail>,
    confirm_timeout: Duration,
}

impl Writer {
    /// A writer for the partitions `tail` reads.
    pub fn new(config: &LogConfig, appender: Appender, tail: Arc<LogTail>) -> Self {
        Self {
            appender,
            tail,
            confirm_timeout: config.confirm_timeout(),
        }
    }

    pub fn appender(&self) -> &Appender {
        &self.appender
    }

    pub fn tail(&self) -> &LogTail {
        &self.tail
    }

    /// Appends `commit`, then waits until the tail has read it and returns where it landed and
    /// whether it won ([`Verdict::Accepted`]) or lost its race.
    pub async fn append(&self, commit: &Commit) -> Result<Confirmation> {
        let partition = self.appender.partition_of(commit.user_id().as_str());
        if !self.tail.covers(partition) {
            return Err(Error::PartitionNotTailed(partition));
        }
        let started = Instant::now();
        let pending = self.tail.expect(commit.commit_id);
        let position = self.appender.append(commit).await?;
        let remaining = self.confirm_timeout.saturating_sub(started.elapsed());
        match pending.wait(remaining).await {
            Some(Ok(confirmation)) => {
                let verdict = if confirmation.verdict.is_accepted() {
                    "accepted"
                } else {
                    "lost_race"
                };
                metrics::CONFIRM_SECONDS
                    .with_label_values(&[verdict])
                    .observe(started.elapsed().as_secs_f64());
                if confirmation.position != position {
                    tracing::warn!(
                        commit_id = %commit.commit_id,
                        appended = %position,
                        read = %confirmation.position,
                        "commit id read back at another position; the first occurrence decides"
                    );
                }
                Ok(confirmation)
            }
            Some(Err(())) => Err(Error::TailStopped("tail task ended".into())),
            None => Err(Error::ConfirmTimeout {
                commit_id: commit.commit_id,
                position,
                waited_ms: started.elapsed().as_millis() as u64,
            }),
        }
    }
}
