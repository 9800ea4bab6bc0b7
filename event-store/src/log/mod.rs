//! The Kafka log client: topic provisioning, appends, readers and the confirming tail.
//!
//! - [`admin`]: create the topic (infinite retention, no compaction) and read its partition count.
//! - [`Appender`]: `append(commit)` → [`LogPosition`] after `acks=all` (idempotent producer).
//! - [`LogReader`]: batches of [`LogRecord`]s from any offset (replay) or from a consumer group's
//!   committed offsets.
//! - [`LogTail`] and [`Writer`]: read partitions continuously, apply the arbitration rule, and tell
//!   a writer whether the commit it appended won.

pub mod admin;
mod appender;
pub use appender::headers;
mod reader;
mod tail;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

pub use appender::Appender;
pub use reader::{LogReader, LogRecord, StartAt};
pub use tail::{Confirmation, LogTail, TailSink, Writer};

/// Where the log lives and how to talk to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Comma-separated `host:port` bootstrap servers.
    pub brokers: String,
    /// The topic that holds every user's events.
    pub topic: String,
    /// Partitions to create the topic with; must never change afterwards (see
    /// [`crate::partition`]).
    pub partitions: i32,
    pub replication_factor: i16,
    /// `client.id` prefix of every client this process creates.
    pub client_id: String,
    /// How long the producer waits to batch records (`linger.ms`).
    pub linger_ms: u32,
    /// How long an append may take before it fails as unavailable (`message.timeout.ms`).
    pub append_timeout_ms: u64,
    /// How long a writer waits to read its own commit back before giving up.
    pub confirm_timeout_ms: u64,
    /// How long the broker may hold a reader's fetch while it has nothing new
    /// (`fetch.wait.max.ms`): the projector's and the tools' readers. Shorter means fresher
    /// reads but more fetches; each costs the broker work even when empty (tansu also waits
    /// this long before answering a fetch that found records).
    pub fetch_wait_ms: u64,
    /// The same for a writer's confirming tail ([`LogTail`]). A writer's own commits are
    /// decided when the broker acknowledges them, so this only delays seeing other writers'
    /// records (and the verdict of a commit appended behind one).
    pub tail_fetch_wait_ms: u64,
    /// Extra librdkafka properties for every client (for example security settings).
    pub client_properties: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: "taskstream.events".into(),
            partitions: 12,
            replication_factor: 1,
            client_id: "taskstream".into(),
            linger_ms: 1,
            append_timeout_ms: 5_000,
            confirm_timeout_ms: 5_000,
            fetch_wait_ms: 10,
            tail_fetch_wait_ms: 100,
            client_properties: BTreeMap::new(),
        }
    }
}

impl LogConfig {
    /// The topic of dead letters for this log: `<topic>.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }

    pub(crate) fn append_timeout(&self) -> Duration {
        Duration::from_millis(self.append_timeout_ms)
    }

    pub(crate) fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }

    /// A client configuration with the common settings and the extra properties.
    pub(crate) fn client_config(&self, role: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{role}", self.client_id))
            .set("socket.keepalive.enable", "true")
            .set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &self.client_properties {
            config.set(k, v);
        }
        config
    }
}

/// A record's place in the log: the consistency token a command returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogPosition {
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.partition, self.offset)
    }
}

impl std::str::FromStr for LogPosition {
    type Err = String;

    /// Parses `partition@offset`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, o) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?} is not partition@offset"))?;
        let partition = p
            .parse::<i32>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| format!("{p:?} is not a partition"))?;
        let offset = o
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| format!("{o:?} is not an offset"))?;
        Ok(Self { partition, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_and_parse() {
        let p = LogPosition {
            partition: 3,
            offset: 42,
        };
        assert_eq!(p.to_string(), "3@42");
        assert_eq!("3@42".parse::<LogPosition>(), Ok(p));
        for bad in ["", "3", "@1", "a@1", "1@b", "-1@2", "1@-2"] {
            assert!(bad.parse::<LogPosition>().is_err(), "{bad}");
        }
    }
}
