//! The registry of event types: each type's current schema version and the upcasters that bring
//! every older version up to it.
//!
//! Rule: a stored event is never rewritten. When a payload's shape changes, bump the type's
//! version here, add an upcaster from the previous version, and add a golden sample of the new
//! version under `event-store/golden/`; the old samples stay and keep being decoded in tests.

use serde_json::{Value, json};

use crate::envelope::{Event, RawEnvelope};
use crate::error::DecodeError;
use crate::events::EventPayload;

/// Upgrades a payload from version `n` to `n + 1`.
pub type Upcaster = fn(Value) -> Result<Value, String>;

/// One event type's schema history.
#[derive(Debug)]
pub struct Schema {
    pub event_type: &'static str,
    /// `upcasters[i]` upgrades version `i + 1` to `i + 2`; the current version is
    /// `upcasters.len() + 1`.
    pub upcasters: &'static [Upcaster],
}

impl Schema {
    pub fn current_version(&self) -> u32 {
        self.upcasters.len() as u32 + 1
    }
}

/// Every event type, with its schema history.
pub static SCHEMAS: &[Schema] = &[
    Schema {
        event_type: "task.created",
        upcasters: &[task_created_v1_to_v2],
    },
    Schema {
        event_type: "task.updated",
        upcasters: &[],
    },
    Schema {
        event_type: "task.completed",
        upcasters: &[],
    },
    Schema {
        event_type: "task.reopened",
        upcasters: &[],
    },
    Schema {
        event_type: "task.deleted",
        upcasters: &[],
    },
    Schema {
        event_type: "task.tag_added",
        upcasters: &[],
    },
    Schema {
        event_type: "task.tag_removed",
        upcasters: &[],
    },
    Schema {
        event_type: "task.due_set",
        upcasters: &[],
    },
    Schema {
        event_type: "task.due_cleared",
        upcasters: &[],
    },
    Schema {
        event_type: "task.recurrence_set",
        upcasters: &[],
    },
    Schema {
        event_type: "task.recurrence_cleared",
        upcasters: &[],
    },
    Schema {
        event_type: "reminder.added",
        upcasters: &[],
    },
    Schema {
        event_type: "reminder.removed",
        upcasters: &[],
    },
    Schema {
        event_type: "reminder.fired",
        upcasters: &[],
    },
];

/// The schema history of `event_type`, if it is known.
pub fn schema(event_type: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.event_type == event_type)
}

/// The current schema version of a known event type.
///
/// # Panics
/// If `event_type` is not registered: every [`EventPayload`] variant is (checked by a test).
pub fn current_version(event_type: &str) -> u32 {
    schema(event_type)
        .map(Schema::current_version)
        .unwrap_or_else(|| panic!("event type {event_type} is not registered"))
}

/// Decodes a stored envelope: upcasts its payload to the current version and types it.
pub fn decode(raw: RawEnvelope) -> Result<Event, DecodeError> {
    let schema = schema(&raw.event_type)
        .ok_or_else(|| DecodeError::UnknownEventType(raw.event_type.clone()))?;
    let current = schema.current_version();
    if raw.schema_version == 0 || raw.schema_version > current {
        return Err(DecodeError::UnsupportedVersion {
            event_type: raw.event_type,
            version: raw.schema_version,
            current,
        });
    }
    let mut payload = raw.payload;
    for (i, upcast) in schema
        .upcasters
        .iter()
        .enumerate()
        .skip(raw.schema_version as usize - 1)
    {
        payload = upcast(payload).map_err(|reason| DecodeError::Upcast {
            event_type: raw.event_type.clone(),
            from_version: i as u32 + 1,
            reason,
        })?;
    }
    let payload: EventPayload =
        serde_json::from_value(json!({ "event_type": raw.event_type, "payload": payload }))
            .map_err(|source| DecodeError::Payload {
                event_type: raw.event_type.clone(),
                version: raw.schema_version,
                reason: source.to_string(),
            })?;
    if payload.aggregate_type() != raw.aggregate_type {
        return Err(DecodeError::AggregateTypeMismatch {
            event_type: raw.event_type,
            aggregate_type: raw.aggregate_type,
        });
    }
    Ok(Event {
        event_id: raw.event_id,
        user_id: raw.user_id,
        aggregate_id: raw.aggregate_id,
        aggregate_version: raw.aggregate_version,
        occurred_at: raw.occurred_at,
        correlation_id: raw.correlation_id,
        causation_id: raw.causation_id,
        actor: raw.actor,
        payload,
    })
}

/// Encodes an event at the current schema version of its type.
pub fn encode(event: &Event) -> RawEnvelope {
    let tagged = serde_json::to_value(&event.payload).unwrap_or(Value::Null);
    let payload = match tagged {
        Value::Object(mut map) => map.remove("payload").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    RawEnvelope {
        event_id: event.event_id,
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        user_id: event.user_id.clone(),
        aggregate_type: event.aggregate_type().to_owned(),
        aggregate_id: event.aggregate_id,
        aggregate_version: event.aggregate_version,
        occurred_at: event.occurred_at,
        correlation_id: event.correlation_id,
        causation_id: event.causation_id,
        actor: event.actor,
        payload,
    }
}

/// `task.created` v1 stored the priority as a number from 1 (low) to 4 (urgent) and the due time
/// as a bare `due_at` instant, and had neither tags nor recurrence. v2 names the priority, makes the
/// due a tagged date-or-instant, and adds `tags`.
fn task_created_v1_to_v2(mut payload: Value) -> Result<Value, String> {
    let obj = payload
        .as_object_mut()
        .ok_or("task.created v1 payload is not an object")?;
    let priority = match obj.remove("priority") {
        None | Some(Value::Null) => "medium",
        Some(Value::Number(n)) => match n.as_u64() {
            Some(1) => "low",
            Some(2) => "medium",
            Some(3) => "high",
            Some(4) => "urgent",
            _ => return Err(format!("task.created v1 priority {n} is not 1..=4")),
        },
        Some(other) => return Err(format!("task.created v1 priority {other} is not a number")),
    };
    obj.insert("priority".into(), Value::from(priority));
    match obj.remove("due_at") {
        None | Some(Value::Null) => {}
        Some(at) => {
            obj.insert("due".into(), json!({ "kind": "at", "at": at }));
        }
    }
    obj.entry("tags").or_insert_with(|| json!([]));
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upcasts_task_created_v1_priority_and_due() {
        let v2 = task_created_v1_to_v2(json!({
            "task_number": 3, "title": "t", "priority": 4, "due_at": "2026-01-02T03:04:05Z"
        }));
        assert_eq!(
            v2,
            Ok(json!({
                "task_number": 3, "title": "t", "priority": "urgent",
                "due": { "kind": "at", "at": "2026-01-02T03:04:05Z" }, "tags": []
            }))
        );
    }

    #[test]
    fn rejects_task_created_v1_with_priority_out_of_range() {
        assert!(
            task_created_v1_to_v2(json!({ "task_number": 1, "title": "t", "priority": 9 }))
                .is_err()
        );
        assert!(task_created_v1_to_v2(json!("not an object")).is_err());
    }

    #[test]
    fn event_type_names_are_unique() {
        let mut names: Vec<_> = SCHEMAS.iter().map(|s| s.event_type).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCHEMAS.len());
    }
}
