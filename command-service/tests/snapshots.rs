//! Snapshots against the real broker and Postgres: a start from snapshots plus the log after them
//! reaches the same state as a start from the whole log, and the service carries on from it.

use std::time::Duration;

use command_service::Settings;
use command_service::snapshot::{self, SnapshotSettings, SnapshotStore};
use command_service::state::{Aggregates, SharedState};
use event_store::log::admin;
use event_store::testing::{fresh_topic, shared_brokers};
use event_store::{Arbiter, LogConfig, LogTail, StartAt};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;
use service_kit::database::DatabaseSettings;
use service_kit::settings::HttpSettings;

const PARTITIONS: i32 = 3;

mod support;
use support::Service;

fn settings(kafka: &LogConfig, database_url: &str, snapshots: bool) -> Settings {
    Settings {
        http: HttpSettings::with_port(0),
        kafka: kafka.clone(),
        database: DatabaseSettings {
            url: SecretString::from(database_url.to_owned()),
            ..DatabaseSettings::default()
        },
        snapshots: SnapshotSettings {
            enabled: snapshots,
            // One round right after the start's catch-up, then none during the test.
            interval_secs: 3_600,
            min_records: 1,
        },
        ..Settings::default()
    }
}

/// Records in the topic, summed over partitions.
async fn records(kafka: &LogConfig) -> i64 {
    admin::watermarks(kafka, &kafka.topic)
        .await
        .expect("watermarks")
        .iter()
        .map(|(_, low, high)| high - low)
        .sum()
}

/// The state a tail reaches from `starts`, with each task's recent events cut to what a
/// snapshot keeps, so states from different starts compare.
async fn state_from(
    kafka: &LogConfig,
    starts: &[(i32, StartAt)],
    arbiter: Arbiter,
    state: Aggregates,
) -> Aggregates {
    let state = SharedState::new(state);
    let tail = LogTail::start(kafka, "test", starts, arbiter, state.clone())
        .await
        .expect("tail");
    tail.caught_up().await.expect("caught up");
    let mut state = state.read().clone();
    for entry in state.tasks.values_mut() {
        while entry.recent.len() > snapshot::RECENT_IN_SNAPSHOT {
            entry.recent.pop_front();
        }
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_from_snapshots_equals_a_start_from_the_whole_log_and_carries_on() {
    service_kit::telemetry::init_for_tests();
    let kafka = fresh_topic(&shared_brokers(), PARTITIONS).await;
    let (pool, database_url) = migrations::testing::fresh_database().await;
    let users = ["ann", "ben", "cat", "dan", "eve", "fay"];

    // Arrange: a log written by a service that takes no snapshots.
    let first = Service::start(settings(&kafka, &database_url, false)).await;
    let (status, created) = first
        .send_with(
            Method::POST,
            "ann",
            "/tasks",
            &[("idempotency-key", "ann-first")],
            Some(json!({"title": "first", "tags": ["home"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for user in users {
        for i in 0..3 {
            let (status, task) = first
                .send_with(
                    Method::POST,
                    user,
                    "/tasks",
                    &[],
                    Some(json!({"title": format!("t{i}")})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{task}");
            for edit in 0..12 {
                let (status, _) = first
                    .send_with(
                        Method::PATCH,
                        user,
                        &format!("/tasks/{}", task["number"]),
                        &[],
                        Some(json!({"title": format!("t{i} edit {edit}")})),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK);
            }
        }
    }
    drop(first);

    // A service with snapshots takes them once it has read the log.
    let written = records(&kafka).await;
    let second = Service::start(settings(&kafka, &database_url, true)).await;
    let mut covered = 0;
    for _ in 0..200 {
        covered = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT sum(next_offset)::bigint FROM command_snapshots WHERE topic = $1",
        )
        .bind(&kafka.topic)
        .fetch_one(&pool)
        .await
        .expect("read snapshots")
        .unwrap_or(0);
        if covered == written {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(covered, written, "every partition snapshotted to its end");

    // More commands after the snapshots, then a stop.
    let (status, later) = second
        .send_with(
            Method::POST,
            "ann",
            "/tasks",
            &[],
            Some(json!({"title": "after"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{later}");
    let (status, edited) = second
        .send_with(
            Method::PATCH,
            "ben",
            "/tasks/1",
            &[],
            Some(json!({"priority": "urgent"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    drop(second);

    // Act + Assert: snapshots plus the rest of the log give the state the whole log gives.
    let store = SnapshotStore::open(pool.clone(), &kafka.topic)
        .await
        .expect("store");
    let (restored, arbiter, starts) =
        snapshot::restore_all(&store, &kafka, &(0..PARTITIONS).collect::<Vec<_>>()).await;
    assert!(
        starts
            .iter()
            .filter(|(_, s)| matches!(s, StartAt::Offset(o) if *o > 0))
            .count()
            > 1,
        "partitions start after their snapshots: {starts:?}"
    );
    let from_snapshots = state_from(&kafka, &starts, arbiter, restored).await;
    let beginning: Vec<_> = (0..PARTITIONS).map(|p| (p, StartAt::Beginning)).collect();
    let from_log = state_from(&kafka, &beginning, Arbiter::new(), Aggregates::default()).await;
    assert_eq!(from_snapshots, from_log);

    // A service started from the snapshots carries on: numbers, versions, idempotency keys.
    let third = Service::start(settings(&kafka, &database_url, true)).await;
    let (status, replayed) = third
        .send_with(
            Method::POST,
            "ann",
            "/tasks",
            &[("idempotency-key", "ann-first")],
            Some(json!({"title": "first", "tags": ["home"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(replayed, created, "the recorded answer");
    let (status, next) = third
        .send_with(
            Method::POST,
            "ann",
            "/tasks",
            &[],
            Some(json!({"title": "next"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(next["number"], later["number"].as_u64().unwrap() + 1);
    let version = edited["version"].to_string();
    let (status, stale) = third
        .send_with(
            Method::PATCH,
            "ben",
            "/tasks/1",
            &[("if-match", "\"1\"")],
            Some(json!({"title": "stale"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{stale}");
    assert_eq!(stale["current_version"], edited["version"]);
    let (status, patched) = third
        .send_with(
            Method::PATCH,
            "ben",
            "/tasks/1",
            &[("if-match", &format!("\"{version}\""))],
            Some(json!({"title": "fresh"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["version"], edited["version"].as_u64().unwrap() + 1);

    // The snapshots taken and restored were counted (the registry is this process's).
    let metrics = third.metrics().await;
    for outcome in ["saved", "restored"] {
        let counted: f64 = metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!(
                    "taskstream_command_snapshots_total{{outcome=\"{outcome}\"}} "
                ))
            })
            .unwrap_or_else(|| panic!("no {outcome} snapshots in\n{metrics}"))
            .parse()
            .expect("a count");
        assert!(counted >= 1.0, "{outcome}: {counted}");
    }
}
