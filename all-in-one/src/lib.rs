//! Taskstream in one process, for running it locally: the command routes and the query routes on
//! one port (the single `/api/{user_id}/…` contract), one OpenAPI document for both, and the
//! projector keeping the read models current. Production runs the services apart (see `helm/`).
//!
//! # Layout
//!
//! - [`Settings`]: the union of the services' settings, under the same variable names.
//! - [`build`]: starts everything and binds the port.

use axum::Router;
use event_store::LogConfig;
use serde::{Deserialize, Serialize};
use service_kit::auth::AuthSettings;
use service_kit::database::DatabaseSettings;
use service_kit::http::{HttpApp, openapi_routes, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

/// The name in logs and metrics.
pub const SERVICE: &str = "taskstream";

/// Everything the process is configured with: the same `TASKSTREAM_<SECTION>__<FIELD>`
/// variables as the separate services.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub kafka: LogConfig,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub query: query_service::QuerySettings,
    pub projection: projection_service::ProjectionSettings,
    pub snapshots: command_service::snapshot::SnapshotSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(8080),
            kafka: LogConfig::default(),
            database: DatabaseSettings::default(),
            auth: AuthSettings::default(),
            query: query_service::QuerySettings::default(),
            projection: projection_service::ProjectionSettings::default(),
            snapshots: Default::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Starts the projector (stopped by `cancel`), the command and query routes, and binds the port.
pub async fn build(settings: Settings, cancel: CancellationToken) -> anyhow::Result<HttpApp> {
    let projection = projection_service::Settings {
        http: settings.http.clone(),
        kafka: settings.kafka.clone(),
        database: settings.database.clone(),
        projection: settings.projection.clone(),
        telemetry: settings.telemetry.clone(),
    };
    let readiness = projection_service::start(&projection, cancel).await?;

    let commands = command_service::Settings {
        http: settings.http.clone(),
        kafka: settings.kafka.clone(),
        auth: settings.auth.clone(),
        database: settings.database.clone(),
        snapshots: settings.snapshots.clone(),
        // One process: it owns every partition.
        ownership: command_service::ownership::OwnershipSettings::default(),
        telemetry: settings.telemetry.clone(),
    };
    let (command_routes, command_ready) = command_service::api(&commands).await?;

    let queries = query_service::Settings {
        http: settings.http.clone(),
        kafka: settings.kafka.clone(),
        database: settings.database.clone(),
        auth: settings.auth.clone(),
        query: settings.query.clone(),
        telemetry: settings.telemetry.clone(),
    };
    let query_state = query_service::AppState::connect(&queries)?;
    let readiness = readiness.merge(command_ready);

    let mut doc = command_service::openapi::ApiDoc::openapi();
    doc.merge(query_service::openapi::ApiDoc::openapi());
    doc.info.title = "Taskstream".into();
    doc.info.description = Some(
        "Commands and queries on tasks. Commands answer once their events are in the log; send \
         their `X-Consistency-Token` with a query to read your own writes."
            .into(),
    );
    let router = Router::new()
        .merge(command_routes)
        .merge(query_service::router(query_state))
        .merge(openapi_routes(doc))
        .merge(ops_routes(readiness));
    HttpApp::bind(settings.http.addr(), router, SERVICE).await
}
