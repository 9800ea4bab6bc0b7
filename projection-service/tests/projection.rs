//! The projector against the real broker and Postgres: exactly-once read models under
//! redelivery and SIGKILL, dead letters, rebuilds and the audit trail.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use event_store::workload::Workload;
use event_store::{LogReader, StartAt};
use migrations::generations;
use projection_service::audit::{self, Filter};
use projection_service::dead_letters;
use projection_service::rebuild::RebuildOptions;
use support::{Env, assert_same, clean_rebuild, rebuild_now};

/// Projects everything appended so far, then stops the projector.
async fn project_to_end(env: &Env) -> generations::Generation {
    let stop = env.start_projector().await;
    let live = env.active().await;
    env.wait_caught_up(&live, Duration::from_secs(60)).await;
    stop.cancel();
    live
}

/// The one pending dead letter, which must be the record at `at`.
async fn only_dead_letter(env: &Env, at: event_store::LogPosition) -> dead_letters::Listed {
    let mut listed = dead_letters::list(&env.pool, &env.kafka.topic, true)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let only = listed.remove(0);
    assert_eq!((only.partition, only.offset), (at.partition, at.offset));
    only
}

#[tokio::test]
async fn redelivered_events_leave_the_read_models_unchanged() {
    // Arrange: a projected workload.
    let env = Env::new(3).await;
    let mut workload = Workload::new(20, 7);
    env.append_workload(&mut workload, 1_500).await;
    let stop = env.start_projector().await;
    let live = env.active().await;
    env.wait_caught_up(&live, Duration::from_secs(60)).await;
    let before = env.contents(&live).await;
    assert!(before["tasks"].len() > 100, "the workload created tasks");
    assert!(
        !before["lost_races"].is_empty(),
        "the workload has lost races"
    );
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act: forget every stored offset, so every record is delivered again.
    sqlx::query(&format!("DELETE FROM {}", live.table("projection_offsets")))
        .execute(&env.pool)
        .await
        .unwrap();
    let stop = env.start_projector().await;
    env.wait_caught_up(&live, Duration::from_secs(60)).await;
    stop.cancel();

    // Assert
    assert_same(&before, &env.contents(&live).await);
}

#[tokio::test]
async fn replicas_project_their_shares_of_the_partitions_and_together_all_of_them() {
    // Arrange: a workload over four partitions.
    let env = Env::new(4).await;
    let mut workload = Workload::new(40, 5);
    env.append_workload(&mut workload, 800).await;
    let ends = env.ends().await;
    assert_eq!(ends.len(), 4, "every partition has records: {ends:?}");
    let replica = |ordinal| {
        let mut settings = env.settings();
        settings.projection.replicas = 2;
        settings.projection.ordinal = Some(ordinal);
        settings
    };

    // Act: replica 1 of 2 alone.
    let second = env.start_projector_with(replica(1)).await;
    let live = env.active().await;
    env.wait_caught_up_on(&live, |p| p % 2 == 1, Duration::from_secs(60))
        .await;
    // Assert: it took the odd partitions and left the even ones alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = projection_service::store::offsets(&env.pool, &live)
        .await
        .expect("offsets");
    assert!(
        [0, 2].iter().all(|p| at.get(p).copied().unwrap_or(0) == 0),
        "replica 1 projected an even partition: {at:?}"
    );

    // Act: replica 0 joins; Assert: together they equal one projector reading everything.
    let first = env.start_projector_with(replica(0)).await;
    env.wait_caught_up(&live, Duration::from_secs(60)).await;
    first.cancel();
    second.cancel();
    let shared = env.contents(&live).await;
    assert_same(&clean_rebuild(&env).await, &shared);
}

fn spawn_projector(env: &Env) -> Child {
    Command::new(env!("CARGO_BIN_EXE_projection-service"))
        .env("TASKSTREAM_KAFKA__BROKERS", &env.kafka.brokers)
        .env("TASKSTREAM_KAFKA__TOPIC", &env.kafka.topic)
        .env(
            "TASKSTREAM_KAFKA__PARTITIONS",
            env.kafka.partitions.to_string(),
        )
        .env("TASKSTREAM_DATABASE__URL", &env.database_url)
        .env("TASKSTREAM_PROJECTION__BATCH_MAX", "300")
        .env("TASKSTREAM_HTTP__PORT", "0")
        .env(
            "RUST_LOG",
            std::env::var("TEST_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start projection-service")
}

async fn applied(env: &Env, generation: &generations::Generation) -> i64 {
    projection_service::store::offsets(&env.pool, generation)
        .await
        .map(|o| o.values().sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_projector_killed_while_catching_up_ends_equal_to_a_clean_rebuild() {
    // Arrange: about 50k events in the log.
    let env = Env::new(4).await;
    let mut workload = Workload::new(200, 11);
    let mut records = 0;
    let mut events = 0;
    while events < 50_000 {
        let before = records;
        records += env.append_workload(&mut workload, 5_000).await;
        events += (records - before) * 6 / 5;
    }
    migrations::generations::ensure_active(&env.pool)
        .await
        .unwrap();
    let live = env.active().await;
    let total = records as i64;

    // Act: SIGKILL the projector three times while it catches up.
    for share in [15, 45, 75] {
        let mut child = spawn_projector(&env);
        let deadline = Instant::now() + Duration::from_secs(120);
        while applied(&env, &live).await < total * share / 100 {
            assert!(Instant::now() < deadline, "no progress to {share}%");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    let mut child = spawn_projector(&env);
    env.wait_caught_up(&live, Duration::from_secs(180)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Assert: row for row what a clean rebuild gives.
    let clean = clean_rebuild(&env).await;
    let resumed = env.contents(&live).await;
    assert!(
        resumed["audit_events"].len() >= 45_000,
        "{}",
        resumed["audit_events"].len()
    );
    assert_same(&resumed, &clean);
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_with_its_offset_and_later_events_are_projected() {
    let env = Env::new(1).await;
    let mut workload = Workload::new(3, 5);
    workload.duplicate_per_mille = 0;
    workload.lost_race_per_mille = 0;
    env.append_workload(&mut workload, 20).await;
    let poison = env.append_raw("user-0", b"\x00 not a commit").await;
    env.append_workload(&mut workload, 20).await;
    let live = project_to_end(&env).await;

    // Listed with its position and error.
    let listed = only_dead_letter(&env, poison).await;
    assert!(!listed.error.is_empty());

    // In the dead-letter topic with the original bytes and the source offset.
    let dlq = env.kafka.dead_letter_topic();
    let mut reader = LogReader::assign(&env.kafka, &dlq, &[(0, StartAt::Beginning)]).unwrap();
    let records = reader.read_to_end(Duration::from_secs(10)).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload, b"\x00 not a commit");
    assert_eq!(
        records[0].header("source_offset"),
        Some(poison.offset.to_string().as_str())
    );
    assert!(records[0].header("dead_letter_error").is_some());

    // Every later event was projected: the audit trail equals the log's.
    let check = audit::verify(&env.pool, &env.kafka, &Filter::default())
        .await
        .unwrap();
    assert!(check.matches(), "{check:?}");
    let after: Vec<i64> = sqlx::query_scalar(&format!(
        r#"SELECT "offset" FROM {} WHERE "offset" > $1"#,
        live.table("audit_events")
    ))
    .bind(poison.offset)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(!after.is_empty());

    // Re-driving it fails again (the bytes are still garbage) and keeps it pending.
    let redriven = dead_letters::redrive(&env.pool, &env.kafka.topic, None)
        .await
        .unwrap();
    assert_eq!(redriven.len(), 1);
    assert!(redriven[0].error.is_some());
    assert_eq!(
        dead_letters::list(&env.pool, &env.kafka.topic, true)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_nul_character_in_the_log_does_not_stop_the_projector() {
    // Arrange: a task created with U+0000 in its title (Postgres text cannot hold it), between
    // ordinary records.
    let env = Env::new(1).await;
    let mut workload = Workload::new(3, 11);
    let first = workload.next_records().remove(0);
    let mut commit: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    let event = &mut commit["events"][0];
    assert_eq!(event["event_type"], "task.created");
    event["payload"]["title"] = "nul\u{0}inside".into();
    let event_id: uuid::Uuid = serde_json::from_value(event["event_id"].clone()).unwrap();
    let nul = env
        .append_raw(&first.user, &serde_json::to_vec(&commit).unwrap())
        .await;
    env.append_workload(&mut workload, 50).await;

    // Act
    let live = project_to_end(&env).await;

    // Assert: projected with U+FFFD in its place, nothing dead-lettered, the trail verified.
    let title: String = sqlx::query_scalar(&format!(
        r#"SELECT payload->>'title' FROM {} WHERE event_id = $1 AND "offset" = $2"#,
        live.table("audit_events")
    ))
    .bind(event_id)
    .bind(nul.offset)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(title, "nul\u{FFFD}inside");
    let listed = dead_letters::list(&env.pool, &env.kafka.topic, true)
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    let check = audit::verify(&env.pool, &env.kafka, &Filter::default())
        .await
        .unwrap();
    assert!(check.matches(), "{check:?}");
}

#[tokio::test]
async fn a_record_postgres_cannot_store_is_dead_lettered_and_its_batch_projected() {
    // Arrange: a task due in 5001 BC (before any Postgres timestamp), amid ordinary records that
    // share its batches.
    let env = Env::new(1).await;
    let mut workload = Workload::new(4, 12);
    workload.duplicate_per_mille = 0;
    workload.lost_race_per_mille = 0;
    env.append_workload(&mut workload, 30).await;
    let mut other = Workload::with_prefix(1, 3, "ancient");
    let first = other.next_records().remove(0);
    let mut commit: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    commit["events"][0]["payload"]["due"] =
        serde_json::json!({"kind": "date", "date": "-5000-01-01"});
    let poison = env
        .append_raw(&first.user, &serde_json::to_vec(&commit).unwrap())
        .await;
    env.append_workload(&mut workload, 30).await;

    // Act
    let live = project_to_end(&env).await;

    // Assert: the record alone is a dead letter, with Postgres' reason; every other is projected.
    let listed = only_dead_letter(&env, poison).await;
    assert!(listed.error.contains("cannot store"), "{}", listed.error);
    let projected: i64 = sqlx::query_scalar(&format!(
        "SELECT count(DISTINCT \"offset\") FROM {}",
        live.table("audit_events")
    ))
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let records: i64 = env.ends().await.values().sum();
    assert_eq!(projected, records - 1);
}

#[tokio::test]
async fn a_rebuild_resumes_switches_atomically_and_equals_a_clean_one() {
    // Arrange: a live projector over a log that keeps growing.
    let env = Env::new(3).await;
    let mut workload = Workload::new(30, 3);
    env.append_workload(&mut workload, 3_000).await;
    let stop = env.start_projector().await;
    let first = env.active().await;

    // Act: a rebuild interrupted half-way, then resumed while commits keep arriving.
    let partial = rebuild_now(
        &env,
        RebuildOptions {
            batch_max: 500,
            stop_after: Some(1_000),
            ..RebuildOptions::default()
        },
    )
    .await;
    assert!(!partial.switched);
    assert_eq!(
        env.active().await,
        first,
        "an unfinished rebuild does not switch"
    );
    let more = {
        let env_kafka = env.kafka.clone();
        let mut w = Workload::with_prefix(10, 99, "late");
        tokio::spawn(async move {
            let appender = event_store::Appender::connect(&env_kafka).await.unwrap();
            for _ in 0..300 {
                for r in w.next_records() {
                    appender.append_raw(&r.user, &r.payload).await.unwrap();
                }
            }
        })
    };
    let report = rebuild_now(&env, RebuildOptions::default()).await;
    more.await.unwrap();

    // Assert: it resumed the same generation and switched to it.
    assert_eq!(report.generation, partial.generation);
    assert!(report.switched);
    assert_eq!(report.replaced, Some(first.number));
    let second = env.active().await;
    assert_eq!(second.number, report.generation);
    // The live projector follows the switch; a clean rebuild of the whole log equals it.
    env.wait_caught_up(&second, Duration::from_secs(60)).await;
    let clean = clean_rebuild(&env).await;
    stop.cancel();
    assert_same(&env.contents(&second).await, &clean);
    let states: BTreeMap<i32, String> = generations::list(&env.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.number, g.state))
        .collect();
    assert_eq!(states[&first.number], "retired");
}

#[tokio::test]
async fn the_audit_trail_matches_the_log_and_verification_catches_a_missing_event() {
    let env = Env::new(2).await;
    let mut workload = Workload::new(5, 21);
    env.append_workload(&mut workload, 300).await;
    let live = project_to_end(&env).await;

    // From the log: one user's events, in order, with who and why.
    let user = "user-1".to_owned();
    let rows = audit::from_log(
        &env.kafka,
        &Filter {
            user: Some(user.clone()),
            task: None,
        },
    )
    .await
    .unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.user_id == user));
    let task = rows[0].aggregate_id;
    let one = audit::from_log(
        &env.kafka,
        &Filter {
            user: Some(user),
            task: Some(task),
        },
    )
    .await
    .unwrap();
    let versions: Vec<i64> = one.iter().map(|r| r.aggregate_version).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    assert!(audit::pretty(&one).contains("task.created"));

    let check = audit::verify(&env.pool, &env.kafka, &Filter::default())
        .await
        .unwrap();
    assert!(check.matches(), "{check:?}");
    assert!(check.compared > 300);

    // Tamper with the projection: verification names the event.
    sqlx::query(&format!(
        "DELETE FROM {} WHERE event_id = $1",
        live.table("audit_events")
    ))
    .bind(one[0].event_id)
    .execute(&env.pool)
    .await
    .unwrap();
    let check = audit::verify(&env.pool, &env.kafka, &Filter::default())
        .await
        .unwrap();
    assert_eq!(check.missing, vec![one[0].event_id]);
}
