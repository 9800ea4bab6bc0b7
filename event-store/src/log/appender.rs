//! Appending commits: one Kafka record per commit, keyed and partitioned by user.

use std::time::Instant;

use opentelemetry::propagation::Injector;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::{LogConfig, LogPosition, admin};
use crate::commit::Commit;
use crate::error::{Error, Result};
use crate::metrics;
use crate::partition::partition_for;

/// Kafka header names.
pub mod headers {
    pub const EVENT_TYPE: &str = "event_type";
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const COMMIT_ID: &str = "commit_id";
    pub const TRACEPARENT: &str = "traceparent";
}

/// Appends commits with the idempotent producer (`acks=all`), so a retried send never duplicates.
///
/// Cheap to clone; clones share one producer.
#[derive(Clone)]
pub struct Appender {
    producer: FutureProducer,
    config: LogConfig,
    partitions: i32,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("topic", &self.config.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Appender {
    /// Connects to the log and checks the topic exists with the configured partition count.
    pub async fn connect(config: &LogConfig) -> Result<Self> {
        let partitions = admin::partition_count(config, &config.topic).await?;
        if partitions != config.partitions {
            return Err(Error::PartitionMismatch {
                topic: config.topic.clone(),
                expected: config.partitions,
                actual: partitions,
            });
        }
        let producer: FutureProducer = config
            .client_config("appender")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.append_timeout_ms.to_string())
            .set("partitioner", "murmur2_random")
            .create()
            .map_err(|e| Error::from_kafka(&config.brokers, e))?;
        Ok(Self {
            producer,
            config: config.clone(),
            partitions,
        })
    }

    /// The topic's partition count.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The partition that holds `user_id`'s events.
    pub fn partition_of(&self, user_id: &str) -> i32 {
        partition_for(user_id, self.partitions)
    }

    /// Appends one commit and returns its position once the broker acknowledged it to all
    /// in-sync replicas. The current OpenTelemetry context travels as a `traceparent` header.
    #[tracing::instrument(skip_all, fields(commit_id = %commit.commit_id, aggregate_id = %commit.aggregate_id()))]
    pub async fn append(&self, commit: &Commit) -> Result<LogPosition> {
        let payload = commit.encode();
        self.send(commit, &payload).await
    }

    /// Appends raw bytes as a record keyed by `key`, bypassing commit encoding. Meant for tools
    /// and tests that must put arbitrary (even invalid) records in the log.
    pub async fn append_raw(&self, key: &str, payload: &[u8]) -> Result<LogPosition> {
        let record = FutureRecord::to(&self.config.topic)
            .key(key)
            .payload(payload)
            .partition(self.partition_of(key));
        self.deliver(record).await
    }

    async fn send(&self, commit: &Commit, payload: &[u8]) -> Result<LogPosition> {
        let (types, versions) = commit.header_values();
        let commit_id = commit.commit_id.to_string();
        let mut trace = TraceHeaders::default();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&opentelemetry::Context::current(), &mut trace)
        });
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::EVENT_TYPE,
                value: Some(types.as_str()),
            })
            .insert(Header {
                key: headers::SCHEMA_VERSION,
                value: Some(versions.as_str()),
            })
            .insert(Header {
                key: headers::COMMIT_ID,
                value: Some(commit_id.as_str()),
            });
        for (key, value) in &trace.0 {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: Some(value.as_str()),
            });
        }
        let user = commit.user_id().as_str();
        let record = FutureRecord::to(&self.config.topic)
            .key(user)
            .payload(payload)
            .partition(self.partition_of(user))
            .headers(headers);
        self.deliver(record).await
    }

    async fn deliver(&self, record: FutureRecord<'_, str, [u8]>) -> Result<LogPosition> {
        let started = Instant::now();
        let result = self
            .producer
            .send(record, Timeout::After(self.config.append_timeout()))
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(delivery) => {
                metrics::APPENDS.with_label_values(&["ok"]).inc();
                metrics::APPEND_SECONDS
                    .with_label_values(&["ok"])
                    .observe(elapsed);
                Ok(LogPosition {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((error, _)) => {
                let error = Error::from_kafka(&self.config.brokers, error);
                let outcome = if error.is_transient() {
                    "unavailable"
                } else {
                    "error"
                };
                metrics::APPENDS.with_label_values(&[outcome]).inc();
                metrics::APPEND_SECONDS
                    .with_label_values(&[outcome])
                    .observe(elapsed);
                Err(error)
            }
        }
    }

    /// Waits until every queued record is acknowledged or failed.
    pub fn flush(&self) -> Result<()> {
        self.producer
            .flush(self.config.append_timeout())
            .map_err(|e| Error::from_kafka(&self.config.brokers, e))
    }
}

#[derive(Default)]
struct TraceHeaders(Vec<(String, String)>);

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}
