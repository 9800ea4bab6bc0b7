//! Snapshots of the command side's state, one per partition, kept in Postgres so that a start
//! reads only the end of the log instead of all of it.
//!
//! A snapshot is a cache, never a source of truth: it holds the state of one partition's users as
//! of a log offset (every record below it applied), and a start that cannot use it (no database,
//! another snapshot format, an offset the topic does not have) reads that partition from the
//! beginning instead. Because every reader applies the same arbitration rule, the state restored
//! from a snapshot and then tailed from its offset equals the state rebuilt from offset 0.
//!
//! Per task, a snapshot keeps only its last [`RECENT_IN_SNAPSHOT`] events for the `412` answer's
//! `events_since` (the live state keeps [`RECENT_EVENTS`]); older history is marked incomplete
//! there, as it is for any task with more events than are kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Weak};
use std::time::Duration;

use anyhow::Context;
use event_store::partition::partition_for;
use event_store::{
    Arbiter, LogConfig, LogPosition, LogTail, RawEnvelope, StartAt, UserId, registry,
};
use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::Task;
use crate::state::{Aggregates, IdempotentOutcome, RECENT_EVENTS, SharedState, TaskEntry};

/// The shape of the stored state; a snapshot of another format is not used.
pub const FORMAT: i32 = 1;

/// Events per task a snapshot keeps for `412` answers.
pub const RECENT_IN_SNAPSHOT: usize = 10;
const _: () = assert!(RECENT_IN_SNAPSHOT <= RECENT_EVENTS);

static SNAPSHOTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "taskstream_command_snapshots_total",
        "Partition snapshots of the command state, by outcome (saved, failed, restored, rejected)",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// When snapshots are taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotSettings {
    /// Off: every start reads the whole log, and no database is used.
    pub enabled: bool,
    /// How often partitions are checked for a new snapshot.
    pub interval_secs: u64,
    /// Records a partition must have advanced since its last snapshot to get a new one.
    pub min_records: i64,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 300,
            min_records: 10_000,
        }
    }
}

/// The stored state of one partition's users.
#[derive(Debug, Serialize, Deserialize)]
struct PartitionState {
    users: Vec<UserSnapshot>,
    tasks: Vec<TaskSnapshot>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserSnapshot {
    user: UserId,
    last_number: u64,
    idempotency: BTreeMap<String, IdempotentOutcome>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TaskSnapshot {
    user: UserId,
    task: Task,
    position: LogPosition,
    /// The latest events, oldest first, as stored in the log (decoded through the upcasters).
    recent: Vec<RawEnvelope>,
}

/// A copy of one partition's state, taken under the state's lock and encoded after it.
struct Copied {
    next_offset: i64,
    users: Vec<(UserId, u64, HashMap<String, IdempotentOutcome>)>,
    tasks: Vec<TaskEntry>,
}

/// Copies `partition`'s users and tasks (each with its last [`RECENT_IN_SNAPSHOT`] events).
fn copy(state: &Aggregates, partition: i32, partitions: i32) -> Option<Copied> {
    let next_offset = *state.applied.get(&partition)?;
    let mut copied = Copied {
        next_offset,
        users: Vec::new(),
        tasks: Vec::new(),
    };
    for (user, entry) in &state.users {
        if partition_for(user.as_str(), partitions) != partition {
            continue;
        }
        copied
            .users
            .push((user.clone(), entry.last_number, entry.idempotency.clone()));
        for id in entry.by_number.values() {
            let Some(task) = state.tasks.get(id) else {
                continue;
            };
            let skip = task.recent.len().saturating_sub(RECENT_IN_SNAPSHOT);
            copied.tasks.push(TaskEntry {
                user: task.user.clone(),
                task: task.task.clone(),
                position: task.position,
                recent: task.recent.iter().skip(skip).cloned().collect(),
            });
        }
    }
    Some(copied)
}

fn encode(copied: Copied) -> (i64, Vec<u8>) {
    let snapshot = PartitionState {
        users: copied
            .users
            .into_iter()
            .map(|(user, last_number, idempotency)| UserSnapshot {
                user,
                last_number,
                idempotency: idempotency.into_iter().collect(),
            })
            .collect(),
        tasks: copied
            .tasks
            .into_iter()
            .map(|t| TaskSnapshot {
                recent: t.recent.iter().map(registry::encode).collect(),
                user: t.user,
                task: t.task,
                position: t.position,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&snapshot).expect("the state serializes");
    (copied.next_offset, bytes)
}

/// A partition's snapshot, decoded and ready to be added to the state.
#[derive(Debug)]
struct Decoded {
    partition: i32,
    next_offset: i64,
    users: Vec<UserSnapshot>,
    tasks: Vec<TaskEntry>,
}

/// Decodes a snapshot of `partition` taken at `next_offset` (CPU only: partitions decode in
/// parallel).
fn decode(partition: i32, next_offset: i64, bytes: &[u8]) -> anyhow::Result<Decoded> {
    let snapshot: PartitionState =
        serde_json::from_slice(bytes).context("decode the partition snapshot")?;
    let mut tasks = Vec::with_capacity(snapshot.tasks.len());
    for t in snapshot.tasks {
        let recent = t
            .recent
            .into_iter()
            .map(registry::decode)
            .collect::<Result<_, _>>()
            .with_context(|| format!("decode the recent events of task {}", t.task.id))?;
        tasks.push(TaskEntry {
            user: t.user,
            task: t.task,
            position: t.position,
            recent,
        });
    }
    Ok(Decoded {
        partition,
        next_offset,
        users: snapshot.users,
        tasks,
    })
}

/// Adds a decoded partition snapshot to `state` and `arbiter`.
fn add(state: &mut Aggregates, arbiter: &mut Arbiter, decoded: Decoded) {
    for u in decoded.users {
        let entry = state.users.entry(u.user).or_default();
        entry.last_number = u.last_number;
        entry.idempotency = u.idempotency.into_iter().collect();
    }
    for entry in decoded.tasks {
        let id = entry.task.id;
        arbiter.restore(id, entry.task.version);
        for reminder in entry.task.reminders.keys() {
            state.reminders.insert(*reminder, id);
        }
        state
            .users
            .entry(entry.user.clone())
            .or_default()
            .by_number
            .insert(entry.task.number, id);
        state.tasks.insert(id, entry);
    }
    state.applied.insert(decoded.partition, decoded.next_offset);
}

/// Decodes every `(partition, next offset, bytes)` on threads of their own, off the async
/// runtime, spread over the machine's cores.
async fn decode_all(snapshots: Vec<(i32, i64, Vec<u8>)>) -> Vec<(i32, anyhow::Result<Decoded>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let decoded = tokio::task::spawn_blocking(move || {
        let mut groups: Vec<Vec<(i32, i64, Vec<u8>)>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, snapshot) in snapshots.into_iter().enumerate() {
            groups[i % threads].push(snapshot);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        group
                            .into_iter()
                            .map(|(p, o, bytes)| (p, decode(p, o, &bytes)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("decoding a snapshot does not panic"))
                .collect::<Vec<_>>()
        })
    })
    .await;
    decoded.unwrap_or_else(|error| {
        tracing::warn!(%error, "decoding the snapshots failed");
        Vec::new()
    })
}

/// The snapshots of one topic in Postgres.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    pool: PgPool,
    topic: String,
}

impl SnapshotStore {
    /// Applies the migrations (the table of snapshots) and returns the store of `topic`.
    pub async fn open(pool: PgPool, topic: &str) -> anyhow::Result<Self> {
        migrations::run(&pool)
            .await
            .context("apply the database migrations")?;
        Ok(Self {
            pool,
            topic: topic.to_owned(),
        })
    }

    /// Every partition's snapshot of this format: partition → (next offset, state).
    async fn load(&self) -> anyhow::Result<HashMap<i32, (i64, Vec<u8>)>> {
        let rows: Vec<(i32, i64, Vec<u8>)> = sqlx::query_as(
            r#"SELECT "partition", next_offset, state FROM command_snapshots
               WHERE topic = $1 AND format = $2"#,
        )
        .bind(&self.topic)
        .bind(FORMAT)
        .fetch_all(&self.pool)
        .await
        .context("read the command snapshots")?;
        Ok(rows.into_iter().map(|(p, o, s)| (p, (o, s))).collect())
    }

    /// Stores a partition's snapshot unless a later one is stored already (another replica).
    async fn save(&self, partition: i32, next_offset: i64, state: &[u8]) -> anyhow::Result<()> {
        sqlx::query(
            r#"INSERT INTO command_snapshots (topic, "partition", next_offset, format, state)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (topic, "partition") DO UPDATE
               SET next_offset = EXCLUDED.next_offset, format = EXCLUDED.format,
                   state = EXCLUDED.state, taken_at = now()
               WHERE command_snapshots.next_offset < EXCLUDED.next_offset
                  OR command_snapshots.format <> EXCLUDED.format"#,
        )
        .bind(&self.topic)
        .bind(partition)
        .bind(next_offset)
        .bind(FORMAT)
        .bind(state)
        .execute(&self.pool)
        .await
        .context("store a command snapshot")?;
        Ok(())
    }
}

/// Where the state of the `owned` partitions starts: restored from the stored snapshots that fit
/// the log as it is now, and the other partitions from the beginning. Whatever goes wrong here
/// only makes the start read more of the log.
pub async fn restore_all(
    store: &SnapshotStore,
    log: &LogConfig,
    owned: &[i32],
) -> (Aggregates, Arbiter, Vec<(i32, StartAt)>) {
    let mut state = Aggregates::default();
    let mut arbiter = Arbiter::new();
    let mut starts: Vec<_> = owned.iter().map(|p| (*p, StartAt::Beginning)).collect();
    let loaded = match store.load().await {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "no snapshots; reading the whole log"
            );
            return (state, arbiter, starts);
        }
    };
    if loaded.is_empty() {
        return (state, arbiter, starts);
    }
    let marks = match event_store::log::admin::watermarks(log, &log.topic).await {
        Ok(marks) => marks,
        Err(error) => {
            tracing::warn!(%error, "cannot check the snapshots against the log; reading all of it");
            return (state, arbiter, starts);
        }
    };
    let mut fitting = Vec::new();
    for (partition, (next_offset, bytes)) in loaded {
        if !owned.contains(&partition) {
            continue;
        }
        let fits = marks
            .iter()
            .any(|(p, low, high)| *p == partition && (*low..=*high).contains(&next_offset));
        if fits {
            fitting.push((partition, next_offset, bytes));
        } else {
            reject(
                partition,
                &anyhow::anyhow!(
                    "taken at offset {next_offset}, which this topic's partition does not have"
                ),
            );
        }
    }
    for (partition, decoded) in decode_all(fitting).await {
        match decoded {
            Ok(decoded) => {
                let next_offset = decoded.next_offset;
                add(&mut state, &mut arbiter, decoded);
                SNAPSHOTS.with_label_values(&["restored"]).inc();
                if let Some((_, start)) = starts.iter_mut().find(|(p, _)| *p == partition) {
                    *start = StartAt::Offset(next_offset);
                }
            }
            Err(error) => reject(partition, &error),
        }
    }
    tracing::info!(
        restored = starts
            .iter()
            .filter(|(_, s)| matches!(s, StartAt::Offset(_)))
            .count(),
        partitions = owned.len(),
        tasks = state.tasks.len(),
        "state restored from snapshots"
    );
    (state, arbiter, starts)
}

/// Counts and logs a snapshot that is not used: its partition is read from the beginning.
fn reject(partition: i32, error: &anyhow::Error) {
    SNAPSHOTS.with_label_values(&["rejected"]).inc();
    tracing::warn!(
        partition,
        error = format!("{error:#}"),
        "snapshot not used; reading the partition from the beginning"
    );
}

/// Takes a snapshot of every `owned` partition (of the topic's `partitions`) that advanced by at
/// least `min_records` since its last one (`saved`: where each partition's last one was taken),
/// now and then every `interval_secs`, as long as the tail that feeds `state` is `alive`.
pub async fn run(
    store: SnapshotStore,
    state: SharedState,
    (owned, partitions): (Vec<i32>, i32),
    settings: SnapshotSettings,
    mut saved: HashMap<i32, i64>,
    alive: Weak<LogTail>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(settings.interval_secs.max(1)));
    loop {
        interval.tick().await;
        if alive.strong_count() == 0 {
            return;
        }
        for &partition in &owned {
            let last = saved.get(&partition).copied().unwrap_or(0);
            let due = state
                .read()
                .applied
                .get(&partition)
                .is_some_and(|next| next - last >= settings.min_records);
            if !due {
                continue;
            }
            let captured = {
                let state = state.clone();
                // Only the copy holds the lock that applying records needs; encoding does not.
                tokio::task::spawn_blocking(move || {
                    let copied = copy(&state.read(), partition, partitions);
                    copied.map(encode)
                })
                .await
            };
            let Ok(Some((next_offset, bytes))) = captured else {
                continue;
            };
            match store.save(partition, next_offset, &bytes).await {
                Ok(()) => {
                    SNAPSHOTS.with_label_values(&["saved"]).inc();
                    tracing::info!(
                        partition,
                        next_offset,
                        bytes = bytes.len(),
                        "command state snapshot saved"
                    );
                    saved.insert(partition, next_offset);
                }
                Err(error) => {
                    SNAPSHOTS.with_label_values(&["failed"]).inc();
                    tracing::warn!(
                        partition,
                        error = format!("{error:#}"),
                        "command state snapshot not saved; trying again later"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use event_store::events::{
        EventPayload, Priority, ReminderAdded, ReminderTime, TagChanged, TaskCreated, TaskUpdated,
    };
    use event_store::{Actor, Cause, Commit, Idempotency};
    use uuid::Uuid;

    use super::*;

    const PARTITIONS: i32 = 3;

    /// The state of `partition`'s users and the offset it is valid at, encoded; `None` before
    /// the partition has been read at all.
    fn capture(state: &Aggregates, partition: i32, partitions: i32) -> Option<(i64, Vec<u8>)> {
        copy(state, partition, partitions).map(encode)
    }

    /// Adds a snapshot of `partition` taken at `next_offset` to `state` and `arbiter`. Nothing is
    /// added unless all of it decodes.
    fn restore(
        state: &mut Aggregates,
        arbiter: &mut Arbiter,
        partition: i32,
        next_offset: i64,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        add(state, arbiter, decode(partition, next_offset, bytes)?);
        Ok(())
    }

    fn cause(user: &UserId) -> Cause {
        Cause {
            user_id: user.clone(),
            actor: Actor::User,
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            occurred_at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
        }
    }

    fn created(number: u64, title: &str) -> EventPayload {
        EventPayload::TaskCreated(TaskCreated {
            task_number: number,
            title: title.into(),
            description: None,
            priority: Priority::High,
            due: None,
            tags: vec!["home".into()],
            recurrence: None,
            occurrence_of: None,
        })
    }

    /// Twelve users with two tasks each; one task of each with 14 further events (more than a
    /// snapshot keeps), a reminder, a tag and an idempotency key.
    fn state() -> Aggregates {
        let mut state = Aggregates::default();
        let mut offsets: HashMap<i32, i64> = HashMap::new();
        let mut append = |state: &mut Aggregates, commit: Commit| {
            let partition = partition_for(commit.user_id().as_str(), PARTITIONS);
            let offset = offsets.entry(partition).or_default();
            state.apply(
                LogPosition {
                    partition,
                    offset: *offset,
                },
                &commit,
            );
            *offset += 1;
            state.applied.insert(partition, *offset);
        };
        for u in 0..12 {
            let user = UserId::parse(format!("user-{u}")).unwrap();
            let busy = Uuid::now_v7();
            let quiet = Uuid::now_v7();
            for (id, number) in [(busy, 1), (quiet, 2)] {
                let event = cause(&user).event(id, 1, created(number, &format!("task {number}")));
                append(
                    &mut state,
                    Commit::new(Uuid::now_v7(), vec![event], None).unwrap(),
                );
            }
            let mut payloads = vec![
                EventPayload::ReminderAdded(ReminderAdded {
                    reminder_id: Uuid::now_v7(),
                    time: ReminderTime::BeforeDue { seconds: 600 },
                }),
                EventPayload::TagAdded(TagChanged { tag: "work".into() }),
            ];
            payloads.extend((0..12).map(|i| {
                EventPayload::TaskUpdated(TaskUpdated {
                    title: Some(format!("edit {i}")),
                    ..TaskUpdated::default()
                })
            }));
            for (i, payload) in payloads.into_iter().enumerate() {
                let event = cause(&user).event(busy, 2 + i as u64, payload);
                let idempotency = (i == 0).then(|| Idempotency {
                    key: format!("key-{u}"),
                    request_hash: "hash".into(),
                });
                append(
                    &mut state,
                    Commit::new(Uuid::now_v7(), vec![event], idempotency).unwrap(),
                );
            }
        }
        state
    }

    fn restore_every_partition(from: &Aggregates) -> (Aggregates, Arbiter) {
        let mut restored = Aggregates::default();
        let mut arbiter = Arbiter::new();
        for partition in 0..PARTITIONS {
            let (next, bytes) = capture(from, partition, PARTITIONS).expect("partition was read");
            restore(&mut restored, &mut arbiter, partition, next, &bytes).expect("restores");
        }
        (restored, arbiter)
    }

    #[test]
    fn every_partitions_snapshot_restores_the_state_with_the_latest_events_of_each_task() {
        let state = state();
        assert!(
            (0..PARTITIONS).all(|p| state.applied.contains_key(&p)),
            "every partition used"
        );

        let (restored, arbiter) = restore_every_partition(&state);

        let mut expected = state.clone();
        for entry in expected.tasks.values_mut() {
            while entry.recent.len() > RECENT_IN_SNAPSHOT {
                entry.recent.pop_front();
            }
        }
        assert_eq!(restored, expected);
        for (id, entry) in &state.tasks {
            assert_eq!(arbiter.version(*id), entry.task.version);
        }
        assert!(
            state
                .tasks
                .values()
                .any(|t| t.recent.len() > RECENT_IN_SNAPSHOT)
        );
    }

    #[test]
    fn a_partition_never_read_has_no_snapshot() {
        assert!(capture(&Aggregates::default(), 0, PARTITIONS).is_none());
    }

    #[test]
    fn a_damaged_snapshot_adds_nothing() {
        let state = state();
        let (next, mut bytes) = capture(&state, 0, PARTITIONS).unwrap();
        let mut restored = Aggregates::default();
        let mut arbiter = Arbiter::new();
        assert!(restore(&mut restored, &mut arbiter, 0, next, b"{not json").is_err());
        // A recent event of a type no registry knows.
        let text = String::from_utf8(bytes.clone()).unwrap();
        bytes = text
            .replacen("task.updated", "task.teleported", 1)
            .into_bytes();
        assert!(restore(&mut restored, &mut arbiter, 0, next, &bytes).is_err());
        assert_eq!(restored, Aggregates::default());
        assert_eq!(arbiter.aggregates(), 0);
    }
}
