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
//! - [`snapshot`]: per-partition snapshots of that state in Postgres, so a start reads only the
//!   end of the log.
//! - [`ownership`]: which partitions this replica owns, and forwarding a command to the replica
//!   that owns its user's partition.
//! - [`service`]: the command pipeline (idempotency, `If-Match`, append, confirm, retry).
//! - [`http`]: routes, headers and responses; [`error`]: problem+json errors.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`) and docs UI (`/docs`).
//! - [`build`]: wires it all from [`Settings`].

pub mod domain;
pub mod error;
pub mod http;
pub mod input;
pub mod openapi;
pub mod ownership;
pub mod service;
pub mod snapshot;
pub mod state;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use event_store::{Appender, Arbiter, LogConfig, LogTail, StartAt, Writer};
use serde::{Deserialize, Serialize};
use service_kit::auth::{AuthSettings, Jwt};
use service_kit::database::DatabaseSettings;
use service_kit::http::{HttpApp, Readiness, broker_check, ops_routes};
use service_kit::settings::HttpSettings;
use service_kit::telemetry::TelemetrySettings;

use crate::ownership::{Ownership, OwnershipSettings};
use crate::service::CommandService;
use crate::snapshot::{SnapshotSettings, SnapshotStore};
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
    /// Where snapshots are kept (only used with snapshots enabled).
    pub database: DatabaseSettings,
    pub snapshots: SnapshotSettings,
    /// This replica's share of the partitions (every partition when alone).
    pub ownership: OwnershipSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::with_port(8081),
            kafka: LogConfig::default(),
            auth: AuthSettings::default(),
            database: DatabaseSettings::default(),
            snapshots: SnapshotSettings::default(),
            ownership: OwnershipSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Builds the service and binds its port; run it with [`HttpApp::run`].
///
/// The state of every partition this replica owns is restored from its snapshot (where one fits) and the log after
/// it, in the background; until it is, `/ready` answers `503` and commands `503` with
/// `Retry-After`.
pub async fn build(settings: Settings) -> anyhow::Result<HttpApp> {
    let (api, readiness) = api(&settings).await?;
    let router = Router::new()
        .merge(api)
        .merge(openapi::routes())
        .merge(ops_routes(readiness));
    HttpApp::bind(settings.http.addr(), router, SERVICE).await
}

/// The snapshot store, if snapshots are enabled and the database answers; without it every start
/// reads the whole log.
async fn snapshot_store(settings: &Settings) -> Option<SnapshotStore> {
    if !settings.snapshots.enabled {
        return None;
    }
    let opened = match settings.database.pool() {
        Ok(pool) => SnapshotStore::open(pool, &settings.kafka.topic).await,
        Err(error) => Err(error),
    };
    match opened {
        Ok(store) => Some(store),
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "snapshots unavailable: this start reads the whole log and takes none"
            );
            None
        }
    }
}

/// The command routes (`/api/{user_id}/…`) and their readiness checks, without ops endpoints
/// or the OpenAPI document, so an all-in-one process can serve them beside the query routes.
pub async fn api(settings: &Settings) -> anyhow::Result<(Router, Readiness)> {
    let appender = Appender::connect(&settings.kafka).await?;
    let partitions = appender.partitions();
    let hostname = service_kit::replica::hostname();
    let ownership = Ownership::new(&settings.ownership, partitions, hostname.as_deref())?;
    let owned = ownership.owned();
    tracing::info!(
        ordinal = ownership.ordinal(),
        partitions = ?owned,
        "owning partitions"
    );
    let store = snapshot_store(settings).await;
    let (aggregates, arbiter, starts) = match &store {
        Some(store) => snapshot::restore_all(store, &settings.kafka, &owned).await,
        None => (
            state::Aggregates::default(),
            Arbiter::new(),
            owned.iter().map(|p| (*p, StartAt::Beginning)).collect(),
        ),
    };
    let snapshotted: HashMap<i32, i64> = starts
        .iter()
        .filter_map(|(p, s)| match s {
            StartAt::Offset(o) => Some((*p, *o)),
            _ => None,
        })
        .collect();
    let state = SharedState::new(aggregates);
    let tail =
        Arc::new(LogTail::start(&settings.kafka, SERVICE, &starts, arbiter, state.clone()).await?);
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    {
        let tail = Arc::clone(&tail);
        let state = state.clone();
        let snapshots = settings.snapshots.clone();
        tokio::spawn(async move {
            let caught_up = tail.caught_up().await.is_ok();
            // Snapshots are taken while the service (its tail) lives.
            let alive = Arc::downgrade(&tail);
            drop(tail);
            if caught_up {
                tracing::info!("state rebuilt from the event log");
                ready_tx.send_replace(true);
                if let Some(store) = store {
                    let partitions = (owned, partitions);
                    snapshot::run(store, state, partitions, snapshots, snapshotted, alive).await;
                }
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
    let routes = http::routes(app_state).route_layer(axum::middleware::from_fn_with_state(
        ownership,
        ownership::forward_to_owner,
    ));
    Ok((routes, readiness))
}
