//! A commit: the 1..n events one command produced for one aggregate, stored as one Kafka record so
//! that they land all or nothing.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{Event, RawEnvelope};
use crate::error::{DecodeError, InvalidCommit};
use crate::ids::UserId;
use crate::registry;

/// The record format this crate writes. Readers reject formats they do not know.
pub const COMMIT_FORMAT: u32 = 1;

/// The idempotency key of the request that produced a commit, and a hash of that request, so
/// that any process reading the log recognises a retry (and a key reused for another request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    pub key: String,
    /// Hex SHA-256 (or any stable digest) of the method, path and body.
    pub request_hash: String,
}

/// A validated commit of decoded events.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// Unique per commit; v7 for commands, v5 (deterministic) for machine decisions.
    pub commit_id: Uuid,
    events: Vec<Event>,
    pub idempotency: Option<Idempotency>,
}

/// The record's JSON value.
#[derive(Serialize, Deserialize)]
struct WireCommit {
    format: u32,
    commit_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency: Option<Idempotency>,
    events: Vec<RawEnvelope>,
}

impl Commit {
    /// Checks the commit invariants: at least one event, one user and one aggregate, versions
    /// contiguous from at least 1, unique event ids.
    pub fn new(
        commit_id: Uuid,
        events: Vec<Event>,
        idempotency: Option<Idempotency>,
    ) -> Result<Self, InvalidCommit> {
        let first = events.first().ok_or(InvalidCommit::Empty)?;
        if first.aggregate_version == 0 {
            return Err(InvalidCommit::NonContiguousVersions);
        }
        let mut ids = HashSet::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            if e.user_id != first.user_id
                || e.aggregate_id != first.aggregate_id
                || e.aggregate_type() != first.aggregate_type()
            {
                return Err(InvalidCommit::MixedAggregates);
            }
            if e.aggregate_version != first.aggregate_version + i as u64 {
                return Err(InvalidCommit::NonContiguousVersions);
            }
            if !ids.insert(e.event_id) {
                return Err(InvalidCommit::DuplicateEventId);
            }
        }
        Ok(Self {
            commit_id,
            events,
            idempotency,
        })
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    fn first(&self) -> &Event {
        // `new` guarantees at least one event.
        &self.events[0]
    }

    pub fn user_id(&self) -> &UserId {
        &self.first().user_id
    }

    pub fn aggregate_id(&self) -> Uuid {
        self.first().aggregate_id
    }

    pub fn aggregate_type(&self) -> &'static str {
        self.first().aggregate_type()
    }

    /// The aggregate version this commit was written against (its first event's version − 1).
    pub fn expected_version(&self) -> u64 {
        self.first().aggregate_version - 1
    }

    /// The aggregate version after this commit.
    pub fn last_version(&self) -> u64 {
        self.expected_version() + self.events.len() as u64
    }

    /// The record value: JSON, every event at its current schema version.
    pub fn encode(&self) -> Vec<u8> {
        let wire = WireCommit {
            format: COMMIT_FORMAT,
            commit_id: self.commit_id,
            idempotency: self.idempotency.clone(),
            events: self.events.iter().map(registry::encode).collect(),
        };
        // Serializing plain structs of strings, numbers and UUIDs cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Decodes a record value, upcasting every event to its current schema version.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: WireCommit =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
        if wire.format != COMMIT_FORMAT {
            return Err(DecodeError::UnsupportedFormat(wire.format));
        }
        let events = wire
            .events
            .into_iter()
            .map(registry::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(wire.commit_id, events, wire.idempotency)?)
    }

    /// The Kafka header values describing this commit's events: `event_type` and
    /// `schema_version`, comma-separated in event order when a commit holds several events.
    pub fn header_values(&self) -> (String, String) {
        let types = self
            .events
            .iter()
            .map(Event::event_type)
            .collect::<Vec<_>>()
            .join(",");
        let versions = self
            .events
            .iter()
            .map(|e| e.schema_version().to_string())
            .collect::<Vec<_>>()
            .join(",");
        (types, versions)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::envelope::Cause;
    use crate::events::{EventPayload, TaskCompleted, TaskDeleted};
    use crate::ids::Actor;

    fn cause(user: &str) -> Cause {
        let id = Uuid::now_v7();
        Cause {
            user_id: UserId::parse(user).expect("valid user"),
            actor: Actor::User,
            correlation_id: id,
            causation_id: id,
            occurred_at: Utc::now(),
        }
    }

    fn completed() -> EventPayload {
        EventPayload::TaskCompleted(TaskCompleted {})
    }

    #[test]
    fn a_commit_of_contiguous_events_roundtrips_through_its_encoding() {
        let c = cause("u1");
        let agg = Uuid::now_v7();
        let commit = Commit::new(
            Uuid::now_v7(),
            vec![
                c.event(agg, 4, completed()),
                c.event(agg, 5, EventPayload::TaskDeleted(TaskDeleted {})),
            ],
            Some(Idempotency {
                key: "k".into(),
                request_hash: "h".into(),
            }),
        )
        .expect("valid commit");
        assert_eq!(commit.expected_version(), 3);
        assert_eq!(commit.last_version(), 5);
        assert_eq!(Commit::decode(&commit.encode()), Ok(commit.clone()));
        assert_eq!(
            commit.header_values(),
            ("task.completed,task.deleted".into(), "1,1".into())
        );
    }

    #[test]
    fn rejects_empty_mixed_and_gapped_commits() {
        let c = cause("u1");
        let agg = Uuid::now_v7();
        assert_eq!(
            Commit::new(Uuid::now_v7(), vec![], None),
            Err(InvalidCommit::Empty)
        );
        assert_eq!(
            Commit::new(
                Uuid::now_v7(),
                vec![c.event(agg, 1, completed()), c.event(agg, 3, completed())],
                None
            ),
            Err(InvalidCommit::NonContiguousVersions)
        );
        assert_eq!(
            Commit::new(Uuid::now_v7(), vec![c.event(agg, 0, completed())], None),
            Err(InvalidCommit::NonContiguousVersions)
        );
        assert_eq!(
            Commit::new(
                Uuid::now_v7(),
                vec![
                    c.event(agg, 1, completed()),
                    cause("u2").event(agg, 2, completed())
                ],
                None
            ),
            Err(InvalidCommit::MixedAggregates)
        );
        let e = c.event(agg, 1, completed());
        let mut dup = e.clone();
        dup.aggregate_version = 2;
        assert_eq!(
            Commit::new(Uuid::now_v7(), vec![e, dup], None),
            Err(InvalidCommit::DuplicateEventId)
        );
    }

    #[test]
    fn decoding_garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"null",
            b"{}",
            b"\xff\xfe",
            br#"{"format":2,"commit_id":"00000000-0000-0000-0000-000000000000","events":[]}"#,
            br#"{"format":1,"commit_id":"00000000-0000-0000-0000-000000000000","events":[]}"#,
        ] {
            assert!(Commit::decode(bytes).is_err(), "{bytes:?}");
        }
    }
}
