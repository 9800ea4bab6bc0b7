//! command-service in this process: built from [`command_service::build`], served on a free
//! port of `127.0.0.1`, ready once `GET /ready` answers 200 (its state rebuilt from the log).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use command_service::Settings;
use command_service::snapshot::SnapshotSettings;
use event_store::LogConfig;
use reqwest::{Client, StatusCode};
use secrecy::SecretString;
use service_kit::auth::AuthSettings;
use service_kit::database::DatabaseSettings;
use service_kit::settings::HttpSettings;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often `/ready` is asked while waiting (each ask also makes the service ping the broker).
pub const READY_POLL: Duration = Duration::from_millis(50);

/// How long a stopping service may take to finish its requests.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of a service on `kafka`'s topic: a free port, the default (development) JWT
/// secret, default telemetry (no subscriber is installed, so nothing is logged), and snapshots
/// in `snapshots` (none without).
pub fn settings(kafka: LogConfig, snapshots: Option<DatabaseSettings>) -> Settings {
    Settings {
        http: HttpSettings::with_port(0),
        kafka,
        auth: AuthSettings::default(),
        // Every partition is snapshotted after the start's catch-up, however few records it
        // holds, so a smaller `--restart-events` is timed the same way.
        snapshots: SnapshotSettings {
            enabled: snapshots.is_some(),
            min_records: 1,
            ..SnapshotSettings::default()
        },
        database: snapshots.unwrap_or_default(),
        // One replica, owning every partition.
        ownership: Default::default(),
        telemetry: Default::default(),
    }
}

/// The database services keep their snapshots in, and a look at what they stored.
#[derive(Debug)]
pub struct Snapshots {
    database: DatabaseSettings,
    pool: PgPool,
}

impl Snapshots {
    pub async fn connect(url: &str) -> Result<Self> {
        let database = DatabaseSettings {
            url: SecretString::from(url.to_owned()),
            ..DatabaseSettings::default()
        };
        let pool = database.pool()?;
        migrations::run(&pool)
            .await
            .context("migrate the snapshot database (is Postgres up? ops/dev infra)")?;
        Ok(Self { database, pool })
    }

    /// Settings of a service on `kafka`'s topic that restores and takes snapshots here.
    pub fn settings(&self, kafka: LogConfig) -> Settings {
        settings(kafka, Some(self.database.clone()))
    }

    /// Waits until the snapshots of `topic` cover its first `records` records, and returns how
    /// long that took.
    pub async fn wait_until_covered(
        &self,
        topic: &str,
        records: i64,
        timeout: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let covered: Option<i64> = sqlx::query_scalar(
                "SELECT sum(next_offset)::bigint FROM command_snapshots WHERE topic = $1",
            )
            .bind(topic)
            .fetch_one(&self.pool)
            .await
            .context("read the snapshots")?;
            if covered.unwrap_or(0) >= records {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("the snapshots of {topic} cover {covered:?} of {records} records");
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

/// A running command-service.
#[derive(Debug)]
pub struct InProcess {
    base: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<()>>,
}

impl InProcess {
    /// Builds and starts the service and waits until `/ready` answers 200, for at most
    /// `timeout`. Returns the service and the time from the call of `build` until the first 200
    /// (at most [`READY_POLL`] late).
    pub async fn start(
        settings: Settings,
        client: &Client,
        timeout: Duration,
    ) -> Result<(Self, Duration)> {
        let topic = settings.kafka.topic.clone();
        let started = Instant::now();
        let app = command_service::build(settings)
            .await
            .with_context(|| format!("build command-service on topic {topic}"))?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async move {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        }));
        let service = Self { base, stop, server };
        let ready = service.wait_ready(client, started, timeout).await;
        match ready {
            Ok(()) => Ok((service, started.elapsed())),
            Err(error) => {
                // Best effort: the readiness error is the one worth reporting.
                let _ = service.stop().await;
                Err(error.context(format!("command-service on topic {topic}")))
            }
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn wait_ready(&self, client: &Client, started: Instant, timeout: Duration) -> Result<()> {
        let url = format!("{}/ready", self.base);
        loop {
            if self.server.is_finished() {
                bail!("the server stopped before it was ready");
            }
            let status = client.get(&url).send().await.map(|r| r.status());
            if matches!(status, Ok(StatusCode::OK)) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "not ready after {:.0} s (last answer of {url}: {status:?})",
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Stops the service and waits for it to finish (aborting it after a timeout).
    pub async fn stop(self) -> Result<()> {
        // The server may have stopped already; then there is no one to tell.
        let _ = self.stop.send(());
        let mut server = self.server;
        match tokio::time::timeout(STOP_TIMEOUT, &mut server).await {
            Ok(finished) => finished
                .context("the command-service task panicked")?
                .context("command-service failed"),
            Err(_) => {
                server.abort();
                bail!(
                    "command-service did not stop within {} s",
                    STOP_TIMEOUT.as_secs()
                )
            }
        }
    }
}
