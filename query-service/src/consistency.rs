//! Read-your-writes: a query that sends a command's consistency token (`partition@offset`, the
//! `X-Consistency-Token` header) waits until the active generation has projected that record —
//! its `projection_offsets.next_offset` for the partition is past the offset — for at most the
//! configured wait, then answers `504 projection_behind`.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use event_store::LogPosition;
use migrations::generations::Generation;
use prometheus::HistogramVec;
use sqlx::PgPool;

use crate::error::AppError;
use crate::generation::ActiveGeneration;

/// The request header that carries a consistency token.
pub const HEADER: &str = "x-consistency-token";

static WAIT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    prometheus::register_histogram_vec!(
        "taskstream_query_consistency_wait_seconds",
        "How long queries with a consistency token waited for the projections, by outcome \
         (reached, timeout)",
        &["outcome"],
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric registers once")
});

/// The first pause between looks; it grows to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(25);

/// The next offset the active generation will project in `partition` (0 if it has none yet).
pub async fn projected_next_offset(
    pool: &PgPool,
    generation: &Generation,
    partition: i32,
) -> sqlx::Result<Option<i64>> {
    let sql = format!(
        r#"SELECT next_offset FROM {} WHERE "partition" = $1"#,
        generation.table("projection_offsets")
    );
    let row: Option<(i64,)> = sqlx::query_as(&sql)
        .bind(partition)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(next,)| next))
}

/// Waits until the active generation has projected `token`, at most `max_wait`; answers the
/// generation to read.
#[tracing::instrument(skip_all, fields(token = %token))]
pub async fn wait_for(
    pool: &PgPool,
    generations: &ActiveGeneration,
    token: LogPosition,
    max_wait: Duration,
) -> Result<Generation, AppError> {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        // Re-read the cache each time: a switch-over during the wait moves to the new generation
        // (which is caught up with the old one when it is switched to).
        let generation = generations.current().await?;
        let next = projected_next_offset(pool, &generation, token.partition).await?;
        if next.is_some_and(|next| next > token.offset) {
            WAIT_SECONDS
                .with_label_values(&["reached"])
                .observe(started.elapsed().as_secs_f64());
            return Ok(generation);
        }
        let waited = started.elapsed();
        if waited >= max_wait {
            WAIT_SECONDS
                .with_label_values(&["timeout"])
                .observe(waited.as_secs_f64());
            return Err(AppError::ProjectionBehind {
                token,
                projected_next_offset: next,
                waited,
            });
        }
        tokio::time::sleep(pause.min(max_wait - waited)).await;
        pause = (pause * 3 / 2).min(MAX_PAUSE);
    }
}
