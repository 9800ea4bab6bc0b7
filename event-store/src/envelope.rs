//! The event envelope: what every event carries besides its payload.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::events::EventPayload;
use crate::ids::{Actor, UserId};

/// An event as it is stored: the envelope with a payload of any schema version, not yet upcast.
///
/// Unknown extra fields are ignored so that older readers tolerate newer, additive envelopes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawEnvelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub user_id: UserId,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// 1-based and contiguous per aggregate.
    pub aggregate_version: u64,
    pub occurred_at: DateTime<Utc>,
    /// The request (or job) that started the chain of work this event belongs to.
    pub correlation_id: Uuid,
    /// The request, event or job that directly caused this event.
    pub causation_id: Uuid,
    pub actor: Actor,
    pub payload: Value,
}

/// A decoded event at the current schema version of its type.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_id: Uuid,
    pub user_id: UserId,
    pub aggregate_id: Uuid,
    pub aggregate_version: u64,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub actor: Actor,
    pub payload: EventPayload,
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    pub fn aggregate_type(&self) -> &'static str {
        self.payload.aggregate_type()
    }

    /// The schema version this event is written with (always the current one).
    pub fn schema_version(&self) -> u32 {
        crate::registry::current_version(self.event_type())
    }
}

/// Who and why: the metadata shared by all events a command or job produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub user_id: UserId,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub occurred_at: DateTime<Utc>,
}

impl Cause {
    /// Builds the event for `payload` at `aggregate_version` with a fresh v7 event id.
    pub fn event(
        &self,
        aggregate_id: Uuid,
        aggregate_version: u64,
        payload: EventPayload,
    ) -> Event {
        self.event_with_id(
            crate::ids::new_event_id(),
            aggregate_id,
            aggregate_version,
            payload,
        )
    }

    /// Builds the event with a caller-chosen (for machines: deterministic) event id.
    pub fn event_with_id(
        &self,
        event_id: Uuid,
        aggregate_id: Uuid,
        aggregate_version: u64,
        payload: EventPayload,
    ) -> Event {
        Event {
            event_id,
            user_id: self.user_id.clone(),
            aggregate_id,
            aggregate_version,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            actor: self.actor,
            payload,
        }
    }
}
