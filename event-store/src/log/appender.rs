//! Appending commits: one Kafka record per commit, keyed and partitioned by user.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use opentelemetry::propagation::Injector;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::{LogConfig, LogPosition, admin};
use crate::commit::Commit;
use crate::error::{Error, Result, record_at_fault};
use crate::metrics;
use crate::partition::partition_for;

/// Kafka header names.
pub mod headers {
    pub const EVENT_TYPE: &str = "event_type";
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const TRACEPARENT: &str = "traceparent";
}

/// Appends commits with the idempotent producer (`acks=all`), so a retried send never duplicates.
///
/// Cheap to clone; clones share one producer. When the broker answers with an error the producer
/// cannot recover from (a timeout while the broker was away, a restarted broker that lost the
/// producer's sequence state, or a fatal idempotence error), the producer is replaced by a fresh
/// one.
#[derive(Clone)]
pub struct Appender {
    producer: Arc<RwLock<(u64, FutureProducer)>>,
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
        Ok(Self {
            producer: Arc::new(RwLock::new((0, Self::producer(config)?))),
            config: config.clone(),
            partitions,
        })
    }

    /// The producer settings of every append: the idempotent producer with `acks=all`, the
    /// configured linger and timeout, and Kafka's key partitioner. Public so benchmarks measure
    /// raw produce with exactly these settings.
    pub fn producer_config(config: &LogConfig, role: &str) -> rdkafka::ClientConfig {
        let mut client = config.client_config(role);
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.append_timeout_ms.to_string())
            .set("partitioner", "murmur2_random");
        client
    }

    fn producer(config: &LogConfig) -> Result<FutureProducer> {
        Self::producer_config(config, "appender")
            .create()
            .map_err(|e| Error::from_kafka(&config.brokers, e))
    }

    fn current(&self) -> (u64, FutureProducer) {
        self.producer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces producer `generation` with a fresh one (unless another caller already did).
    fn replace_producer(&self, generation: u64, reason: &KafkaError) {
        let mut slot = self
            .producer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.0 != generation {
            return;
        }
        match Self::producer(&self.config) {
            Ok(fresh) => {
                tracing::warn!(%reason, "replacing the log producer after an unrecoverable error");
                *slot = (generation + 1, fresh);
            }
            Err(error) => tracing::error!(%error, "cannot create a new log producer"),
        }
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
        let (generation, producer) = self.current();
        let result = producer
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
                // Any failure but a bad record retires the producer: a broker that comes back
                // may not know its producer id any more (tansu's storage even fails on it), and
                // a fresh producer starts a clean idempotent session.
                let code = error.rdkafka_error_code();
                let stale = producer.client().fatal_error().is_some()
                    || !(code == Some(RDKafkaErrorCode::QueueFull) || record_at_fault(code));
                if stale {
                    self.replace_producer(generation, &error);
                }
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
        self.current()
            .1
            .flush(self.config.append_timeout())
            .map_err(|e| Error::from_kafka(&self.config.brokers, e))
    }
}

#[derive(Default)]
struct TraceHeaders(Vec<(String, String)>);

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing; every header costs the broker a row.
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}
