//! Read-model generations: each generation is a schema (`rm_<n>`) with every read model table,
//! created from `read-model/tables.sql`. Exactly one generation is active; query-service reads it
//! and the projectors write it. A rebuild creates a new generation, fills it from offset 0, and
//! [`activate`]s it in the same transaction that catches it up to the active one.

use sqlx::{Executor, PgConnection, PgPool};

/// The version of `read-model/tables.sql`. Bump it with every change to that file; a generation
/// created with an older version is rebuilt, never altered in place.
pub const READ_MODEL_VERSION: i32 = 3;

/// The read model tables, created inside a generation's schema.
pub const TABLES_SQL: &str = include_str!("../read-model/tables.sql");

/// Serialises creating generations across processes.
const LOCK_KEY: i64 = 0x7461_736b_726d_0001;

/// One generation of the read models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub number: i32,
    /// The Postgres schema that holds it, `rm_<number>`.
    pub schema: String,
    pub ddl_version: i32,
    /// `building`, `active` or `retired`.
    pub state: String,
}

impl Generation {
    /// `schema.table`, quoted, for SQL text.
    pub fn table(&self, table: &str) -> String {
        format!(r#""{}"."{table}""#, self.schema)
    }

    /// Whether each `tasks` row carries the task's reminders as a task shows them (the
    /// `reminders` column, from version 3 on). Older generations are written and read without
    /// it, the reminders coming from the `reminders` table, until a rebuild replaces them.
    pub fn tasks_carry_reminders(&self) -> bool {
        self.ddl_version >= 3
    }
}

fn schema_name(number: i32) -> String {
    format!("rm_{number}")
}

type Row = (i32, String, i32, String);

fn from_row((number, schema, ddl_version, state): Row) -> Generation {
    Generation {
        number,
        schema,
        ddl_version,
        state,
    }
}

/// The query for the active generation, with a locking clause on the pointer row.
macro_rules! active_sql {
    ($lock:literal) => {
        concat!(
            "SELECT g.generation, g.schema_name, g.ddl_version, g.state
             FROM read_model_active a JOIN read_model_generations g USING (generation) ",
            $lock
        )
    };
}

/// The active generation, if any.
pub async fn active(pool: &PgPool) -> sqlx::Result<Option<Generation>> {
    let row: Option<Row> = sqlx::query_as(active_sql!("")).fetch_optional(pool).await?;
    Ok(row.map(from_row))
}

async fn active_with(
    conn: &mut PgConnection,
    sql: &'static str,
) -> sqlx::Result<Option<Generation>> {
    let row: Option<Row> = sqlx::query_as(sql).fetch_optional(conn).await?;
    Ok(row.map(from_row))
}

/// The active generation, locked `FOR SHARE` until `tx` ends: a projector batch holds this so a
/// switch-over cannot happen while it writes.
pub async fn active_for_batch(tx: &mut PgConnection) -> sqlx::Result<Option<Generation>> {
    active_with(tx, active_sql!("FOR SHARE OF a")).await
}

/// Every generation, oldest first.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<Generation>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT generation, schema_name, ddl_version, state FROM read_model_generations
         ORDER BY generation",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// A generation by number.
pub async fn get(pool: &PgPool, number: i32) -> sqlx::Result<Option<Generation>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT generation, schema_name, ddl_version, state FROM read_model_generations
         WHERE generation = $1",
    )
    .bind(number)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(from_row))
}

/// Creates a new, empty generation in state `building`.
pub async fn create(pool: &PgPool) -> sqlx::Result<Generation> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let generation = create_locked(&mut tx).await?;
    tx.commit().await?;
    Ok(generation)
}

async fn create_locked(tx: &mut PgConnection) -> sqlx::Result<Generation> {
    let (number,): (i32,) =
        sqlx::query_as("SELECT coalesce(max(generation), 0) + 1 FROM read_model_generations")
            .fetch_one(&mut *tx)
            .await?;
    let schema = schema_name(number);
    sqlx::query(
        "INSERT INTO read_model_generations (generation, schema_name, ddl_version, state)
         VALUES ($1, $2, $3, 'building')",
    )
    .bind(number)
    .bind(&schema)
    .bind(READ_MODEL_VERSION)
    .execute(&mut *tx)
    .await?;
    let ddl = format!(
        r#"CREATE SCHEMA "{schema}"; SET LOCAL search_path TO "{schema}", public;
        {TABLES_SQL}
        SET LOCAL search_path TO DEFAULT;"#
    );
    tx.execute(sqlx::raw_sql(&ddl)).await?;
    Ok(Generation {
        number,
        schema,
        ddl_version: READ_MODEL_VERSION,
        state: "building".into(),
    })
}

/// The active generation, creating and activating the first one on a new database. Safe to call
/// from several processes at once.
pub async fn ensure_active(pool: &PgPool) -> sqlx::Result<Generation> {
    if let Some(generation) = active(pool).await? {
        return Ok(generation);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    if let Some(generation) = active_with(&mut tx, active_sql!("")).await? {
        return Ok(generation);
    }
    let mut generation = create_locked(&mut tx).await?;
    activate(&mut tx, generation.number).await?;
    tx.commit().await?;
    generation.state = "active".into();
    Ok(generation)
}

/// Locks the active pointer `FOR UPDATE` until `tx` ends: no projector batch runs meanwhile.
pub async fn lock_for_switch(tx: &mut PgConnection) -> sqlx::Result<Option<Generation>> {
    active_with(tx, active_sql!("FOR UPDATE OF a")).await
}

/// Makes `number` the active generation and retires the previous one, inside `tx` (which should
/// hold [`lock_for_switch`]). Listeners on the `read_model_switched` channel hear of it at commit.
pub async fn activate(tx: &mut PgConnection, number: i32) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE read_model_generations SET state = 'retired', retired_at = now()
         WHERE state = 'active'",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE read_model_generations SET state = 'active', activated_at = now()
         WHERE generation = $1",
    )
    .bind(number)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO read_model_active (generation) VALUES ($1)
         ON CONFLICT (singleton) DO UPDATE SET generation = $1, switched_at = now()",
    )
    .bind(number)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify('read_model_switched', $1::text)")
        .bind(number)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Drops a generation that is not active (its schema and its row).
pub async fn drop_generation(pool: &PgPool, generation: &Generation) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let active: Option<(i32,)> = sqlx::query_as("SELECT generation FROM read_model_active")
        .fetch_optional(&mut *tx)
        .await?;
    if active.is_some_and(|(n,)| n == generation.number) {
        return Err(sqlx::Error::Protocol(format!(
            "generation {} is active and cannot be dropped",
            generation.number
        )));
    }
    let drop = format!(r#"DROP SCHEMA IF EXISTS "{}" CASCADE"#, generation.schema);
    tx.execute(sqlx::raw_sql(&drop)).await?;
    sqlx::query("DELETE FROM read_model_generations WHERE generation = $1")
        .bind(generation.number)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
