//! Shared helpers: a fresh topic and database, a workload appended to the real broker, the
//! projector started in-process, and waiting for it to catch up.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::log::admin;
use event_store::workload::Workload;
use event_store::{Appender, LogConfig};
use futures::StreamExt;
use migrations::generations::{self, Generation};
use projection_service::dead_letters::DeadLetterTopic;
use projection_service::rebuild::{RebuildOptions, RebuildReport, rebuild};
use projection_service::{ProjectionSettings, Settings};
use secrecy::SecretString;
use service_kit::database::DatabaseSettings;
use service_kit::settings::HttpSettings;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub struct Env {
    pub kafka: LogConfig,
    pub pool: PgPool,
    pub database_url: String,
}

impl Env {
    pub async fn new(partitions: i32) -> Self {
        service_kit::telemetry::init_for_tests();
        let kafka =
            event_store::testing::fresh_topic(&event_store::testing::shared_brokers(), partitions)
                .await;
        let (pool, database_url) = migrations::testing::fresh_database().await;
        Self {
            kafka,
            pool,
            database_url,
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            http: HttpSettings::with_port(0),
            kafka: self.kafka.clone(),
            database: DatabaseSettings {
                url: SecretString::from(self.database_url.clone()),
                ..DatabaseSettings::default()
            },
            projection: ProjectionSettings {
                lag_interval_ms: 500,
                ..ProjectionSettings::default()
            },
            ..Settings::default()
        }
    }

    /// Starts the service in this process; cancel the token to stop its projector.
    pub async fn start_projector(&self) -> CancellationToken {
        self.start_projector_with(self.settings()).await
    }

    /// Starts the service in this process with `settings`; cancel the token to stop it.
    pub async fn start_projector_with(&self, settings: Settings) -> CancellationToken {
        let cancel = CancellationToken::new();
        let app = projection_service::build_with(settings, cancel.clone())
            .await
            .expect("projection-service starts");
        let stop = cancel.clone();
        tokio::spawn(async move { app.run(async move { stop.cancelled().await }).await });
        cancel
    }

    /// Appends `records` records of a workload; returns how many records were appended.
    pub async fn append_workload(&self, workload: &mut Workload, records: usize) -> usize {
        let appender = Appender::connect(&self.kafka).await.expect("appender");
        let mut batch = Vec::with_capacity(records + 8);
        while batch.len() < records {
            batch.extend(workload.next_records());
        }
        let count = batch.len();
        futures::stream::iter(batch)
            .map(|r| {
                let appender = &appender;
                async move {
                    appender
                        .append_raw(&r.user, &r.payload)
                        .await
                        .expect("append")
                }
            })
            .buffered(512)
            .collect::<Vec<_>>()
            .await;
        count
    }

    pub async fn append_raw(&self, key: &str, payload: &[u8]) -> event_store::LogPosition {
        Appender::connect(&self.kafka)
            .await
            .expect("appender")
            .append_raw(key, payload)
            .await
            .expect("append")
    }

    pub async fn active(&self) -> Generation {
        generations::active(&self.pool)
            .await
            .expect("query")
            .expect("an active generation")
    }

    pub async fn ends(&self) -> BTreeMap<i32, i64> {
        admin::watermarks(&self.kafka, &self.kafka.topic)
            .await
            .expect("watermarks")
            .into_iter()
            .filter(|(_, _, high)| *high > 0)
            .map(|(p, _, high)| (p, high))
            .collect()
    }

    /// Waits until `generation` has applied every record now in the log.
    pub async fn wait_caught_up(&self, generation: &Generation, within: Duration) {
        self.wait_caught_up_on(generation, |_| true, within).await;
    }

    /// Waits until `generation` has applied every record now in the partitions `selected` picks.
    pub async fn wait_caught_up_on(
        &self,
        generation: &Generation,
        selected: impl Fn(i32) -> bool,
        within: Duration,
    ) {
        let mut ends = self.ends().await;
        ends.retain(|p, _| selected(*p));
        let deadline = Instant::now() + within;
        loop {
            let at = projection_service::store::offsets(&self.pool, generation)
                .await
                .expect("offsets");
            if ends
                .iter()
                .all(|(p, end)| at.get(p).copied().unwrap_or(0) >= *end)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "generation {} did not catch up within {within:?}: at {at:?}, ends {ends:?}",
                generation.number
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn contents(
        &self,
        generation: &Generation,
    ) -> BTreeMap<&'static str, Vec<serde_json::Value>> {
        projection_service::store::contents(&self.pool, generation)
            .await
            .expect("contents")
    }
}

/// Rebuilds the read models now with `options`.
pub async fn rebuild_now(env: &Env, options: RebuildOptions) -> RebuildReport {
    let sink = Arc::new(DeadLetterTopic::connect(&env.kafka).await.expect("dlq"));
    rebuild(&env.pool, &env.kafka, sink, &options)
        .await
        .expect("rebuild")
}

pub async fn built_generation(env: &Env, number: i32) -> generations::Generation {
    generations::get(&env.pool, number)
        .await
        .expect("query")
        .expect("generation exists")
}

/// The rows a clean rebuild of the whole log gives, in a new generation left inactive.
pub async fn clean_rebuild(env: &Env) -> BTreeMap<&'static str, Vec<serde_json::Value>> {
    let report = rebuild_now(
        env,
        RebuildOptions {
            no_switch: true,
            switch_lag: 0,
            ..RebuildOptions::default()
        },
    )
    .await;
    env.contents(&built_generation(env, report.generation).await)
        .await
}

/// Asserts two generations hold the same rows, naming the first table that differs.
pub fn assert_same(
    left: &BTreeMap<&'static str, Vec<serde_json::Value>>,
    right: &BTreeMap<&'static str, Vec<serde_json::Value>>,
) {
    for (table, rows) in left {
        let other = &right[table];
        if rows != other {
            let first = rows
                .iter()
                .zip(other)
                .position(|(a, b)| a != b)
                .unwrap_or(rows.len().min(other.len()));
            panic!(
                "{table} differs: {} vs {} rows; first difference at row {first}:\n{:#}\nvs\n{:#}",
                rows.len(),
                other.len(),
                rows.get(first).cloned().unwrap_or_default(),
                other.get(first).cloned().unwrap_or_default()
            );
        }
    }
}
