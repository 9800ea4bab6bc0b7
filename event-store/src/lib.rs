//! Taskstream's event store: the event envelope, the schema registry with upcasters, and the
//! client of the Kafka topic that is the system of record.
//!
//! # Layout
//!
//! - [`ids`]: user ids, actors, v7 and deterministic v5 event ids.
//! - [`envelope`]: the stored envelope ([`RawEnvelope`]) and the decoded [`Event`].
//! - [`events`]: every event type's payload at its current schema version.
//! - [`registry`]: schema versions and upcasters; decoding and encoding envelopes.
//! - [`commit`]: a [`Commit`] — the 1..n events of one command for one aggregate, one record.
//! - [`partition`]: the user → partition mapping (Kafka's murmur2).
//! - [`arbiter`]: the log-order arbitration rule every reader applies.
//! - [`log`]: topic provisioning, [`Appender`], [`LogReader`], [`LogTail`] and [`Writer`].
//! - [`metrics`]: the Prometheus metrics of the log client.
//!
//! The pure parts (everything but [`log`] and [`metrics`]) do no I/O.

pub mod arbiter;
pub mod commit;
pub mod envelope;
pub mod error;
pub mod events;
pub mod ids;
pub mod log;
pub mod metrics;
pub mod partition;
pub mod registry;
#[cfg(feature = "test-support")]
pub mod testing;
#[cfg(feature = "test-support")]
pub mod workload;

pub use arbiter::{Arbiter, Verdict};
pub use commit::{Commit, Idempotency};
pub use envelope::{Cause, Event, RawEnvelope};
pub use error::{DecodeError, Error, InvalidCommit, Result};
pub use events::EventPayload;
pub use ids::{Actor, UserId};
pub use log::{
    Appender, Confirmation, LogConfig, LogPosition, LogReader, LogRecord, LogTail, StartAt,
    TailSink, Writer,
};
