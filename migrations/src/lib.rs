//! Taskstream's Postgres schema: the SQL files in `migrations/sql/`, embedded here so services and
//! tools apply them at start (`sqlx migrate run --source migrations/sql` works as well).
//!
//! # Layout
//!
//! - `sql/<timestamp>_<name>.sql`: forward-only migrations, applied in order, each once.
//! - [`MIGRATOR`] / [`run`]: apply them.
//! - `read-model/tables.sql` and [`generations`]: the read models, created in a schema per
//!   generation so a rebuild fills a new one while the active one serves.
//! - [`testing`] (feature `test-support`): a fresh, migrated database per test.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// Every migration, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./sql");

/// Applies the migrations not yet applied. Safe to run concurrently from several processes
/// (sqlx takes an advisory lock) and again after success.
pub async fn run(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

pub mod generations;

#[cfg(feature = "test-support")]
pub mod testing {
    //! A fresh database per test, so tests run in parallel against the real Postgres.

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sqlx::{Connection, Executor, PgConnection, PgPool};

    /// The server tests use: `TASKSTREAM_DATABASE__URL`, default the local stack's.
    pub fn database_url() -> String {
        std::env::var("TASKSTREAM_DATABASE__URL")
            .unwrap_or_else(|_| "postgres://taskstream:taskstream@127.0.0.1:5432/taskstream".into())
    }

    /// Creates a uniquely named database, applies the migrations, and returns a pool to it and
    /// its URL.
    pub async fn fresh_database() -> (PgPool, String) {
        let url = database_url();
        let options: PgConnectOptions = url.parse().expect("valid database URL");
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&options)
            .await
            .expect("connect to Postgres (is the local stack up? run ./ops/dev infra)");
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create test database");
        let options = options.database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .expect("connect to test database");
        crate::run(&pool).await.expect("migrate test database");
        let (base, _) = url.rsplit_once('/').expect("URL has a database");
        (pool, format!("{base}/{name}"))
    }
}
