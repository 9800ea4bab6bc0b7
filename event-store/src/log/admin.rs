//! Topic provisioning and metadata.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::LogConfig;
use crate::error::{Error, Result};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`ensure_topic`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    Created,
    AlreadyExisted,
}

/// Creates `topic` with `partitions` partitions, infinite retention (`retention.ms=-1`,
/// `retention.bytes=-1`) and no compaction, unless it exists; then checks it has the configured
/// number of partitions.
pub async fn ensure_topic(config: &LogConfig, topic: &str, partitions: i32) -> Result<TopicState> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config("admin")
        .create()
        .map_err(|e| Error::from_kafka(&config.brokers, e))?;
    let new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(i32::from(config.replication_factor)),
    )
    .set("retention.ms", "-1")
    .set("retention.bytes", "-1");
    // `cleanup.policy` is left at the broker default (`delete`, no compaction). Setting it
    // explicitly makes tansu's retention sweep read `retention.ms=-1` as "older than 0 s" and
    // delete the whole log at its next maintenance; Kafka and Redpanda need no such setting.
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| Error::from_kafka(&config.brokers, e))?;
    let mut state = TopicState::Created;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => state = TopicState::AlreadyExisted,
            Err((_, code)) => {
                return Err(Error::from_kafka(
                    &config.brokers,
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    // The broker may take a moment before metadata shows a new topic.
    let mut waited = Duration::ZERO;
    loop {
        match partition_count(config, topic).await {
            Ok(actual) if actual == partitions => return Ok(state),
            Ok(actual) => {
                return Err(Error::PartitionMismatch {
                    topic: topic.to_owned(),
                    expected: partitions,
                    actual,
                });
            }
            Err(Error::TopicMissing(_)) if waited < METADATA_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A metadata client kept for repeated calls (readiness probes, lag gauges), so each call does not
/// create and tear down a librdkafka client.
#[derive(Clone)]
pub struct MetadataClient {
    consumer: std::sync::Arc<BaseConsumer>,
    brokers: String,
}

impl std::fmt::Debug for MetadataClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataClient")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

impl MetadataClient {
    pub fn new(config: &LogConfig) -> Result<Self> {
        let consumer: BaseConsumer = config
            .client_config("metadata")
            .create()
            .map_err(|e| Error::from_kafka(&config.brokers, e))?;
        Ok(Self {
            consumer: std::sync::Arc::new(consumer),
            brokers: config.brokers.clone(),
        })
    }

    /// Runs `work` on the blocking pool (librdkafka's metadata and watermark calls block).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&BaseConsumer, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (consumer, brokers) = (self.consumer.clone(), self.brokers.clone());
        tokio::task::spawn_blocking(move || work(&consumer, &brokers))
            .await
            .map_err(|e| Error::TailStopped(e.to_string()))?
    }

    /// The number of partitions of `topic`, or [`Error::TopicMissing`].
    pub async fn partition_count(&self, topic: &str) -> Result<i32> {
        let topic = topic.to_owned();
        self.run(move |consumer, brokers| count_partitions(consumer, brokers, &topic))
            .await
    }

    /// The low and high watermarks (first offset, next offset) of every partition of `topic`.
    pub async fn watermarks(&self, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
        let topic = topic.to_owned();
        self.run(move |consumer, brokers| {
            let partitions = count_partitions(consumer, brokers, &topic)?;
            (0..partitions)
                .map(|p| {
                    consumer
                        .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
                        .map(|(low, high)| (p, low, high))
                        .map_err(|e| Error::from_kafka(brokers, e))
                })
                .collect()
        })
        .await
    }
}

/// `topic`'s partition count as `consumer` sees it, or [`Error::TopicMissing`].
fn count_partitions(consumer: &BaseConsumer, brokers: &str, topic: &str) -> Result<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| Error::from_kafka(brokers, e))?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().len() as i32)
        }
        _ => Err(Error::TopicMissing(topic.to_owned())),
    }
}

/// The number of partitions of `topic`, or [`Error::TopicMissing`] (with a client of its own).
pub async fn partition_count(config: &LogConfig, topic: &str) -> Result<i32> {
    MetadataClient::new(config)?.partition_count(topic).await
}

/// Checks that the broker answers and the topic exists (with a client of its own).
pub async fn ping(config: &LogConfig) -> Result<()> {
    partition_count(config, &config.topic).await.map(|_| ())
}

/// The low and high watermarks (first offset, next offset) of every partition of `topic` (with a
/// client of its own).
pub async fn watermarks(config: &LogConfig, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
    MetadataClient::new(config)?.watermarks(topic).await
}
