//! projection-service: Idempotent projectors from the event log into Postgres read models.
//!
//! Consumes the event log in a consumer group and maintains the Postgres read models
//! idempotently (`processed_events`, offsets stored with each batch).
//!
//! # Layout
//!
//! - [`Application`]: applies the migrations and serves the ops endpoints, from [`Settings`].

use axum::Router;
use event_store::LogConfig;
use serde::{Deserialize, Serialize};
use service_kit::database::DatabaseSettings;
use service_kit::http::{HttpApp, Readiness, broker_check, database_check, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "projection-service";

/// Everything the service is configured with; see the README for the variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub kafka: LogConfig,
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(8083),
            kafka: LogConfig::default(),
            database: DatabaseSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Builds the service and binds its port; run it with [`HttpApp::run`].
pub async fn build(settings: Settings) -> anyhow::Result<HttpApp> {
    let pool = settings.database.pool()?;
    migrations::run(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("applying migrations: {e:#}"))?;
    let readiness = Readiness::new()
        .check("broker", broker_check(settings.kafka.clone()))
        .check("database", database_check(pool));
    let router = Router::new().merge(ops_routes(readiness));
    HttpApp::bind(settings.http.addr(), router, SERVICE).await
}
