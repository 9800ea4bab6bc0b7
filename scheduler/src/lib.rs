//! scheduler: Clock-driven work (reminders, recurrence) written to the event log.
//!
//! Owns everything driven by the clock: reminders and recurring tasks. What it decides is
//! appended to the event log with deterministic event ids, so a replay fires nothing again.
//!
//! # Layout
//!
//! - [`build`]: builds the HTTP server (ops endpoints for now) from [`Settings`].

use axum::Router;
use event_store::LogConfig;
use serde::{Deserialize, Serialize};
use service_kit::database::DatabaseSettings;
use service_kit::http::{HttpApp, Readiness, broker_check, database_check, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "scheduler";

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
            http: HttpSettings::with_port(8084),
            kafka: LogConfig::default(),
            database: DatabaseSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Builds the service and binds its port; run it with [`HttpApp::run`].
pub async fn build(settings: Settings) -> anyhow::Result<HttpApp> {
    let pool = settings.database.pool()?;
    let readiness = Readiness::new()
        .check("broker", broker_check(settings.kafka.clone()))
        .check("database", database_check(pool));
    let router = Router::new().merge(ops_routes(readiness));
    HttpApp::bind(settings.http.addr(), router, SERVICE).await
}
