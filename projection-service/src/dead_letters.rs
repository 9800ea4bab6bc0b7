//! Dead letters: records the projector could not decode or apply. Each goes to the dead-letter
//! topic (`<topic>.dlq`: the original key and bytes, with the error and source position in
//! headers) and is listed in the `dead_letters` table, from which an operator re-drives it after
//! a fix (`projection-service dead-letters redrive`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use event_store::{LogConfig, LogPosition, log::Appender};
use futures::future::BoxFuture;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sqlx::PgPool;

use crate::dead_letters::redrive_support::NoSink;
use crate::metrics;
use crate::model::{DeadLetter, Input};
use crate::store::{self, Mode, Statements};

/// Where new dead letters go besides the `dead_letters` table.
pub trait DeadLetterSink: Send + Sync {
    /// Sends `dead`, read from `topic`; fails if it could not be delivered, so the batch that
    /// found it is retried rather than committed without it.
    fn send<'a>(
        &'a self,
        topic: &'a str,
        dead: &'a DeadLetter,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Produces dead letters to the dead-letter topic.
pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for DeadLetterTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterTopic")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetterTopic {
    /// A producer for `config`'s dead-letter topic (created if missing, with as many partitions
    /// as the event topic, as `taskstream-log ensure` creates it).
    pub async fn connect(config: &LogConfig) -> anyhow::Result<Self> {
        let topic = config.dead_letter_topic();
        event_store::log::admin::ensure_topic(config, &topic, config.partitions)
            .await
            .with_context(|| format!("creating the dead-letter topic {topic}"))?;
        let producer = Appender::producer_config(config, "dead-letters")
            .create()
            .context("creating the dead-letter producer")?;
        Ok(Self {
            producer,
            topic,
            timeout: Duration::from_millis(config.append_timeout_ms),
        })
    }
}

impl DeadLetterSink for DeadLetterTopic {
    fn send<'a>(
        &'a self,
        topic: &'a str,
        dead: &'a DeadLetter,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let partition = dead.position.partition.to_string();
            let offset = dead.position.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dead_letter_error",
                    value: Some(dead.error.as_str()),
                })
                .insert(Header {
                    key: "source_topic",
                    value: Some(topic),
                })
                .insert(Header {
                    key: "source_partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "source_offset",
                    value: Some(offset.as_str()),
                });
            let mut record = FutureRecord::to(&self.topic)
                .payload(dead.payload.as_slice())
                .headers(headers);
            if let Some(key) = &dead.key {
                record = record.key(key.as_str());
            }
            self.producer
                .send(record, self.timeout)
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing a dead letter: {e}"))?;
            metrics::DEAD_LETTERS.inc();
            tracing::warn!(
                position = %dead.position,
                error = %dead.error,
                "record dead-lettered"
            );
            Ok(())
        })
    }
}

/// One listed dead letter.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Listed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record_key: Option<String>,
    pub error: String,
    pub dead_at: DateTime<Utc>,
    pub redriven_at: Option<DateTime<Utc>>,
    pub redrive_error: Option<String>,
    pub bytes: i32,
}

/// Dead letters of `topic`, oldest first; `pending_only` hides re-driven ones.
pub async fn list(pool: &PgPool, topic: &str, pending_only: bool) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as(
        r#"SELECT topic, "partition", "offset", record_key, error, dead_at, redriven_at,
                  redrive_error, length(payload) AS bytes
           FROM dead_letters
           WHERE topic = $1 AND (NOT $2 OR redriven_at IS NULL)
           ORDER BY "partition", "offset""#,
    )
    .bind(topic)
    .bind(pending_only)
    .fetch_all(pool)
    .await
}

/// The result of re-driving one dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redriven {
    pub position: LogPosition,
    /// `None` if it applied (or lost its race); otherwise why it still cannot be applied.
    pub error: Option<String>,
}

/// Applies pending dead letters of `topic` (all, or the one at `only`) to the active read models,
/// each in its own transaction. One that fails again stays pending with the new error.
pub async fn redrive(
    pool: &PgPool,
    topic: &str,
    only: Option<LogPosition>,
) -> anyhow::Result<Vec<Redriven>> {
    let rows: Vec<(i32, i64, Option<String>, Vec<u8>)> = sqlx::query_as(
        r#"SELECT "partition", "offset", record_key, payload FROM dead_letters
           WHERE topic = $1 AND redriven_at IS NULL
             AND ($2::int IS NULL OR ("partition" = $2 AND "offset" = $3))
           ORDER BY "partition", "offset""#,
    )
    .bind(topic)
    .bind(only.map(|p| p.partition))
    .bind(only.map(|p| p.offset))
    .fetch_all(pool)
    .await
    .context("reading dead letters")?;
    let mut results = Vec::new();
    let mut statements: BTreeMap<i32, Statements> = BTreeMap::new();
    for (partition, offset, key, payload) in rows {
        let position = LogPosition { partition, offset };
        let mut tx = pool.begin().await?;
        let generation = migrations::generations::active_for_batch(&mut tx)
            .await?
            .context("no active read-model generation")?;
        let statements = statements
            .entry(generation.number)
            .or_insert_with(|| Statements::new(generation.clone()));
        let input = Input::new(position, key, payload);
        let outcome = store::apply_batch(
            &mut tx,
            statements,
            topic,
            vec![input],
            &NoSink,
            Mode::Redrive,
            &BTreeMap::new(),
        )
        .await?;
        let error = outcome.plan.dead_letters.first().map(|d| d.error.clone());
        sqlx::query(
            r#"UPDATE dead_letters
               SET redriven_at = CASE WHEN $4::text IS NULL THEN now() END, redrive_error = $4
               WHERE topic = $1 AND "partition" = $2 AND "offset" = $3"#,
        )
        .bind(topic)
        .bind(partition)
        .bind(offset)
        .bind(&error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        results.push(Redriven { position, error });
    }
    Ok(results)
}

mod redrive_support {
    use super::*;

    /// A re-driven record is already listed; it is not sent again.
    pub(super) struct NoSink;

    impl DeadLetterSink for NoSink {
        fn send<'a>(&'a self, _: &'a str, _: &'a DeadLetter) -> BoxFuture<'a, anyhow::Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }
}
