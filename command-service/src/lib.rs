//! command-service: REST commands checked against aggregate state and appended to the event log.
//!
//! Receives REST commands, checks them against the in-memory state of the aggregates of the
//! partitions it reads, and appends the resulting commits to the event log (the system of
//! record), answering only once its own commit is confirmed as the winner in log order.
//!
//! # Layout
//!
//! - [`domain`]: the pure core — the task aggregate's rules and input validation.
//! - [`input`]: request bodies → checked domain values (every invalid field listed).
//! - [`state`]: the aggregates' state, rebuilt from the log and kept current by its tail.
//! - [`service`]: the command pipeline (idempotency, `If-Match`, append, confirm, retry).
//! - [`http`]: routes, headers and responses; [`error`]: problem+json errors.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`) and docs UI (`/docs`).
//! - [`build`]: wires it all from [`Settings`].

pub mod domain;
pub mod error;
pub mod http;
pub mod input;
pub mod openapi;
pub mod service;
pub mod state;
pub mod view;

use std::sync::Arc;

use axum::Router;
use event_store::{Appender, Arbiter, LogConfig, LogTail, StartAt, Writer};
use serde::{Deserialize, Serialize};
use service_kit::auth::{AuthSettings, Jwt};
use service_kit::http::{HttpApp, Readiness, broker_check, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;

use crate::service::CommandService;
use crate::state::SharedState;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "command-service";

/// Everything the service is configured with; see the README for the variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub kafka: LogConfig,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(8081),
            kafka: LogConfig::default(),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Builds the service and binds its port; run it with [`HttpApp::run`].
///
/// The state of every partition is rebuilt from the log in the background; until it is, `/ready`
/// answers `503` and commands `503` with `Retry-After`.
pub async fn build(settings: Settings) -> anyhow::Result<HttpApp> {
    let (api, readiness) = api(&settings).await?;
    let router = Router::new()
        .merge(api)
        .merge(openapi::routes())
        .merge(ops_routes(readiness));
    HttpApp::bind(settings.http.addr(), router, SERVICE).await
}

/// The command routes (`/api/{user_id}/…`) and their readiness checks, without ops endpoints
/// or the OpenAPI document, so an all-in-one process can serve them beside the query routes.
pub async fn api(settings: &Settings) -> anyhow::Result<(Router, Readiness)> {
    let appender = Appender::connect(&settings.kafka).await?;
    let state = SharedState::default();
    let starts: Vec<_> = (0..appender.partitions())
        .map(|p| (p, StartAt::Beginning))
        .collect();
    let tail = Arc::new(
        LogTail::start(
            &settings.kafka,
            SERVICE,
            &starts,
            Arbiter::new(),
            state.clone(),
        )
        .await?,
    );
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    {
        let tail = Arc::clone(&tail);
        tokio::spawn(async move {
            if tail.caught_up().await.is_ok() {
                tracing::info!("state rebuilt from the event log");
                ready_tx.send_replace(true);
            }
        });
    }
    let writer = Writer::new(&settings.kafka, appender, tail);
    let app_state = http::AppState {
        service: CommandService::new(writer, state),
        jwt: Arc::new(Jwt::new(&settings.auth)),
        ready: ready.clone(),
    };
    let readiness = Readiness::new()
        .check("broker", broker_check(settings.kafka.clone()))
        .check("state", move || {
            let loaded = *ready.borrow();
            async move {
                if loaded {
                    Ok(())
                } else {
                    Err("still loading the event log".to_owned())
                }
            }
        });
    Ok((http::routes(app_state), readiness))
}
