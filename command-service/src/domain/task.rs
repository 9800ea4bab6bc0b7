//! The task aggregate: `handle` decides which events a command produces (or why it cannot),
//! `apply` folds an event into the state and cannot fail.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use event_store::Event;
use event_store::events::{
    Due, DueCleared, DueSet, EventPayload, Priority, Recurrence, RecurrenceBasis,
    RecurrenceCleared, RecurrenceSet, ReminderAdded, ReminderRemoved, ReminderTime, TagChanged,
    TaskCompleted, TaskCreated, TaskDeleted, TaskReopened, TaskUpdated,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validate::{self, FieldError, TaskFields, TaskPatch};

/// Most reminders on one task.
pub const REMINDERS_MAX: usize = 20;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Open,
    Completed,
    Deleted,
}

/// A command on one task. Ids the command introduces (the task's, a reminder's) are chosen by
/// the caller, so `handle` stays deterministic.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Create {
        number: u64,
        fields: TaskFields,
        reminders: Vec<(Uuid, ReminderTime)>,
    },
    Replace(TaskFields),
    Patch(TaskPatch),
    Complete,
    Reopen,
    Delete,
    AddTag(String),
    RemoveTag(String),
    SetDue(Due),
    ClearDue,
    SetRecurrence(Recurrence),
    ClearRecurrence,
    AddReminder {
        reminder_id: Uuid,
        time: ReminderTime,
    },
    RemoveReminder {
        reminder_id: Uuid,
    },
}

impl Command {
    /// A stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Replace(_) => "replace",
            Command::Patch(_) => "patch",
            Command::Complete => "complete",
            Command::Reopen => "reopen",
            Command::Delete => "delete",
            Command::AddTag(_) => "add_tag",
            Command::RemoveTag(_) => "remove_tag",
            Command::SetDue(_) => "set_due",
            Command::ClearDue => "clear_due",
            Command::SetRecurrence(_) => "set_recurrence",
            Command::ClearRecurrence => "clear_recurrence",
            Command::AddReminder { .. } => "add_reminder",
            Command::RemoveReminder { .. } => "remove_reminder",
        }
    }
}

/// Why a command produced no events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Malformed input (`422`), every invalid field listed.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The task's state forbids the command (`409`).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The task, or the tag or reminder named, does not exist (`404`).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
}

fn conflict(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::Conflict {
        code,
        message: message.into(),
    }
}

fn not_found(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::NotFound {
        code,
        message: message.into(),
    }
}

/// A task's state, rebuilt from its events. Version 0 means it does not exist yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: Uuid,
    pub number: u64,
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub due: Option<Due>,
    pub tags: Vec<String>,
    pub recurrence: Option<Recurrence>,
    pub reminders: BTreeMap<Uuid, ReminderTime>,
    pub fired_reminders: BTreeSet<Uuid>,
    pub status: TaskStatus,
    pub version: u64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Task {
    /// Whether the task was created.
    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// The events `command` produces on this task, in order. An empty list means the command
    /// changes nothing (for example setting the due date it already has).
    pub fn handle(&self, command: &Command) -> Result<Vec<EventPayload>, DomainError> {
        if let Command::Create {
            number,
            fields,
            reminders,
        } = command
        {
            return self.create(*number, fields, reminders);
        }
        if !self.exists() {
            return Err(not_found("task_not_found", "no such task"));
        }
        if self.status == TaskStatus::Deleted {
            return Err(conflict("task_deleted", "the task was deleted"));
        }
        match command {
            Command::Create { .. } => unreachable!("handled above"),
            Command::Replace(fields) => self.change(&TaskPatch {
                title: Some(fields.title.clone()),
                description: Some(fields.description.clone()),
                priority: Some(fields.priority),
                due: Some(fields.due.clone()),
                tags: Some(fields.tags.clone()),
                recurrence: Some(fields.recurrence.clone()),
            }),
            Command::Patch(patch) => self.change(patch),
            Command::Complete => match self.status {
                TaskStatus::Completed => Err(conflict(
                    "already_completed",
                    "the task is already completed",
                )),
                _ => Ok(vec![EventPayload::TaskCompleted(TaskCompleted {})]),
            },
            Command::Reopen => match self.status {
                TaskStatus::Completed => Ok(vec![EventPayload::TaskReopened(TaskReopened {})]),
                _ => Err(conflict("not_completed", "the task is not completed")),
            },
            Command::Delete => Ok(vec![EventPayload::TaskDeleted(TaskDeleted {})]),
            Command::AddTag(tag) => {
                let tag = validate::tag("tag", tag).map_err(|e| DomainError::Invalid(vec![e]))?;
                if self.has_tag(&tag) {
                    return Err(conflict(
                        "duplicate_tag",
                        format!("the task already has the tag {tag:?}"),
                    ));
                }
                if self.tags.len() >= validate::TAGS_MAX {
                    return Err(conflict(
                        "tag_limit",
                        format!("a task has at most {} tags", validate::TAGS_MAX),
                    ));
                }
                Ok(vec![EventPayload::TagAdded(TagChanged { tag })])
            }
            Command::RemoveTag(tag) => {
                let existing = self
                    .tags
                    .iter()
                    .find(|t| t.to_lowercase() == tag.trim().to_lowercase())
                    .ok_or_else(|| {
                        not_found("tag_not_found", format!("the task has no tag {tag:?}"))
                    })?;
                Ok(vec![EventPayload::TagRemoved(TagChanged {
                    tag: existing.clone(),
                })])
            }
            Command::SetDue(due) => self.change(&TaskPatch {
                due: Some(Some(due.clone())),
                ..TaskPatch::default()
            }),
            Command::ClearDue => self.change(&TaskPatch {
                due: Some(None),
                ..TaskPatch::default()
            }),
            Command::SetRecurrence(recurrence) => self.change(&TaskPatch {
                recurrence: Some(Some(recurrence.clone())),
                ..TaskPatch::default()
            }),
            Command::ClearRecurrence => self.change(&TaskPatch {
                recurrence: Some(None),
                ..TaskPatch::default()
            }),
            Command::AddReminder { reminder_id, time } => {
                if self.status == TaskStatus::Completed {
                    return Err(conflict(
                        "task_completed",
                        "a completed task takes no reminders",
                    ));
                }
                if self.reminders.contains_key(reminder_id) {
                    return Err(conflict(
                        "duplicate_reminder",
                        "the reminder exists already",
                    ));
                }
                if self.reminders.len() >= REMINDERS_MAX {
                    return Err(conflict(
                        "reminder_limit",
                        format!("a task has at most {REMINDERS_MAX} reminders"),
                    ));
                }
                if matches!(time, ReminderTime::BeforeDue { .. }) && self.due.is_none() {
                    return Err(conflict(
                        "reminder_needs_due",
                        "a reminder before the due time needs a due date",
                    ));
                }
                Ok(vec![EventPayload::ReminderAdded(ReminderAdded {
                    reminder_id: *reminder_id,
                    time: time.clone(),
                })])
            }
            Command::RemoveReminder { reminder_id } => {
                if !self.reminders.contains_key(reminder_id) {
                    return Err(not_found("reminder_not_found", "no such reminder"));
                }
                Ok(vec![EventPayload::ReminderRemoved(ReminderRemoved {
                    reminder_id: *reminder_id,
                })])
            }
        }
    }

    fn create(
        &self,
        number: u64,
        fields: &TaskFields,
        reminders: &[(Uuid, ReminderTime)],
    ) -> Result<Vec<EventPayload>, DomainError> {
        if self.exists() {
            return Err(conflict("already_exists", "the task exists already"));
        }
        check_due_dependents(
            fields.due.as_ref(),
            fields.recurrence.as_ref(),
            reminders.iter().map(|(_, t)| t),
        )?;
        if reminders.len() > REMINDERS_MAX {
            return Err(DomainError::Invalid(vec![FieldError::new(
                "reminders",
                "too_many",
                format!("a task has at most {REMINDERS_MAX} reminders"),
            )]));
        }
        let mut events = vec![EventPayload::TaskCreated(TaskCreated {
            task_number: number,
            title: fields.title.clone(),
            description: fields.description.clone(),
            priority: fields.priority,
            due: fields.due.clone(),
            tags: fields.tags.clone(),
            recurrence: fields.recurrence.clone(),
            occurrence_of: None,
        })];
        events.extend(reminders.iter().map(|(id, time)| {
            EventPayload::ReminderAdded(ReminderAdded {
                reminder_id: *id,
                time: time.clone(),
            })
        }));
        Ok(events)
    }

    /// The events that turn the current fields into the patched ones.
    fn change(&self, patch: &TaskPatch) -> Result<Vec<EventPayload>, DomainError> {
        let due = patch.due.clone().unwrap_or_else(|| self.due.clone());
        let recurrence = patch
            .recurrence
            .clone()
            .unwrap_or_else(|| self.recurrence.clone());
        check_due_dependents(due.as_ref(), recurrence.as_ref(), self.reminders.values())?;

        let mut events = Vec::new();
        let mut updated = TaskUpdated::default();
        if let Some(title) = &patch.title
            && *title != self.title
        {
            updated.title = Some(title.clone());
        }
        if let Some(description) = &patch.description
            && *description != self.description
        {
            updated.description = Some(description.clone());
        }
        if let Some(priority) = patch.priority
            && priority != self.priority
        {
            updated.priority = Some(priority);
        }
        if updated != TaskUpdated::default() {
            events.push(EventPayload::TaskUpdated(updated));
        }
        if let Some(tags) = &patch.tags {
            let wanted: BTreeSet<String> = tags.iter().map(|t| t.to_lowercase()).collect();
            for existing in &self.tags {
                if !wanted.contains(&existing.to_lowercase()) {
                    events.push(EventPayload::TagRemoved(TagChanged {
                        tag: existing.clone(),
                    }));
                }
            }
            for tag in tags {
                if !self.has_tag(tag) {
                    events.push(EventPayload::TagAdded(TagChanged { tag: tag.clone() }));
                }
            }
        }
        if due != self.due {
            events.push(match due {
                Some(due) => EventPayload::DueSet(DueSet { due }),
                None => EventPayload::DueCleared(DueCleared {}),
            });
        }
        if recurrence != self.recurrence {
            events.push(match recurrence {
                Some(recurrence) => EventPayload::RecurrenceSet(RecurrenceSet { recurrence }),
                None => EventPayload::RecurrenceCleared(RecurrenceCleared {}),
            });
        }
        Ok(events)
    }

    fn has_tag(&self, tag: &str) -> bool {
        let tag = tag.to_lowercase();
        self.tags.iter().any(|t| t.to_lowercase() == tag)
    }

    /// Folds one accepted event into the state.
    pub fn apply(&mut self, event: &Event) {
        self.version = event.aggregate_version;
        self.updated_at = Some(event.occurred_at);
        match &event.payload {
            EventPayload::TaskCreated(created) => {
                self.id = event.aggregate_id;
                self.number = created.task_number;
                self.title = created.title.clone();
                self.description = created.description.clone();
                self.priority = created.priority;
                self.due = created.due.clone();
                self.tags = created.tags.clone();
                self.recurrence = created.recurrence.clone();
                self.status = TaskStatus::Open;
                self.created_at = Some(event.occurred_at);
            }
            EventPayload::TaskUpdated(updated) => {
                if let Some(title) = &updated.title {
                    self.title = title.clone();
                }
                if let Some(description) = &updated.description {
                    self.description = description.clone();
                }
                if let Some(priority) = updated.priority {
                    self.priority = priority;
                }
            }
            EventPayload::TaskCompleted(_) => {
                self.status = TaskStatus::Completed;
                self.completed_at = Some(event.occurred_at);
            }
            EventPayload::TaskReopened(_) => {
                self.status = TaskStatus::Open;
                self.completed_at = None;
            }
            EventPayload::TaskDeleted(_) => self.status = TaskStatus::Deleted,
            EventPayload::TagAdded(TagChanged { tag }) => {
                if !self.has_tag(tag) {
                    self.tags.push(tag.clone());
                }
            }
            EventPayload::TagRemoved(TagChanged { tag }) => {
                let tag = tag.to_lowercase();
                self.tags.retain(|t| t.to_lowercase() != tag);
            }
            EventPayload::DueSet(DueSet { due }) => self.due = Some(due.clone()),
            EventPayload::DueCleared(_) => self.due = None,
            EventPayload::RecurrenceSet(RecurrenceSet { recurrence }) => {
                self.recurrence = Some(recurrence.clone());
            }
            EventPayload::RecurrenceCleared(_) => self.recurrence = None,
            EventPayload::ReminderAdded(added) => {
                self.reminders.insert(added.reminder_id, added.time.clone());
            }
            EventPayload::ReminderRemoved(removed) => {
                self.reminders.remove(&removed.reminder_id);
                self.fired_reminders.remove(&removed.reminder_id);
            }
            EventPayload::ReminderFired(fired) => {
                self.fired_reminders.insert(fired.reminder_id);
            }
        }
    }
}

/// Reminders before the due time, and recurrence counted from the due date, need a due date.
fn check_due_dependents<'a>(
    due: Option<&Due>,
    recurrence: Option<&Recurrence>,
    mut reminders: impl Iterator<Item = &'a ReminderTime>,
) -> Result<(), DomainError> {
    if due.is_some() {
        return Ok(());
    }
    if reminders.any(|t| matches!(t, ReminderTime::BeforeDue { .. })) {
        return Err(conflict(
            "reminder_needs_due",
            "a reminder before the due time needs a due date",
        ));
    }
    if recurrence.is_some_and(|r| r.basis == RecurrenceBasis::DueDate) {
        return Err(conflict(
            "recurrence_needs_due",
            "a recurrence counted from the due date needs a due date",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
