//! Prometheus metrics of the log client, registered in the default registry that every service's
//! `/metrics` endpoint exports.

use std::sync::LazyLock;

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};

/// Commits appended, by outcome (`ok`, `unavailable`, `error`).
pub static APPENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "taskstream_log_appends_total",
        "Commits appended to the event log, by outcome",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Seconds from `append` to the broker's acknowledgement.
pub static APPEND_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "taskstream_log_append_duration_seconds",
        "Time from append to the broker's acknowledgement (acks=all)",
        &["outcome"],
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric registers once")
});

/// Seconds from `append` to the writer having read its commit back and learned the verdict.
pub static CONFIRM_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "taskstream_log_confirm_duration_seconds",
        "Time from append to the writer reading its own commit back, by verdict",
        &["verdict"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric registers once")
});

/// Commits read from the log, by reader and verdict (`accepted`, `lost_race`, `undecodable`).
pub static COMMITS_READ: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "taskstream_log_commits_read_total",
        "Commits read from the event log, by reader and arbitration verdict",
        &["reader", "verdict"]
    )
    .expect("metric registers once")
});

/// Commits this process appended that its tail decided without reading them back, by reader: the
/// rest of `taskstream_log_commits_read_total` was read from the broker first.
pub static COMMITS_DECIDED_LOCALLY: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "taskstream_log_commits_decided_locally_total",
        "Own commits decided as soon as they were acknowledged, every earlier record being decided",
        &["reader"]
    )
    .expect("metric registers once")
});
