//! The JSON shape of a task in command responses.

use chrono::{DateTime, Utc};
use event_store::events::{Due, Priority, Recurrence, ReminderTime};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Task, TaskStatus};

/// A task as command responses show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: Uuid,
    /// The short per-user number (usable in place of the id in paths).
    pub number: u64,
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub due: Option<Due>,
    pub tags: Vec<String>,
    pub recurrence: Option<Recurrence>,
    pub reminders: Vec<ReminderView>,
    pub status: TaskStatus,
    pub completed: bool,
    pub version: u64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A reminder of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReminderView {
    pub id: Uuid,
    pub time: ReminderTime,
    pub fired: bool,
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> Self {
        Self {
            id: task.id,
            number: task.number,
            title: task.title.clone(),
            description: task.description.clone(),
            priority: task.priority,
            due: task.due.clone(),
            tags: task.tags.clone(),
            recurrence: task.recurrence.clone(),
            reminders: task
                .reminders
                .iter()
                .map(|(id, time)| ReminderView {
                    id: *id,
                    time: time.clone(),
                    fired: task.fired_reminders.contains(id),
                })
                .collect(),
            status: task.status,
            completed: task.status == TaskStatus::Completed,
            version: task.version,
            created_at: task.created_at,
            updated_at: task.updated_at,
            completed_at: task.completed_at,
        }
    }
}
