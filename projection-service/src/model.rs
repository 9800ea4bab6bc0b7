//! The pure core of the read side: how events change the read model rows, and what one batch of
//! records changes in all. No I/O here, so every rule is tested without Postgres or a broker.
//!
//! [`plan`] takes a batch of records in log order, the current rows of the tasks they touch and
//! the set of event ids not yet processed, and returns a [`Plan`]: the final rows to write, the
//! audit trail, notifications, tag count changes, lost races and dead letters.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use event_store::events::{Due, EventPayload, OccurrenceOf, Recurrence, ReminderTime, TagChanged};
use event_store::{Arbiter, Commit, Event, LogPosition, Verdict, registry};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A task as the `tasks` table holds it. Field names are the column names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub task_id: Uuid,
    pub user_id: String,
    pub task_number: i64,
    pub title: String,
    pub description: Option<String>,
    /// 0 low … 3 urgent.
    pub priority: i16,
    pub due: Option<Due>,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub tag_keys: Vec<String>,
    pub recurrence: Option<Recurrence>,
    pub occurrence_of: Option<OccurrenceOf>,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The reminders the task shows (see [`shown_reminders`]); derived from its
    /// [`ReminderRow`]s whenever the task is written.
    #[serde(default)]
    pub reminders: Vec<TaskReminder>,
    pub partition: i32,
    pub offset: i64,
}

/// A reminder as a task shows it (`tasks.reminders`): the shape query-service answers with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskReminder {
    pub id: Uuid,
    pub time: ReminderTime,
    pub remind_at: Option<DateTime<Utc>>,
    pub status: String,
    pub fired: bool,
}

/// The reminders a task shows: those not removed from it, oldest first.
pub fn shown_reminders(reminders: &BTreeMap<Uuid, ReminderRow>) -> Vec<TaskReminder> {
    let mut shown: Vec<&ReminderRow> = reminders
        .values()
        .filter(|r| r.removed_at.is_none())
        .collect();
    shown.sort_by_key(|r| (r.created_at, r.reminder_id));
    shown
        .into_iter()
        .map(|r| TaskReminder {
            id: r.reminder_id,
            time: r.time.clone(),
            remind_at: r.remind_at,
            status: r.status.clone(),
            fired: r.status == FIRED,
        })
        .collect()
}

pub const OPEN: &str = "open";
pub const COMPLETED: &str = "completed";
pub const DELETED: &str = "deleted";

pub const PENDING: &str = "pending";
pub const FIRED: &str = "fired";
pub const CANCELLED: &str = "cancelled";

/// A reminder as the `reminders` table holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReminderRow {
    pub reminder_id: Uuid,
    pub user_id: String,
    pub task_id: Uuid,
    pub time: ReminderTime,
    pub remind_at: Option<DateTime<Utc>>,
    pub status: String,
    pub fired_at: Option<DateTime<Utc>>,
    pub removed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A task with its reminders: the unit the projector loads, changes and writes back.
#[derive(Clone, Debug, PartialEq)]
pub struct Projected {
    pub task: TaskRow,
    pub reminders: BTreeMap<Uuid, ReminderRow>,
}

/// A row of `notifications`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationRow {
    pub notification_id: Uuid,
    pub user_id: String,
    pub kind: String,
    pub task_id: Uuid,
    pub reminder_id: Option<Uuid>,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub partition: i32,
    pub offset: i64,
}

/// A row of `audit_events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub event_id: Uuid,
    pub user_id: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub commit_id: Uuid,
    pub payload: serde_json::Value,
    pub partition: i32,
    pub offset: i64,
}

impl AuditRow {
    /// The audit row of an accepted event, its payload at the current schema version.
    pub fn new(commit_id: Uuid, event: &Event, position: LogPosition) -> Self {
        let raw = registry::encode(event);
        Self {
            event_id: event.event_id,
            user_id: event.user_id.as_str().to_owned(),
            aggregate_type: raw.aggregate_type,
            aggregate_id: event.aggregate_id,
            aggregate_version: to_i64(event.aggregate_version),
            event_type: raw.event_type,
            schema_version: i32::try_from(raw.schema_version).unwrap_or(i32::MAX),
            occurred_at: event.occurred_at,
            actor: event.actor.as_str().to_owned(),
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            commit_id,
            payload: raw.payload,
            partition: position.partition,
            offset: position.offset,
        }
    }
}

/// A change to one user's tag counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagDelta {
    pub user_id: String,
    pub tag_key: String,
    /// The spelling to record if the tag is new.
    pub tag: String,
    pub task_count: i32,
    pub open_count: i32,
}

/// A commit the arbitration rule skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostRace {
    pub partition: i32,
    pub offset: i64,
    pub commit_id: Uuid,
    pub aggregate_id: Uuid,
    pub expected_version: i64,
    pub current_version: i64,
}

/// A record that could not be decoded or applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub position: LogPosition,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub error: String,
}

/// One record of a batch, as read.
#[derive(Clone, Debug)]
pub struct Input {
    pub position: LogPosition,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// The decoded commit, or why it could not be decoded.
    pub commit: Result<Commit, String>,
}

impl Input {
    pub fn new(position: LogPosition, key: Option<String>, payload: Vec<u8>) -> Self {
        let commit = decode(&payload);
        Self {
            position,
            key,
            payload,
            commit,
        }
    }
}

/// Decodes a record as the read models hold it. Postgres text cannot hold U+0000, so a NUL in
/// any string of the record becomes U+FFFD (the command side refuses control characters, but the
/// log may hold records from before that, or from other writers); all else is as in the log.
pub fn decode(payload: &[u8]) -> Result<Commit, String> {
    if memchr::memmem::find(payload, br"\u0000").is_none() {
        return Commit::decode(payload).map_err(|e| e.to_string());
    }
    let mut value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| event_store::error::DecodeError::Json(e.to_string()).to_string())?;
    replace_nul(&mut value);
    Commit::decode(&serde_json::to_vec(&value).unwrap_or_default()).map_err(|e| e.to_string())
}

fn replace_nul(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        serde_json::Value::Array(items) => items.iter_mut().for_each(replace_nul),
        serde_json::Value::Object(members) => members.values_mut().for_each(replace_nul),
        _ => {}
    }
}

/// Counts of what a batch did, for metrics and progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub commits: u64,
    pub events: u64,
    pub duplicates: u64,
    pub lost_races: u64,
    pub dead_letters: u64,
    /// Accepted events by type.
    pub by_type: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// Adds a later batch's counts.
    pub fn absorb(&mut self, later: Tally) {
        self.commits += later.commits;
        self.events += later.events;
        self.duplicates += later.duplicates;
        self.lost_races += later.lost_races;
        self.dead_letters += later.dead_letters;
        for (event_type, n) in later.by_type {
            *self.by_type.entry(event_type).or_default() += n;
        }
    }
}

/// Everything one batch changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Final state of every task the batch changed.
    pub tasks: Vec<TaskRow>,
    /// Final state of every reminder of those tasks.
    pub reminders: Vec<ReminderRow>,
    pub notifications: Vec<NotificationRow>,
    pub audit: Vec<AuditRow>,
    pub tags: Vec<TagDelta>,
    pub lost_races: Vec<LostRace>,
    pub dead_letters: Vec<DeadLetter>,
    /// Event ids of decoded commits that could not be applied: they must not count as
    /// processed, so a re-drive can apply them.
    pub released: Vec<Uuid>,
    /// The next offset to read per partition after this batch.
    pub offsets: BTreeMap<i32, i64>,
    pub tally: Tally,
}

/// Why an accepted commit cannot be applied to the read models.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("event {0} on task {1} that does not exist")]
    NoSuchTask(&'static str, Uuid),
    #[error("task.created for task {0} that already exists")]
    AlreadyExists(Uuid),
}

/// Applies one accepted event to a task (`None` until created).
pub fn apply(
    slot: &mut Option<Projected>,
    event: &Event,
    position: LogPosition,
    notifications: &mut Vec<NotificationRow>,
) -> Result<(), ApplyError> {
    let at = event.occurred_at;
    if let EventPayload::TaskCreated(created) = &event.payload {
        if slot.is_some() {
            return Err(ApplyError::AlreadyExists(event.aggregate_id));
        }
        let mut task = TaskRow {
            task_id: event.aggregate_id,
            user_id: event.user_id.as_str().to_owned(),
            task_number: to_i64(created.task_number),
            title: created.title.clone(),
            description: created.description.clone(),
            priority: created.priority.rank(),
            due: created.due.clone(),
            due_at: None,
            tags: Vec::new(),
            tag_keys: Vec::new(),
            recurrence: created.recurrence.clone(),
            occurrence_of: created.occurrence_of.clone(),
            status: OPEN.into(),
            version: 0,
            created_at: at,
            updated_at: at,
            completed_at: None,
            deleted_at: None,
            reminders: Vec::new(),
            partition: position.partition,
            offset: position.offset,
        };
        for tag in &created.tags {
            add_tag(&mut task, tag);
        }
        *slot = Some(Projected {
            task,
            reminders: BTreeMap::new(),
        });
    }
    let Some(projected) = slot.as_mut() else {
        return Err(ApplyError::NoSuchTask(
            event.event_type(),
            event.aggregate_id,
        ));
    };
    let task = &mut projected.task;
    task.version = to_i64(event.aggregate_version);
    task.updated_at = at;
    task.partition = position.partition;
    task.offset = position.offset;
    match &event.payload {
        EventPayload::TaskCreated(_) => {}
        EventPayload::TaskUpdated(updated) => {
            if let Some(title) = &updated.title {
                task.title = title.clone();
            }
            if let Some(description) = &updated.description {
                task.description = description.clone();
            }
            if let Some(priority) = updated.priority {
                task.priority = priority.rank();
            }
        }
        EventPayload::TaskCompleted(_) => {
            task.status = COMPLETED.into();
            task.completed_at = Some(at);
        }
        EventPayload::TaskReopened(_) => {
            task.status = OPEN.into();
            task.completed_at = None;
        }
        EventPayload::TaskDeleted(_) => {
            task.status = DELETED.into();
            task.deleted_at = Some(at);
        }
        EventPayload::TagAdded(TagChanged { tag }) => add_tag(task, tag),
        EventPayload::TagRemoved(TagChanged { tag }) => {
            let key = tag.to_lowercase();
            if let Some(i) = task.tag_keys.iter().position(|k| *k == key) {
                task.tag_keys.remove(i);
                task.tags.remove(i);
            }
        }
        EventPayload::DueSet(set) => task.due = Some(set.due.clone()),
        EventPayload::DueCleared(_) => task.due = None,
        EventPayload::RecurrenceSet(set) => task.recurrence = Some(set.recurrence.clone()),
        EventPayload::RecurrenceCleared(_) => task.recurrence = None,
        EventPayload::ReminderAdded(added) => {
            projected.reminders.insert(
                added.reminder_id,
                ReminderRow {
                    reminder_id: added.reminder_id,
                    user_id: task.user_id.clone(),
                    task_id: task.task_id,
                    time: added.time.clone(),
                    remind_at: None,
                    status: PENDING.into(),
                    fired_at: None,
                    removed_at: None,
                    created_at: at,
                    updated_at: at,
                },
            );
        }
        EventPayload::ReminderRemoved(removed) => {
            if let Some(reminder) = projected.reminders.get_mut(&removed.reminder_id) {
                reminder.removed_at = Some(at);
                reminder.updated_at = at;
            }
        }
        EventPayload::ReminderFired(fired) => {
            if let Some(reminder) = projected.reminders.get_mut(&fired.reminder_id) {
                reminder.fired_at = Some(at);
                reminder.updated_at = at;
            }
            notifications.push(NotificationRow {
                notification_id: event.event_id,
                user_id: task.user_id.clone(),
                kind: "reminder".into(),
                task_id: task.task_id,
                reminder_id: Some(fired.reminder_id),
                title: task.title.clone(),
                created_at: at,
                partition: position.partition,
                offset: position.offset,
            });
        }
    }
    task.due_at = task.due.as_ref().map(Due::deadline);
    refresh_reminders(projected, at);
    Ok(())
}

fn add_tag(task: &mut TaskRow, tag: &str) {
    let key = tag.to_lowercase();
    if !task.tag_keys.contains(&key) {
        task.tag_keys.push(key);
        task.tags.push(tag.to_owned());
    }
}

/// Re-derives every reminder's time and status from its task: fired stays fired; removed, or on
/// a completed or deleted task, is cancelled; otherwise pending.
fn refresh_reminders(projected: &mut Projected, at: DateTime<Utc>) {
    let task = &projected.task;
    for reminder in projected.reminders.values_mut() {
        let remind_at = reminder.time.instant(task.due.as_ref());
        let status = if reminder.fired_at.is_some() {
            FIRED
        } else if reminder.removed_at.is_some() || task.status != OPEN {
            CANCELLED
        } else {
            PENDING
        };
        if reminder.remind_at != remind_at || reminder.status != status {
            reminder.remind_at = remind_at;
            reminder.status = status.into();
            reminder.updated_at = at;
        }
    }
}

/// What a task contributes to its user's tag counts.
fn tag_contributions(task: &TaskRow) -> impl Iterator<Item = (String, String, i32, i32)> + '_ {
    let counted = task.status != DELETED;
    let open = i32::from(task.status == OPEN);
    task.tag_keys
        .iter()
        .zip(&task.tags)
        .filter(move |_| counted)
        .map(move |(key, tag)| (key.clone(), tag.clone(), 1, open))
}

/// Plans one batch. `current` holds the rows of every task the batch's commits touch (absent:
/// not created yet); `unprocessed` the batch's event ids not yet in `processed_events`.
pub fn plan(
    inputs: &[Input],
    current: HashMap<Uuid, Projected>,
    mut unprocessed: HashSet<Uuid>,
) -> Plan {
    let mut out = Plan::default();
    let mut arbiter = Arbiter::new();
    for (id, projected) in &current {
        arbiter.restore(*id, u64::try_from(projected.task.version).unwrap_or(0));
    }
    // The tasks this batch changed, as they are now; `current` stays as loaded.
    let mut changed: HashMap<Uuid, Projected> = HashMap::new();
    for input in inputs {
        out.offsets
            .insert(input.position.partition, input.position.offset + 1);
        let commit = match &input.commit {
            Ok(commit) => commit,
            Err(error) => {
                out.dead_letters.push(dead_letter(input, error.clone()));
                continue;
            }
        };
        out.tally.commits += 1;
        // Seen before (a redelivery, or a duplicate record): skip the whole commit.
        if !commit
            .events()
            .iter()
            .all(|e| unprocessed.contains(&e.event_id))
        {
            out.tally.duplicates += 1;
            continue;
        }
        for event in commit.events() {
            unprocessed.remove(&event.event_id);
        }
        let aggregate_id = commit.aggregate_id();
        if let Verdict::LostRace { expected, current } =
            arbiter.check(aggregate_id, commit.expected_version())
        {
            out.tally.lost_races += 1;
            out.lost_races.push(LostRace {
                partition: input.position.partition,
                offset: input.position.offset,
                commit_id: commit.commit_id,
                aggregate_id,
                expected_version: to_i64(expected),
                current_version: to_i64(current),
            });
            continue;
        }
        // Apply to a copy, so a commit that fails half-way changes nothing.
        let mut slot = changed
            .get(&aggregate_id)
            .or_else(|| current.get(&aggregate_id))
            .cloned();
        let mut notifications = Vec::new();
        let applied = commit
            .events()
            .iter()
            .try_for_each(|event| apply(&mut slot, event, input.position, &mut notifications));
        if let Err(error) = applied {
            out.dead_letters.push(dead_letter(input, error.to_string()));
            out.released
                .extend(commit.events().iter().map(|e| e.event_id));
            continue;
        }
        arbiter.judge(commit);
        for event in commit.events() {
            out.audit
                .push(AuditRow::new(commit.commit_id, event, input.position));
            *out.tally.by_type.entry(event.event_type()).or_default() += 1;
            out.tally.events += 1;
        }
        out.notifications.extend(notifications);
        if let Some(projected) = slot {
            changed.insert(aggregate_id, projected);
        }
    }
    out.tally.dead_letters = out.dead_letters.len() as u64;
    let mut changed: Vec<(Uuid, Projected)> = changed.into_iter().collect();
    changed.sort_unstable_by_key(|(id, _)| *id);
    let mut deltas: BTreeMap<(String, String), TagDelta> = BTreeMap::new();
    for (id, projected) in changed {
        let user = &projected.task.user_id;
        let old = current.get(&id).map(|p| &p.task);
        for (sign, row) in [(-1, old), (1, Some(&projected.task))] {
            for (key, tag, count, open) in row.into_iter().flat_map(tag_contributions) {
                let delta = deltas
                    .entry((user.clone(), key.clone()))
                    .or_insert_with(|| TagDelta {
                        user_id: user.clone(),
                        tag_key: key,
                        tag: tag.clone(),
                        task_count: 0,
                        open_count: 0,
                    });
                delta.task_count += sign * count;
                delta.open_count += sign * open;
            }
        }
        let mut task = projected.task;
        task.reminders = shown_reminders(&projected.reminders);
        out.reminders.extend(projected.reminders.into_values());
        out.tasks.push(task);
    }
    out.tags = deltas
        .into_values()
        .filter(|d| d.task_count != 0 || d.open_count != 0)
        .collect();
    out
}

fn dead_letter(input: &Input, error: String) -> DeadLetter {
    DeadLetter {
        position: input.position,
        key: input.key.clone(),
        payload: input.payload.clone(),
        error,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
