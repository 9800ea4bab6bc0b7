//! projection-service: Idempotent projectors from the event log into Postgres read models.
//!
//! Consumes the event log in a consumer group; each batch is one Postgres transaction that
//! records the batch's event ids in `processed_events`, applies the log-order arbitration rule
//! and every projector, and stores the consumed offsets. Read models live in a schema per
//! *generation* (see [`migrations::generations`]), so a rebuild fills a new one while the active
//! one serves.
//!
//! # Layout
//!
//! - [`model`]: the pure core — how events change rows, and the plan of one batch.
//! - [`store`]: one batch in one transaction against a generation.
//! - [`projector`]: the live consumer loop, retries and lag metrics.
//! - [`rebuild`]: rebuild into a new generation and switch over.
//! - [`dead_letters`]: the dead-letter topic, listing and re-driving.
//! - [`audit`]: the audit trail from the log, and its verification against Postgres.
//! - [`metrics`]: Prometheus metrics.
//! - [`build`]: wires the service from [`Settings`].

pub mod audit;
pub mod dead_letters;
pub mod metrics;
pub mod model;
pub mod projector;
pub mod rebuild;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use event_store::LogConfig;
use serde::{Deserialize, Serialize};
use service_kit::database::DatabaseSettings;
use service_kit::http::{HttpApp, Readiness, broker_check, database_check, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;
use tokio_util::sync::CancellationToken;

use crate::dead_letters::DeadLetterTopic;
use crate::projector::LiveOptions;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "projection-service";

/// Everything the service is configured with; see the README for the variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub kafka: LogConfig,
    pub database: DatabaseSettings,
    pub projection: ProjectionSettings,
    pub telemetry: TelemetrySettings,
}

/// How the projector reads and batches.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectionSettings {
    /// The partitions this process projects: `all`, or a list such as `0-5` or `0,3,6,9` (one
    /// share per replica). Replicas that overlap stay correct (each batch locks its partitions'
    /// offsets in Postgres and skips what is already applied), they only duplicate work.
    pub partitions: String,
    /// Replicas splitting the partitions between them (with `partitions` left at `all`): replica
    /// `i` of `n` projects the partitions `p` with `p % n == i`. 1: this process is alone.
    pub replicas: usize,
    /// This replica's ordinal (0-based) when `replicas` is above 1. Unset: the number after the
    /// last `-` of the host name, as a StatefulSet names its pods.
    pub ordinal: Option<usize>,
    /// Most records in one batch (one transaction).
    pub batch_max: usize,
    /// How long a batch waits for its first record.
    pub batch_wait_ms: u64,
    /// How long the log may stay quiet before the reader fetches at `idle_fetch_wait_ms`
    /// instead of the readers' `fetch.wait.max.ms`; 0: never. The broker answers every fetch
    /// only after its wait, so a short wait on a quiet log costs it work many times a second.
    pub idle_after_ms: u64,
    /// The fetch wait of a quiet log's reader (1–1000): the first record after the quiet is
    /// projected up to about twice this late, and the reader is back at the short wait after it.
    pub idle_fetch_wait_ms: u64,
    /// How often the lag gauges are updated.
    pub lag_interval_ms: u64,
}

impl Default for ProjectionSettings {
    fn default() -> Self {
        Self {
            partitions: "all".into(),
            replicas: 1,
            ordinal: None,
            batch_max: 2_000,
            batch_wait_ms: 100,
            idle_after_ms: 5_000,
            idle_fetch_wait_ms: 200,
            lag_interval_ms: 5_000,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(8083),
            kafka: LogConfig::default(),
            database: DatabaseSettings::default(),
            projection: ProjectionSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Builds the service, binds its port and starts projecting; see [`build_with`].
pub async fn build(settings: Settings) -> anyhow::Result<HttpApp> {
    build_with(settings, CancellationToken::new()).await
}

/// Starts the projector (see [`start`]) and binds the ops endpoints.
pub async fn build_with(settings: Settings, cancel: CancellationToken) -> anyhow::Result<HttpApp> {
    let readiness = start(&settings, cancel).await?;
    let router = Router::new().merge(ops_routes(readiness));
    HttpApp::bind(settings.http.addr(), router, SERVICE).await
}

/// Applies the migrations, creates the first read-model generation if there is none, and starts
/// the projector and the lag watcher (both stop when `cancel` fires). Returns the readiness
/// checks: broker, database, an active generation.
pub async fn start(settings: &Settings, cancel: CancellationToken) -> anyhow::Result<Readiness> {
    let pool = settings.database.pool()?;
    migrations::run(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("applying migrations: {e:#}"))?;
    migrations::generations::ensure_active(&pool).await?;
    let sink = Arc::new(DeadLetterTopic::connect(&settings.kafka).await?);
    let last_seen = projector::LastSeen::default();
    let projection = &settings.projection;
    let selection = projector::Selection::from_settings(
        &projection.partitions,
        projection.replicas,
        projection.ordinal,
        service_kit::replica::hostname().as_deref(),
    )?;
    let count =
        event_store::log::admin::partition_count(&settings.kafka, &settings.kafka.topic).await?;
    let partitions = selection
        .resolve(count)
        .map_err(|e| anyhow::anyhow!("choosing the partitions to project: {e:#}"))?;
    anyhow::ensure!(
        (1..=1_000).contains(&projection.idle_fetch_wait_ms),
        "TASKSTREAM_PROJECTION__IDLE_FETCH_WAIT_MS must be 1–1000, not {}",
        projection.idle_fetch_wait_ms
    );
    let options = LiveOptions {
        partitions,
        batch_max: projection.batch_max,
        batch_wait: Duration::from_millis(projection.batch_wait_ms),
        idle_after: (projection.idle_after_ms > 0)
            .then(|| Duration::from_millis(projection.idle_after_ms)),
        idle_fetch_wait: Duration::from_millis(projection.idle_fetch_wait_ms),
    };
    tokio::spawn(projector::watch_lag(
        settings.kafka.clone(),
        pool.clone(),
        last_seen.clone(),
        Duration::from_millis(settings.projection.lag_interval_ms),
        cancel.clone(),
    ));
    {
        let (config, pool, cancel) = (settings.kafka.clone(), pool.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(error) =
                projector::run_live(config, pool, sink, options, last_seen, cancel).await
            {
                tracing::error!(error = format!("{error:#}"), "the projector stopped");
            }
        });
    }
    let generation_pool = pool.clone();
    Ok(Readiness::new()
        .check("broker", broker_check(settings.kafka.clone()))
        .check("database", database_check(pool))
        .check("read_models", move || {
            let pool = generation_pool.clone();
            Box::pin(async move {
                match migrations::generations::active(&pool).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("no active read-model generation".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            })
        }))
}
