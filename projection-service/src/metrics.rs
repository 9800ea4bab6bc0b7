//! Prometheus metrics of the projector, in the default registry that `/metrics` exports.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGaugeVec, register_histogram, register_int_counter,
    register_int_counter_vec, register_int_gauge_vec,
};

/// Events applied to the read models, by type.
pub static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "taskstream_projection_events_total",
        "Events applied to the read models, by event type",
        &["event_type"]
    )
    .expect("metric registers once")
});

/// Records read and not applied, by reason (`duplicate`, `lost_race`, `already_applied`).
pub static SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "taskstream_projection_skipped_total",
        "Commits read but not applied, by reason",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Records sent to the dead-letter topic.
pub static DEAD_LETTERS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "taskstream_projection_dead_letters_total",
        "Records the projector could not decode or apply, sent to the dead-letter topic"
    )
    .expect("metric registers once")
});

/// Seconds per batch transaction.
pub static BATCH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "taskstream_projection_batch_duration_seconds",
        "Time to apply one batch in one Postgres transaction",
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric registers once")
});

/// Batches that failed and were retried, by stage.
pub static BATCH_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "taskstream_projection_batch_failures_total",
        "Batches that failed (and are retried)"
    )
    .expect("metric registers once")
});

/// Records between the projection and the end of each partition.
pub static LAG_EVENTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "taskstream_projection_lag_events",
        "Records in the log not yet projected, per partition",
        &["partition"]
    )
    .expect("metric registers once")
});

/// How old the last projected record of a lagging partition is, in seconds (0 when caught up).
pub static LAG_SECONDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "taskstream_projection_lag_seconds",
        "Age of the last projected record of a partition that is behind (0 when caught up)",
        &["partition"]
    )
    .expect("metric registers once")
});

/// Rebuild progress: records applied into the generation being built, and the records to go.
pub static REBUILD: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "taskstream_projection_rebuild_records",
        "Rebuild progress: records applied (state=done) and left (state=remaining)",
        &["state"]
    )
    .expect("metric registers once")
});

/// The live reader's pace: 1 for the current one (`busy`: the configured fetch wait; `idle`: the
/// longer wait of a quiet log), 0 for the other.
pub static READER_PACE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "taskstream_projection_reader_pace",
        "The live reader's pace: 1 for the current one (busy: the configured fetch wait; idle: the longer wait of a quiet log)",
        &["pace"]
    )
    .expect("metric registers once")
});
