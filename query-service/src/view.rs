//! The JSON shapes of query responses. A task looks as it does in command responses.

use chrono::{DateTime, Utc};
use event_store::events::{Due, Priority, Recurrence, ReminderTime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A task's state as queries show it (deleted tasks are never listed). Its schema is named apart
/// from the command side's, so a merged document keeps both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ProjectedTaskStatus)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Completed,
    Deleted,
}

impl TaskStatus {
    /// The status column's value.
    pub fn from_column(status: &str) -> Self {
        match status {
            "completed" => TaskStatus::Completed,
            "deleted" => TaskStatus::Deleted,
            _ => TaskStatus::Open,
        }
    }
}

/// A task as the read models hold it (schema `ProjectedTask`, apart from the command side's
/// `TaskView`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[schema(as = ProjectedTask)]
pub struct TaskView {
    pub id: Uuid,
    /// The short per-user number (usable in place of the id in paths).
    pub number: i64,
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    /// As given: a whole day or an instant with its zone.
    #[schema(value_type = Option<Due>)]
    pub due: Option<Value>,
    /// The instant it is due by (the end of a date-only due, UTC): what filters and sorting use.
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    #[schema(value_type = Option<Recurrence>)]
    pub recurrence: Option<Value>,
    /// Its reminders (removed ones are not shown).
    pub reminders: Vec<TaskReminderView>,
    pub status: TaskStatus,
    pub completed: bool,
    /// Also the `ETag`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A reminder of a task, inside the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ProjectedTaskReminder)]
pub struct TaskReminderView {
    pub id: Uuid,
    #[schema(value_type = ReminderTime)]
    pub time: Value,
    /// When it goes off; null for an offset before a due date the task no longer has.
    pub remind_at: Option<DateTime<Utc>>,
    /// `pending`, `fired` or `cancelled`.
    pub status: String,
    pub fired: bool,
}

/// A page of tasks.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` (with the same filters and sort) for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A tag with its counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct TagView {
    /// The spelling first used.
    pub tag: String,
    /// Lower case: what filters match.
    #[sqlx(rename = "tag_key")]
    pub key: String,
    /// Tasks (open or completed, not deleted) with this tag.
    pub task_count: i32,
    pub open_count: i32,
    pub colour: Option<String>,
}

/// The user's tags.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TagList {
    pub items: Vec<TagView>,
}

/// A reminder, with the task it belongs to (schema `ProjectedReminder`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[schema(as = ProjectedReminder)]
pub struct ReminderView {
    #[sqlx(rename = "reminder_id")]
    pub id: Uuid,
    pub task_id: Uuid,
    pub task_number: Option<i64>,
    pub task_title: Option<String>,
    #[schema(value_type = ReminderTime)]
    pub time: Value,
    pub remind_at: Option<DateTime<Utc>>,
    /// `pending`, `fired` or `cancelled`.
    pub status: String,
    pub fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of reminders.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReminderPage {
    pub items: Vec<ReminderView>,
    pub next_cursor: Option<String>,
}

/// A notification (for example a reminder that fired).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct NotificationView {
    /// The id of the event that caused it.
    pub id: Uuid,
    pub kind: String,
    pub task_id: Uuid,
    pub reminder_id: Option<Uuid>,
    pub title: String,
    pub created_at: DateTime<Utc>,
    /// `partition@offset` of the record that caused it.
    pub position: String,
}

/// A page of notifications, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationView>,
    pub next_cursor: Option<String>,
}

/// One event of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct AuditEventView {
    pub event_id: Uuid,
    /// For example `task.created`.
    pub event_type: String,
    pub schema_version: i32,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub occurred_at: DateTime<Utc>,
    /// `user`, `chat`, `scheduler` or `admin`.
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    /// The commit (one log record) it was part of.
    pub commit_id: Uuid,
    /// The payload at the event type's current schema version.
    pub payload: Value,
    /// `partition@offset` of its record.
    pub position: String,
}

/// A task's history, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub task_id: Uuid,
    pub items: Vec<AuditEventView>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<i64>,
}

/// A page of the user's event feed, in log order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventFeed {
    pub items: Vec<AuditEventView>,
    /// `partition@offset` to pass as `after` for what follows (also when nothing more is there
    /// yet: poll with it). Null only when there is nothing and no `after` was given.
    pub next: Option<String>,
    /// Whether more events are there already.
    pub has_more: bool,
}
