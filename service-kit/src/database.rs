//! The Postgres connection pool.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// How to reach Postgres. The URL holds the password, so it never prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "crate::settings::serialize_secret")]
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://taskstream:taskstream@127.0.0.1:5432/taskstream"),
            max_connections: 10,
            acquire_timeout_ms: 3_000,
        }
    }
}

impl DatabaseSettings {
    /// A pool that connects lazily, so a service starts (and reports not-ready) while the
    /// database is down.
    pub fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .connect_lazy(self.url.expose_secret())?)
    }
}

/// Checks the database answers (for `/ready`).
pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
