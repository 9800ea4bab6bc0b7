//! command-service: REST commands checked against aggregate state and appended to the event log.
//!
//! Receives REST commands, checks them against the in-memory state of the aggregates of the
//! partitions it owns, and appends the resulting commits to the event log (the system of record),
//! answering only once its own commit is confirmed as the winner in log order.
//!
//! # Layout
//!
//! - [`domain`]: the pure core — the task aggregate's rules and input validation.
//! - [`build`]: builds the HTTP server (ops endpoints for now) from [`Settings`].

pub mod domain;

use axum::Router;
use event_store::LogConfig;
use serde::{Deserialize, Serialize};
use service_kit::http::{HttpApp, Readiness, broker_check, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "command-service";

/// Everything the service is configured with; see the README for the variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub kafka: LogConfig,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(8081),
            kafka: LogConfig::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Builds the service and binds its port; run it with [`HttpApp::run`].
pub async fn build(settings: Settings) -> anyhow::Result<HttpApp> {
    let readiness = Readiness::new().check("broker", broker_check(settings.kafka.clone()));
    let router = Router::new().merge(ops_routes(readiness));
    HttpApp::bind(settings.http.addr(), router, SERVICE).await
}
