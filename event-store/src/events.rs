//! The payloads of every event type, at their **current** schema version.
//!
//! The wire name of each variant is its `event_type`; older schema versions are upgraded to these
//! shapes by the upcasters in [`crate::registry`] before they are deserialized here.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every event the system records, keyed on the wire by `event_type` with its `payload` beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum EventPayload {
    #[serde(rename = "task.created")]
    TaskCreated(TaskCreated),
    #[serde(rename = "task.updated")]
    TaskUpdated(TaskUpdated),
    #[serde(rename = "task.completed")]
    TaskCompleted(TaskCompleted),
    #[serde(rename = "task.reopened")]
    TaskReopened(TaskReopened),
    #[serde(rename = "task.deleted")]
    TaskDeleted(TaskDeleted),
    #[serde(rename = "task.tag_added")]
    TagAdded(TagChanged),
    #[serde(rename = "task.tag_removed")]
    TagRemoved(TagChanged),
    #[serde(rename = "task.due_set")]
    DueSet(DueSet),
    #[serde(rename = "task.due_cleared")]
    DueCleared(DueCleared),
    #[serde(rename = "task.recurrence_set")]
    RecurrenceSet(RecurrenceSet),
    #[serde(rename = "task.recurrence_cleared")]
    RecurrenceCleared(RecurrenceCleared),
    #[serde(rename = "reminder.added")]
    ReminderAdded(ReminderAdded),
    #[serde(rename = "reminder.removed")]
    ReminderRemoved(ReminderRemoved),
    #[serde(rename = "reminder.fired")]
    ReminderFired(ReminderFired),
}

impl EventPayload {
    /// The wire name of this event type, such as `task.created`.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventPayload::TaskCreated(_) => "task.created",
            EventPayload::TaskUpdated(_) => "task.updated",
            EventPayload::TaskCompleted(_) => "task.completed",
            EventPayload::TaskReopened(_) => "task.reopened",
            EventPayload::TaskDeleted(_) => "task.deleted",
            EventPayload::TagAdded(_) => "task.tag_added",
            EventPayload::TagRemoved(_) => "task.tag_removed",
            EventPayload::DueSet(_) => "task.due_set",
            EventPayload::DueCleared(_) => "task.due_cleared",
            EventPayload::RecurrenceSet(_) => "task.recurrence_set",
            EventPayload::RecurrenceCleared(_) => "task.recurrence_cleared",
            EventPayload::ReminderAdded(_) => "reminder.added",
            EventPayload::ReminderRemoved(_) => "reminder.removed",
            EventPayload::ReminderFired(_) => "reminder.fired",
        }
    }

    /// The aggregate type this event belongs to. Reminders live inside their task's aggregate.
    pub fn aggregate_type(&self) -> &'static str {
        "task"
    }
}

/// How urgent a task is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Urgent,
}

impl Priority {
    /// The priority as a number that sorts by urgency (0 low … 3 urgent), as read models store it.
    pub fn rank(self) -> i16 {
        match self {
            Priority::Low => 0,
            Priority::Medium => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }

    /// The priority of a [`rank`](Self::rank); below 0 is low, above 3 urgent.
    pub fn from_rank(rank: i16) -> Self {
        match rank {
            i16::MIN..=0 => Priority::Low,
            1 => Priority::Medium,
            2 => Priority::High,
            _ => Priority::Urgent,
        }
    }
}

/// When a task is due: a whole day, or an instant (with the zone it was given in, for display and
/// for recurrence).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Due {
    Date {
        date: NaiveDate,
    },
    At {
        at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
    },
}

impl Due {
    /// The instant the task is due by, for sorting, filters and reminders before the due time:
    /// the instant itself, or the end of a date-only due (midnight UTC after that date).
    pub fn deadline(&self) -> DateTime<Utc> {
        match self {
            Due::At { at, .. } => *at,
            Due::Date { date } => date
                .succ_opt()
                .unwrap_or(*date)
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc(),
        }
    }
}

impl ReminderTime {
    /// When a reminder goes off for a task due `due`; `None` for an offset before a due date the
    /// task does not have.
    pub fn instant(&self, due: Option<&Due>) -> Option<DateTime<Utc>> {
        match self {
            ReminderTime::At { at } => Some(*at),
            ReminderTime::BeforeDue { seconds } => {
                let seconds = i64::try_from(*seconds).ok()?;
                due?.deadline()
                    .checked_sub_signed(chrono::TimeDelta::try_seconds(seconds)?)
            }
        }
    }
}

/// Which date the next occurrence of a recurring task counts from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurrenceBasis {
    /// The previous occurrence's due date (a fixed schedule).
    DueDate,
    /// The moment the previous occurrence was completed.
    CompletionDate,
}

/// A recurrence rule: an RFC 5545 `RRULE` evaluated in the user's time zone.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// For example `FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=12`.
    pub rrule: String,
    /// IANA zone name, for example `Europe/Berlin`.
    pub tz: String,
    pub basis: RecurrenceBasis,
}

/// The series a generated occurrence belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccurrenceOf {
    /// The task whose recurrence produced this one.
    pub task_id: Uuid,
    /// 1-based index of the occurrence within the series.
    pub index: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    /// The short per-user number (1, 2, 3…) people use to name the task.
    pub task_number: u64,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Due>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence_of: Option<OccurrenceOf>,
}

/// Fields a task update changed; absent fields are unchanged. `description: null` clears it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub description: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskReopened {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskDeleted {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagChanged {
    pub tag: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DueSet {
    pub due: Due,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DueCleared {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecurrenceSet {
    pub recurrence: Recurrence,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecurrenceCleared {}

/// When a reminder goes off: at an instant, or a number of seconds before the task is due.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReminderTime {
    At { at: DateTime<Utc> },
    BeforeDue { seconds: u64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReminderAdded {
    pub reminder_id: Uuid,
    pub time: ReminderTime,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReminderRemoved {
    pub reminder_id: Uuid,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReminderFired {
    pub reminder_id: Uuid,
    /// The instant the reminder was due to fire.
    pub scheduled_for: DateTime<Utc>,
}

/// Serde helper telling "absent" (`None`) from "explicitly null" (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_ranks_sort_by_urgency_and_read_back() {
        let all = [
            Priority::Low,
            Priority::Medium,
            Priority::High,
            Priority::Urgent,
        ];
        let ranks: Vec<i16> = all.iter().map(|p| p.rank()).collect();
        assert_eq!(ranks, [0, 1, 2, 3]);
        for p in all {
            assert_eq!(Priority::from_rank(p.rank()), p);
        }
        assert_eq!(Priority::from_rank(-5), Priority::Low);
        assert_eq!(Priority::from_rank(9), Priority::Urgent);
    }
}
