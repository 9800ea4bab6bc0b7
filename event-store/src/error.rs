//! The crate's errors.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::log::LogPosition;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why bytes are not a valid commit or event. Pure data, so it can be stored in a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a commit: {0}")]
    Json(String),
    #[error("unsupported commit format {0}")]
    UnsupportedFormat(u32),
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    #[error("{event_type} schema version {version} is not readable (current is {current})")]
    UnsupportedVersion {
        event_type: String,
        version: u32,
        current: u32,
    },
    #[error("{event_type} v{from_version} could not be upcast: {reason}")]
    Upcast {
        event_type: String,
        from_version: u32,
        reason: String,
    },
    #[error("{event_type} v{version} payload is invalid: {reason}")]
    Payload {
        event_type: String,
        version: u32,
        reason: String,
    },
    #[error("{event_type} does not belong to aggregate type {aggregate_type:?}")]
    AggregateTypeMismatch {
        event_type: String,
        aggregate_type: String,
    },
    #[error("invalid commit: {0}")]
    InvalidCommit(#[from] InvalidCommit),
}

/// Why a list of events cannot form one commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommit {
    #[error("a commit holds at least one event")]
    Empty,
    #[error("all events of a commit belong to one user and one aggregate")]
    MixedAggregates,
    #[error("aggregate versions must start at 1 or more and increase by one within a commit")]
    NonContiguousVersions,
    #[error("event ids must be unique within a commit")]
    DuplicateEventId,
}

/// Errors of the log client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker did not answer (down, unreachable, or timed out). Retry later.
    #[error("the event log broker at {brokers} is unavailable: {source}")]
    Unavailable {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {0:?} does not exist; create it with `taskstream-log ensure`")]
    TopicMissing(String),
    #[error("topic {topic:?} has {actual} partitions but {expected} are configured")]
    PartitionMismatch {
        topic: String,
        expected: i32,
        actual: i32,
    },
    /// A record in the log is not a valid commit; the position says where it is.
    #[error("record at {position} is not a valid commit: {source}")]
    Undecodable {
        position: LogPosition,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    InvalidCommit(#[from] InvalidCommit),
    /// The append was acknowledged but the log was not read up to it in time, so whether the
    /// commit won its race is unknown. The commit may be in the log; retry with the same
    /// idempotency key.
    #[error("commit {commit_id} at {position} was not confirmed within {waited_ms} ms")]
    ConfirmTimeout {
        commit_id: uuid::Uuid,
        position: LogPosition,
        waited_ms: u64,
    },
    /// The log tail that confirms appends has stopped.
    #[error("the log tail has stopped: {0}")]
    TailStopped(String),
    /// A bounded read made no progress before reaching its end.
    #[error("log read stalled: {0}")]
    Stalled(String),
    /// The writer's tail does not read the partition the commit belongs to.
    #[error("partition {0} is not read by this writer's tail")]
    PartitionNotTailed(i32),
    #[error("kafka client error: {0}")]
    Kafka(#[source] KafkaError),
}

/// Whether a failed delivery is about the record itself (its size, format or destination), so
/// that neither a retry nor a fresh producer can help.
pub(crate) fn record_at_fault(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

impl Error {
    /// Whether retrying later may succeed (a service answers `503` with `Retry-After`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::ConfirmTimeout { .. } | Error::TailStopped(_)
        )
    }

    /// Classifies a client error: broker-unreachable and timeout codes become [`Error::Unavailable`],
    /// and so does any failed delivery that is not about the record itself (a broker that
    /// restarted may answer a pending produce with an error it cannot explain; the record was not
    /// acknowledged, and a retry with the same idempotency key is safe).
    pub(crate) fn from_kafka(brokers: &str, source: KafkaError) -> Self {
        let code = source.rdkafka_error_code();
        if matches!(source, KafkaError::MessageProduction(_)) && !record_at_fault(code) {
            return Error::Unavailable {
                brokers: brokers.to_owned(),
                source,
            };
        }
        let unavailable = matches!(
            code,
            Some(
                RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::BrokerNotAvailable
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::NotLeaderForPartition
                    | RDKafkaErrorCode::NetworkException
                    | RDKafkaErrorCode::Resolve
                    | RDKafkaErrorCode::QueueFull
            )
        ) || matches!(source, KafkaError::Canceled);
        if unavailable {
            Error::Unavailable {
                brokers: brokers.to_owned(),
                source,
            }
        } else {
            Error::Kafka(source)
        }
    }
}
