//! Reading the log in batches, from any offset (replay) or from a consumer group's offsets.

use std::collections::HashMap;
use std::time::Duration;

use futures::FutureExt;
use opentelemetry::propagation::Extractor;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{LogConfig, LogPosition, admin};
use crate::commit::Commit;
use crate::error::{Error, Result};

/// Where a reader starts in a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The first record (replay from offset 0, or the oldest retained).
    Beginning,
    /// A given offset.
    Offset(i64),
    /// The next record to be written.
    End,
}

impl From<StartAt> for Offset {
    fn from(value: StartAt) -> Self {
        match value {
            StartAt::Beginning => Offset::Beginning,
            StartAt::Offset(o) => Offset::Offset(o),
            StartAt::End => Offset::End,
        }
    }
}

/// One record read from the log, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the epoch, as stamped by the producer or broker.
    pub timestamp_ms: Option<i64>,
}

impl LogRecord {
    fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    pub fn position(&self) -> LogPosition {
        LogPosition {
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// Decodes the record as a commit; an invalid record is an error that names its position.
    pub fn decode(&self) -> Result<Commit> {
        Commit::decode(&self.payload).map_err(|source| Error::Undecodable {
            position: self.position(),
            source,
        })
    }

    /// A header's value as text, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The OpenTelemetry context the writer sent along (`traceparent`), for a child span.
    pub fn trace_context(&self) -> opentelemetry::Context {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(self))
    }
}

impl Extractor for LogRecord {
    fn get(&self, key: &str) -> Option<&str> {
        self.header(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Reads records in batches. Create it with [`assign`](Self::assign) (explicit partitions and
/// offsets: replay, tails) or [`subscribe`](Self::subscribe) (a consumer group resuming from its
/// committed offsets).
pub struct LogReader {
    consumer: StreamConsumer,
    config: LogConfig,
    topic: String,
    /// Next offset to read per partition, as far as this reader knows.
    next: HashMap<i32, i64>,
    /// Where each assigned partition started (empty for group readers).
    starts: HashMap<i32, StartAt>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("topic", &self.topic)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl LogReader {
    fn consumer(config: &LogConfig, role: &str, group: &str) -> Result<StreamConsumer> {
        config
            .client_config(role)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string())
            .set("fetch.error.backoff.ms", "50")
            .set("session.timeout.ms", "10000")
            .set("isolation.level", "read_uncommitted")
            .create()
            .map_err(|e| Error::from_kafka(&config.brokers, e))
    }

    /// Reads `topic`'s given partitions from the given offsets, outside any consumer group.
    pub fn assign(config: &LogConfig, topic: &str, starts: &[(i32, StartAt)]) -> Result<Self> {
        let consumer = Self::consumer(config, "reader", &format!("{}-reader", config.client_id))?;
        let mut reader = Self {
            consumer,
            config: config.clone(),
            topic: topic.to_owned(),
            next: HashMap::new(),
            starts: HashMap::new(),
        };
        reader.reassign(starts)?;
        Ok(reader)
    }

    /// Reads every partition of `topic` from `start`.
    pub async fn assign_all(config: &LogConfig, topic: &str, start: StartAt) -> Result<Self> {
        let partitions = admin::partition_count(config, topic).await?;
        let starts: Vec<_> = (0..partitions).map(|p| (p, start)).collect();
        Self::assign(config, topic, &starts)
    }

    /// Joins consumer group `group` on `topic`; partitions resume from the group's committed
    /// offsets (from the beginning where none are committed).
    pub fn subscribe(config: &LogConfig, topic: &str, group: &str) -> Result<Self> {
        let consumer = Self::consumer(config, "group-reader", group)?;
        consumer.subscribe(&[topic]).map_err(Error::Kafka)?;
        Ok(Self {
            consumer,
            config: config.clone(),
            topic: topic.to_owned(),
            next: HashMap::new(),
            starts: HashMap::new(),
        })
    }

    /// Waits up to `max_wait` for the first record, then takes whatever else is already fetched,
    /// up to `max` records. An empty batch means nothing arrived in time.
    pub async fn next_batch(&mut self, max: usize, max_wait: Duration) -> Result<Vec<LogRecord>> {
        let mut batch = Vec::new();
        let deadline = tokio::time::Instant::now() + max_wait;
        while batch.len() < max {
            let received = if batch.is_empty() {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(r) => Some(r.map(|m| LogRecord::from_message(&m))),
                    Err(_) => None,
                }
            } else {
                self.consumer
                    .recv()
                    .now_or_never()
                    .map(|r| r.map(|m| LogRecord::from_message(&m)))
            };
            match received {
                None => break,
                Some(Ok(record)) => {
                    self.next.insert(record.partition, record.offset + 1);
                    batch.push(record);
                }
                Some(Err(e)) => {
                    let error = Error::from_kafka(&self.config.brokers, e);
                    if batch.is_empty() {
                        return Err(error);
                    }
                    tracing::warn!(%error, "log read error after a partial batch");
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// The next offset this reader will read in each partition it has read from.
    pub fn next_offsets(&self) -> &HashMap<i32, i64> {
        &self.next
    }

    /// Whether this (assigned) reader has read `partition` up to `end` (exclusive).
    pub fn has_reached(&self, partition: i32, end: i64) -> bool {
        match (self.next.get(&partition), self.starts.get(&partition)) {
            (Some(next), _) => *next >= end,
            (None, Some(StartAt::End)) => true,
            (None, Some(StartAt::Offset(o))) => *o >= end,
            (None, _) => false,
        }
    }

    /// Reads every assigned partition up to the end it has now (its high watermark), returning
    /// everything read. For tools and tests over bounded logs; services use
    /// [`next_batch`](Self::next_batch). Fails if no record arrives for `idle_timeout` while the
    /// end is not reached.
    pub async fn read_to_end(&mut self, idle_timeout: Duration) -> Result<Vec<LogRecord>> {
        let ends: Vec<(i32, i64)> = admin::watermarks(&self.config, &self.topic)
            .await?
            .into_iter()
            .filter(|(p, low, high)| self.starts.contains_key(p) && high > low)
            .map(|(p, _, high)| (p, high))
            .collect();
        let mut all = Vec::new();
        while !ends.iter().all(|(p, end)| self.has_reached(*p, *end)) {
            let batch = self.next_batch(10_000, idle_timeout).await?;
            if batch.is_empty() {
                return Err(Error::Stalled(format!(
                    "no record within {idle_timeout:?}; read up to {:?}, ends {ends:?}",
                    self.next
                )));
            }
            all.extend(batch);
        }
        Ok(all)
    }

    /// Commits `positions` (each the last record processed) to the consumer group, so the group
    /// resumes after them.
    pub fn commit(&self, positions: &[LogPosition]) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for p in positions {
            list.add_partition_offset(&self.topic, p.partition, Offset::Offset(p.offset + 1))
                .map_err(Error::Kafka)?;
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|e| Error::from_kafka(&self.config.brokers, e))
    }

    /// Reads `starts` instead of whatever this reader was assigned (records fetched before are
    /// dropped), keeping its connection: faster than a new reader.
    pub fn reassign(&mut self, starts: &[(i32, StartAt)]) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for (partition, start) in starts {
            list.add_partition_offset(&self.topic, *partition, (*start).into())
                .map_err(Error::Kafka)?;
        }
        self.consumer.assign(&list).map_err(Error::Kafka)?;
        self.next = starts
            .iter()
            .filter_map(|(p, s)| match s {
                StartAt::Offset(o) => Some((*p, *o)),
                _ => None,
            })
            .collect();
        self.starts = starts.iter().copied().collect();
        Ok(())
    }

    /// Stops reading any partition (no more fetches) until [`reassign`](Self::reassign)ed.
    pub fn unassign(&mut self) -> Result<()> {
        self.consumer.unassign().map_err(Error::Kafka)?;
        self.next.clear();
        self.starts.clear();
        Ok(())
    }

    /// Moves this (assigned) reader's partition to `start`.
    pub fn seek(&mut self, partition: i32, start: StartAt) -> Result<()> {
        self.consumer
            .seek(&self.topic, partition, start.into(), Duration::from_secs(5))
            .map_err(|e| Error::from_kafka(&self.config.brokers, e))?;
        self.next.remove(&partition);
        self.starts.insert(partition, start);
        Ok(())
    }
}
