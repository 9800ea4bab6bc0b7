//! The confirming tail: reads partitions continuously in log order, applies the arbitration rule,
//! hands every commit and its verdict to a [`TailSink`], and tells writers whether their commit won.
//!
//! # Deciding one's own commits without reading them back
//!
//! A commit's verdict depends only on the records before it in its partition and on the commit
//! itself. So when a [`Writer`]'s commit is acknowledged at offset *o* and the tail has already
//! decided every record of that partition below *o*, the writer knows everything the rule looks
//! at: the tail decides the commit at once, in log order, from the bytes the writer sent, and
//! skips the record when the reader delivers it later. When records below *o* are still unread
//! (another writer's, or the reader is simply behind), the commit waits in the tail until the
//! reader has filled the gap, and is decided then. Either way every commit is decided exactly once,
//! in offset order, with the same verdict any other reader of the log reaches.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Appender, LogConfig, LogPosition, LogReader, StartAt, admin};
use crate::arbiter::{Arbiter, Verdict};
use crate::commit::Commit;
use crate::error::{Error, Result};
use crate::metrics;

/// Receives what the tail decides, in log order per partition.
pub trait TailSink: Send + 'static {
    /// A decoded commit at `position` and what the arbitration rule decided for it. Apply its
    /// events only if the verdict is [`Verdict::Accepted`].
    fn on_commit(&mut self, position: LogPosition, commit: &Commit, verdict: Verdict);

    /// A record that is not a valid commit. It is skipped by the arbitration rule.
    fn on_undecodable(&mut self, position: LogPosition, error: &Error) {
        tracing::error!(%position, %error, "undecodable record in the log");
    }
}

/// A sink that keeps nothing; the tail still arbitrates and confirms.
impl TailSink for () {
    fn on_commit(&mut self, _: LogPosition, _: &Commit, _: Verdict) {}
}

/// Where a commit landed and whether it won.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub position: LogPosition,
    pub verdict: Verdict,
}

/// Everything the tail has decided, shared by its reading task and the writers.
struct Decisions {
    name: &'static str,
    arbiter: Arbiter,
    sink: Box<dyn TailSink>,
    /// The next offset to decide per partition, once known: every record below it is decided.
    next: HashMap<i32, i64>,
    /// Commits this process appended, by partition and offset, that wait for the records before
    /// them to be read.
    own: HashMap<i32, BTreeMap<i64, Commit>>,
    waiters: HashMap<Uuid, oneshot::Sender<Confirmation>>,
}

impl Decisions {
    fn new(
        name: &'static str,
        arbiter: Arbiter,
        sink: Box<dyn TailSink>,
        next: HashMap<i32, i64>,
    ) -> Self {
        Self {
            name,
            arbiter,
            sink,
            next,
            own: HashMap::new(),
            waiters: HashMap::new(),
        }
    }

    /// Whether the record at `position` is already decided.
    fn is_decided(&self, position: LogPosition) -> bool {
        self.next
            .get(&position.partition)
            .is_some_and(|next| position.offset < *next)
    }

    /// A record the reader delivered, decoded or not. Returns whether it was decided now (false
    /// when it had been decided already, as this process's own commit).
    fn read(&mut self, position: LogPosition, decoded: Result<Commit>) -> bool {
        if self.is_decided(position) {
            return false;
        }
        match decoded {
            Ok(commit) => self.decide(position, &commit),
            Err(error) => {
                metrics::COMMITS_READ
                    .with_label_values(&[self.name, "undecodable"])
                    .inc();
                self.sink.on_undecodable(position, &error);
            }
        }
        self.advance(position);
        true
    }

    /// A commit this process appended, acknowledged at `position`: decided now if every record
    /// before it is, else kept until they are.
    fn appended(&mut self, position: LogPosition, commit: &Commit) {
        if self.is_decided(position) {
            return;
        }
        self.own
            .entry(position.partition)
            .or_default()
            .insert(position.offset, commit.clone());
        self.decide_own(position.partition);
    }

    /// Moves past the record just read at `position`, then decides the own commits that follow.
    fn advance(&mut self, position: LogPosition) {
        let next = position.offset + 1;
        self.next.insert(position.partition, next);
        if let Some(own) = self.own.get_mut(&position.partition)
            && own
                .first_key_value()
                .is_some_and(|(offset, _)| *offset < next)
        {
            // Whatever was kept at or below a record the reader delivered was decided from the log.
            *own = own.split_off(&next);
        }
        self.decide_own(position.partition);
    }

    /// Decides the own commits that follow the decided records of `partition` without a gap.
    fn decide_own(&mut self, partition: i32) {
        let Some(mut next) = self.next.get(&partition).copied() else {
            return;
        };
        while let Some(commit) = self
            .own
            .get_mut(&partition)
            .and_then(|own| own.remove(&next))
        {
            self.decide(
                LogPosition {
                    partition,
                    offset: next,
                },
                &commit,
            );
            metrics::COMMITS_DECIDED_LOCALLY
                .with_label_values(&[self.name])
                .inc();
            next += 1;
        }
        self.next.insert(partition, next);
    }

    fn decide(&mut self, position: LogPosition, commit: &Commit) {
        let verdict = self.arbiter.judge(commit);
        let label = if verdict.is_accepted() {
            "accepted"
        } else {
            "lost_race"
        };
        metrics::COMMITS_READ
            .with_label_values(&[self.name, label])
            .inc();
        self.sink.on_commit(position, commit, verdict);
        if let Some(tx) = self.waiters.remove(&commit.commit_id) {
            let _ = tx.send(Confirmation { position, verdict });
        }
    }
}

struct Shared {
    decisions: Mutex<Decisions>,
    /// Next offset to decide per partition.
    progress: watch::Sender<BTreeMap<i32, i64>>,
    /// Set once every partition was read to the end it had when the tail started.
    caught_up: watch::Sender<bool>,
    partitions: Vec<i32>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn decisions(&self) -> MutexGuard<'_, Decisions> {
        // Every update of the decisions completes before it can panic in a sink; keep going.
        self.decisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes the next offsets of `partitions` for [`LogTail::reached`].
    fn publish(&self, decisions: &Decisions, partitions: impl IntoIterator<Item = i32>) {
        self.progress.send_modify(|progress| {
            for p in partitions {
                if let Some(next) = decisions.next.get(&p) {
                    progress.insert(p, *next);
                }
            }
        });
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
        let watermarks = admin::watermarks(config, &config.topic).await?;
        // The ends the partitions have now: reaching them completes the state rebuild.
        let ends: Vec<(i32, i64)> = watermarks
            .iter()
            .filter(|(p, low, high)| starts.iter().any(|(s, _)| s == p) && high > low)
            .map(|(p, _, high)| (*p, *high))
            .collect();
        // Where reading starts, where that is known before the first record arrives: from the
        // beginning, the low watermark (with infinite retention, 0).
        let next = starts
            .iter()
            .filter_map(|(p, start)| match start {
                StartAt::Offset(o) => Some((*p, *o)),
                StartAt::Beginning => watermarks
                    .iter()
                    .find(|(w, _, _)| w == p)
                    .map(|(_, low, _)| (*p, *low)),
                StartAt::End => None,
            })
            .collect();
        let reader = LogReader::assign(
            &LogConfig {
                fetch_wait_ms: config.tail_fetch_wait_ms,
                ..config.clone()
            },
            &config.topic,
            starts,
        )?;
        let (progress, _) = watch::channel(BTreeMap::new());
        let (caught_up, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            decisions: Mutex::new(Decisions::new(name, arbiter, Box::new(sink), next)),
            progress,
            caught_up,
            partitions: starts.iter().map(|(p, _)| *p).collect(),
        });
        let task = tokio::spawn(run(reader, ends, name, Arc::clone(&shared)));
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
        self.shared.decisions().waiters.insert(commit_id, tx);
        PendingConfirmation {
            rx,
            commit_id,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Tells the tail that this process's `commit` was acknowledged at `position`, so it can be
    /// decided without waiting to read it back (see the module docs).
    pub fn appended(&self, position: LogPosition, commit: &Commit) {
        if !self.covers(position.partition) {
            return;
        }
        let mut decisions = self.shared.decisions();
        decisions.appended(position, commit);
        self.shared.publish(&decisions, [position.partition]);
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

    /// Waits until the tail has decided the record at `position`.
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

    /// The next offset to decide per partition.
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
        self.shared.decisions().waiters.remove(&self.commit_id);
    }
}

async fn run(
    mut reader: LogReader,
    ends: Vec<(i32, i64)>,
    name: &'static str,
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
            let position = record.position();
            // An own commit decided already is not decoded a second time.
            if shared.decisions().is_decided(position) {
                continue;
            }
            let decoded = record.decode();
            let mut decisions = shared.decisions();
            if decisions.read(position, decoded) {
                shared.publish(&decisions, [position.partition]);
            }
        }
    }
}

/// Appends commits and confirms each once the tail has decided it in log order: the writer's half
/// of the arbitration rule. A command is answered only with a [`Confirmation`] from here.
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

    /// Appends `commit`, then waits until the tail has decided it (at once when every earlier
    /// record of its partition is decided, else once the reader got there) and returns where it
    /// landed and whether it won ([`Verdict::Accepted`]) or lost its race.
    pub async fn append(&self, commit: &Commit) -> Result<Confirmation> {
        let partition = self.appender.partition_of(commit.user_id().as_str());
        if !self.tail.covers(partition) {
            return Err(Error::PartitionNotTailed(partition));
        }
        let started = Instant::now();
        let pending = self.tail.expect(commit.commit_id);
        let position = self.appender.append(commit).await?;
        self.tail.appended(position, commit);
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

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::envelope::Cause;
    use crate::events::{EventPayload, TaskUpdated};
    use crate::ids::{Actor, UserId};

    /// Records every decision in order.
    #[derive(Clone, Default)]
    struct Decided(Arc<Mutex<Vec<(i64, Uuid, Verdict)>>>);

    impl TailSink for Decided {
        fn on_commit(&mut self, position: LogPosition, commit: &Commit, verdict: Verdict) {
            self.0
                .lock()
                .unwrap()
                .push((position.offset, commit.commit_id, verdict));
        }
    }

    impl Decided {
        fn offsets(&self) -> Vec<i64> {
            self.0.lock().unwrap().iter().map(|(o, _, _)| *o).collect()
        }

        fn verdict_of(&self, commit: &Commit) -> Option<Verdict> {
            let decided = self.0.lock().unwrap();
            let mut of = decided.iter().filter(|(_, id, _)| *id == commit.commit_id);
            let first = of.next().map(|(_, _, v)| *v);
            assert!(of.next().is_none(), "decided twice");
            first
        }
    }

    fn commit(aggregate: Uuid, version: u64) -> Commit {
        let user = UserId::parse("alice").unwrap();
        let cause = Cause {
            user_id: user,
            actor: Actor::User,
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            occurred_at: Utc::now(),
        };
        let event = cause.event(
            aggregate,
            version,
            EventPayload::TaskUpdated(TaskUpdated::default()),
        );
        Commit::new(Uuid::now_v7(), vec![event], None).unwrap()
    }

    fn at(offset: i64) -> LogPosition {
        LogPosition {
            partition: 0,
            offset,
        }
    }

    /// Decisions of partition 0 starting at `start` (None: unknown until a record is read).
    fn decisions(start: Option<i64>) -> (Decisions, Decided) {
        let sink = Decided::default();
        let next = start.map(|s| (0, s)).into_iter().collect();
        let decisions = Decisions::new("test", Arbiter::new(), Box::new(sink.clone()), next);
        (decisions, sink)
    }

    fn wait_for(decisions: &mut Decisions, commit: &Commit) -> oneshot::Receiver<Confirmation> {
        let (tx, rx) = oneshot::channel();
        decisions.waiters.insert(commit.commit_id, tx);
        rx
    }

    #[test]
    fn an_own_commit_right_after_the_decided_records_is_decided_at_once_and_not_again_when_read() {
        let (mut d, sink) = decisions(Some(0));
        let aggregate = Uuid::now_v7();
        let first = commit(aggregate, 1);
        let mut confirmed = wait_for(&mut d, &first);

        d.appended(at(0), &first);

        assert_eq!(
            confirmed.try_recv().unwrap(),
            Confirmation {
                position: at(0),
                verdict: Verdict::Accepted
            }
        );
        assert!(d.is_decided(at(0)));
        assert!(
            !d.read(at(0), Ok(first.clone())),
            "the read-back is skipped"
        );
        assert_eq!(sink.verdict_of(&first), Some(Verdict::Accepted));
    }

    #[test]
    fn an_own_commit_after_unread_records_waits_for_them_and_loses_to_an_earlier_writer() {
        let (mut d, sink) = decisions(Some(5));
        let aggregate = Uuid::now_v7();
        let created = commit(aggregate, 1);
        let theirs = commit(aggregate, 2);
        let ours = commit(aggregate, 2);
        let mut confirmed = wait_for(&mut d, &ours);
        assert!(d.read(at(5), Ok(created)));

        // Acknowledged at 7 while another writer's 6 is unread: nothing can be decided yet.
        d.appended(at(7), &ours);
        assert!(confirmed.try_recv().is_err());
        assert_eq!(sink.offsets(), [5]);

        // Reading 6 decides it, then ours right after it, in log order.
        assert!(d.read(at(6), Ok(theirs.clone())));
        assert_eq!(sink.offsets(), [5, 6, 7]);
        let lost = Verdict::LostRace {
            expected: 1,
            current: 2,
        };
        assert_eq!(
            confirmed.try_recv().unwrap(),
            Confirmation {
                position: at(7),
                verdict: lost
            }
        );
        assert_eq!(sink.verdict_of(&theirs), Some(Verdict::Accepted));
        assert!(!d.read(at(7), Ok(ours.clone())));
        assert_eq!(sink.verdict_of(&ours), Some(lost));
    }

    #[test]
    fn a_commit_read_before_its_acknowledgement_is_decided_once() {
        let (mut d, sink) = decisions(Some(0));
        let c = commit(Uuid::now_v7(), 1);
        assert!(d.read(at(0), Ok(c.clone())));
        d.appended(at(0), &c);
        assert_eq!(sink.offsets(), [0]);
        assert_eq!(sink.verdict_of(&c), Some(Verdict::Accepted));
    }

    #[test]
    fn where_the_start_is_unknown_own_commits_wait_for_the_first_record_read() {
        let (mut d, sink) = decisions(None);
        let aggregate = Uuid::now_v7();
        let (first, second) = (commit(aggregate, 1), commit(aggregate, 2));
        d.appended(at(10), &second);
        assert_eq!(sink.offsets(), Vec::<i64>::new());
        assert!(d.read(at(9), Ok(first)));
        assert_eq!(sink.offsets(), [9, 10]);
        assert_eq!(sink.verdict_of(&second), Some(Verdict::Accepted));
    }

    #[test]
    fn an_undecodable_record_is_passed_over_and_the_next_own_commit_decided() {
        let (mut d, sink) = decisions(Some(0));
        let c = commit(Uuid::now_v7(), 1);
        d.appended(at(1), &c);
        let bad = Error::TailStopped("not a commit".into());
        assert!(d.read(at(0), Err(bad)));
        assert_eq!(sink.offsets(), [1]);
        assert!(d.is_decided(at(1)));
    }
}
