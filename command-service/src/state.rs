//! The in-memory state of the aggregates in this process's partitions, fed by the log tail.
//!
//! Only accepted commits change it (the arbitration rule), so it equals what every other reader
//! of the log derives. Idempotency records travel in the commits, so a retry is recognised after a
//! restart or on another replica.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use event_store::{Commit, Event, LogPosition, TailSink, UserId, Verdict};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Task;
use crate::view::TaskView;

/// How many recent events per task are kept to tell a client what changed since its version.
pub const RECENT_EVENTS: usize = 50;

/// A task and its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEntry {
    pub user: UserId,
    pub task: Task,
    /// Where its last accepted commit is in the log.
    pub position: LogPosition,
    /// Its most recent events, oldest first.
    pub recent: VecDeque<Event>,
}

/// The outcome of a request that carried an `Idempotency-Key`, as recorded from its commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotentOutcome {
    pub request_hash: String,
    pub task_id: Uuid,
    pub version: u64,
    pub position: LogPosition,
    /// Whether the commit created the task (the replay answers `201` again).
    pub created: bool,
    /// The task as it was right after the commit.
    pub view: TaskView,
}

/// Per-user bookkeeping.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UserEntry {
    /// The highest task number used so far.
    pub last_number: u64,
    pub by_number: HashMap<u64, Uuid>,
    pub idempotency: HashMap<String, IdempotentOutcome>,
}

/// Everything the command side knows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Aggregates {
    pub tasks: HashMap<Uuid, TaskEntry>,
    pub users: HashMap<UserId, UserEntry>,
    /// Reminder id → task id.
    pub reminders: HashMap<Uuid, Uuid>,
    /// The next offset to apply per partition: every record below it is in the state (or was
    /// judged a lost race, or is not a commit), so a snapshot taken now is valid from there.
    pub applied: HashMap<i32, i64>,
}

impl Aggregates {
    /// Folds an accepted commit in.
    pub fn apply(&mut self, position: LogPosition, commit: &Commit) {
        let user = commit.user_id().clone();
        let task_id = commit.aggregate_id();
        let entry = self.tasks.entry(task_id).or_insert_with(|| TaskEntry {
            user: user.clone(),
            task: Task::default(),
            position,
            recent: VecDeque::new(),
        });
        let created = !entry.task.exists();
        for event in commit.events() {
            entry.task.apply(event);
            if entry.recent.len() == RECENT_EVENTS {
                entry.recent.pop_front();
            }
            entry.recent.push_back(event.clone());
            match &event.payload {
                event_store::EventPayload::ReminderAdded(r) => {
                    self.reminders.insert(r.reminder_id, task_id);
                }
                event_store::EventPayload::ReminderRemoved(r) => {
                    self.reminders.remove(&r.reminder_id);
                }
                _ => {}
            }
        }
        entry.position = position;
        let user_entry = self.users.entry(user).or_default();
        if created {
            user_entry.last_number = user_entry.last_number.max(entry.task.number);
            user_entry.by_number.insert(entry.task.number, task_id);
        }
        if let Some(idempotency) = &commit.idempotency {
            user_entry.idempotency.insert(
                idempotency.key.clone(),
                IdempotentOutcome {
                    request_hash: idempotency.request_hash.clone(),
                    task_id,
                    version: entry.task.version,
                    position,
                    created,
                    view: TaskView::from(&entry.task),
                },
            );
        }
    }

    /// The user's task with this id, if it is theirs.
    pub fn task_of(&self, user: &UserId, id: Uuid) -> Option<&TaskEntry> {
        self.tasks.get(&id).filter(|entry| &entry.user == user)
    }

    /// The user's task with this per-user number.
    pub fn task_by_number(&self, user: &UserId, number: u64) -> Option<&TaskEntry> {
        let id = self.users.get(user)?.by_number.get(&number)?;
        self.task_of(user, *id)
    }
}

/// Shared handle to the state; locks are held only for short, synchronous sections.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<RwLock<Aggregates>>);

impl SharedState {
    /// A handle to `state` (for example restored from snapshots).
    pub fn new(state: Aggregates) -> Self {
        Self(Arc::new(RwLock::new(state)))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Aggregates> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Aggregates> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TailSink for SharedState {
    fn on_commit(&mut self, position: LogPosition, commit: &Commit, verdict: Verdict) {
        let mut state = self.write();
        if verdict.is_accepted() {
            state.apply(position, commit);
        }
        state
            .applied
            .insert(position.partition, position.offset + 1);
    }

    fn on_undecodable(&mut self, position: LogPosition, error: &event_store::Error) {
        tracing::error!(%position, %error, "undecodable record in the log; skipped");
        self.write()
            .applied
            .insert(position.partition, position.offset + 1);
    }
}
