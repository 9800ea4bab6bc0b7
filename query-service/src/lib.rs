//! query-service: REST queries over the Postgres read models.
//!
//! Answers REST queries from the read models that projection-service maintains in the active
//! read-model generation (a Postgres schema `rm_<n>`); it never reads the log. Every route is
//! under `/api/{user_id}/…`, needs a JWT whose `sub` is `{user_id}`, and may wait for the
//! projections to reach a command's consistency token (read-your-writes).
//!
//! # Layout
//!
//! - [`http`]: routes, the caller extractor (JWT + `X-Consistency-Token`), responses.
//! - [`params`]: query-string parsing; every invalid parameter is listed in one `400`.
//! - [`cursor`]: opaque keyset cursors bound to the filters they were issued for.
//! - [`store`]: the SQL of every query, against the active generation's schema.
//! - [`generation`]: the active generation, cached and kept current by `LISTEN` and polling.
//! - [`consistency`]: waiting (bounded) until the projections reached a token.
//! - [`view`]: the JSON shapes; [`openapi`]: `/openapi.json` and `/docs`.
//! - [`error`]: problem+json errors.
//! - [`build`] wires it all from [`Settings`]; [`AppState::connect`] and [`router`] give the
//!   query routes alone, so one process can serve them next to the command routes.

pub mod consistency;
pub mod cursor;
pub mod error;
pub mod generation;
pub mod http;
pub mod openapi;
pub mod params;
pub mod store;
pub mod view;

use std::time::Duration;

use axum::Router;
use event_store::LogConfig;
use serde::{Deserialize, Serialize};
use service_kit::auth::AuthSettings;
use service_kit::database::DatabaseSettings;
use service_kit::http::{HttpApp, Readiness, broker_check, database_check, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;

pub use crate::http::AppState;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "query-service";

/// Everything the service is configured with; see the README for the variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub kafka: LogConfig,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub query: QuerySettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(8082),
            kafka: LogConfig::default(),
            database: DatabaseSettings::default(),
            auth: AuthSettings::default(),
            query: QuerySettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// How queries wait and how the active generation is followed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuerySettings {
    /// The longest a query with `X-Consistency-Token` waits for the projections before `504`.
    pub consistency_wait_ms: u64,
    /// How often the active generation is re-read, besides `LISTEN read_model_switched`.
    pub generation_refresh_ms: u64,
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            consistency_wait_ms: 2_000,
            generation_refresh_ms: 1_000,
        }
    }
}

impl QuerySettings {
    pub fn consistency_wait(&self) -> Duration {
        Duration::from_millis(self.consistency_wait_ms)
    }

    pub fn generation_refresh(&self) -> Duration {
        Duration::from_millis(self.generation_refresh_ms.max(10))
    }
}

/// The query routes (`/api/{user_id}/…`) alone — no ops endpoints, no `/openapi.json` — so an
/// all-in-one process can merge them with the command routes on one port (and merge
/// [`openapi::ApiDoc`] into its own document).
pub fn router(state: AppState) -> Router {
    http::routes(state)
}

/// The readiness checks of the query routes: the database answers and a read-model generation
/// is active.
pub fn readiness(state: &AppState, readiness: Readiness) -> Readiness {
    let generations = state.generations.clone();
    readiness
        .check("database", database_check(state.pool.clone()))
        .check("read_models", move || {
            let generations = generations.clone();
            async move {
                generations
                    .current()
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            }
        })
}

/// Builds the service and binds its port; run it with [`HttpApp::run`].
///
/// Must run inside a Tokio runtime: it starts following the active read-model generation.
pub async fn build(settings: Settings) -> anyhow::Result<HttpApp> {
    let state = AppState::connect(&settings)?;
    let checks = readiness(
        &state,
        Readiness::new().check("broker", broker_check(settings.kafka.clone())),
    );
    let app = Router::new()
        .merge(router(state))
        .merge(openapi::routes())
        .merge(ops_routes(checks));
    HttpApp::bind(settings.http.addr(), app, SERVICE).await
}
