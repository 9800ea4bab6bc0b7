//! Two replicas sharing the partitions, against the real broker: each user's commands run at the
//! replica owning the user's partition, whichever replica they reach, with the owner's answer
//! (status, headers, body) passed back unchanged; a replica that is down makes its users' commands
//! 503, not anyone else's.

use std::time::Duration;

use command_service::Settings;
use command_service::ownership::{FORWARDED_BY, OwnershipSettings};
use command_service::snapshot::SnapshotSettings;
use event_store::partition::partition_for;
use event_store::testing::{fresh_topic, shared_brokers};
use event_store::{LogConfig, LogPosition, LogReader, StartAt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use service_kit::settings::HttpSettings;

mod support;
use support::Service;

const PARTITIONS: i32 = 4;

/// A port nobody listens on now (the replicas must know each other's before they start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn replica(kafka: &LogConfig, ports: [u16; 2], ordinal: usize) -> Settings {
    Settings {
        http: HttpSettings::with_port(ports[ordinal]),
        kafka: kafka.clone(),
        snapshots: SnapshotSettings {
            enabled: false,
            ..Default::default()
        },
        ownership: OwnershipSettings {
            peers: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            ordinal: Some(ordinal),
            forward_timeout_ms: 10_000,
        },
        ..Default::default()
    }
}

/// A user whose partition replica `ordinal` of two owns.
fn user_of(ordinal: i32, name: &str) -> String {
    (0..)
        .map(|i| format!("{name}-{i}"))
        .find(|u| partition_for(u, PARTITIONS) % 2 == ordinal)
        .expect("some user hashes there")
}

async fn records(kafka: &LogConfig) -> Vec<event_store::LogRecord> {
    LogReader::assign_all(kafka, &kafka.topic, StartAt::Beginning)
        .await
        .expect("reader")
        .read_to_end(Duration::from_secs(10))
        .await
        .expect("read the log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_at_their_partitions_owner_whichever_replica_they_reach() {
    // Arrange: two replicas of one topic; ana's partition is replica 0's, bo's replica 1's.
    let kafka = fresh_topic(&shared_brokers(), PARTITIONS).await;
    let ports = [free_port(), free_port()];
    let first = Service::start(replica(&kafka, ports, 0)).await;
    let second = Service::start(replica(&kafka, ports, 1)).await;
    let ana = user_of(0, "ana");
    let bo = user_of(1, "bo");

    // Act: bo's task created through replica 0, then changed through replica 1 at the version
    // replica 0 answered (only the owner's state could know it).
    let created = first
        .request(Method::POST, &bo, "/tasks")
        .header("idempotency-key", "bo-create")
        .json(&json!({"title": "water the plants"}))
        .send()
        .await
        .expect("request");

    // Assert: the owner's answer, headers included.
    assert_eq!(created.status(), StatusCode::CREATED);
    let etag = created.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let token: LogPosition = created.headers()["x-consistency-token"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a log position");
    assert_eq!(etag, "\"1\"");
    assert!(
        location.starts_with(&format!("/api/{bo}/tasks/")),
        "{location}"
    );
    assert_eq!(token.partition, partition_for(&bo, PARTITIONS));
    let task: serde_json::Value = created.json().await.expect("json");
    assert_eq!(task["number"], 1, "{task}");

    let (status, edited) = second
        .send_with(
            Method::PATCH,
            &bo,
            "/tasks/1",
            &[("if-match", "\"1\"")],
            Some(json!({"priority": "high"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["version"], 2, "{edited}");

    // A stale If-Match through the other replica: the owner's 412 with the events since.
    let (status, stale) = first
        .send_with(
            Method::PATCH,
            &bo,
            "/tasks/1",
            &[("if-match", "\"1\"")],
            Some(json!({"priority": "low"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{stale}");
    assert_eq!(stale["code"], "version_mismatch");
    assert_eq!(stale["current_version"], 2);

    // The retry of the create through the owner itself is recognised.
    let retried = second
        .request(Method::POST, &bo, "/tasks")
        .header("idempotency-key", "bo-create")
        .json(&json!({"title": "water the plants"}))
        .send()
        .await
        .expect("request");
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");

    // Tokens are the owner's to check: another user's token is 403, none is 401.
    let forbidden = first
        .client
        .post(format!("{}/api/{bo}/tasks", first.base))
        .bearer_auth(first.token(&ana))
        .json(&json!({"title": "not mine"}))
        .send()
        .await
        .expect("request");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let anonymous = first
        .client
        .post(format!("{}/api/{bo}/tasks", first.base))
        .json(&json!({"title": "anyone"}))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );

    // ana's commands run at replica 0 from either side.
    let (status, body) = second
        .send_with(
            Method::POST,
            &ana,
            "/tasks",
            &[],
            Some(json!({"title": "call mum"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = first
        .send_with(Method::POST, &ana, "/tasks/1/complete", &[], None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A forwarded command that reaches a replica not owning its partition is not sent on again.
    let (status, misrouted) = first
        .send_with(
            Method::POST,
            &bo,
            "/tasks",
            &[(FORWARDED_BY, "1")],
            Some(json!({"title": "ping-pong"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{misrouted}");
    assert_eq!(misrouted["code"], "partition_moving");

    // The log holds exactly the four changes: bo's create and patch, ana's create and complete.
    let log = records(&kafka).await;
    assert_eq!(log.len(), 4, "{log:?}");
    for record in &log {
        let user = record
            .decode()
            .expect("valid")
            .user_id()
            .as_str()
            .to_owned();
        assert_eq!(record.partition, partition_for(&user, PARTITIONS));
    }

    // Act: replica 1 stops.
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Assert: bo's commands are 503 with Retry-After at replica 0, which holds none of bo's state;
    // ana's are served as before.
    let unavailable = first
        .request(Method::POST, &bo, "/tasks")
        .json(&json!({"title": "while away"}))
        .send()
        .await
        .expect("request");
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.headers()["retry-after"], "1");
    let problem: serde_json::Value = unavailable.json().await.expect("json");
    assert_eq!(problem["code"], "owner_unavailable", "{problem}");
    let (status, body) = first
        .send_with(
            Method::POST,
            &ana,
            "/tasks",
            &[],
            Some(json!({"title": "still here"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["number"], 2, "{body}");
    assert_eq!(records(&kafka).await.len(), 5);

    // The forwards were counted.
    let metrics = first.metrics().await;
    for outcome in ["forwarded", "owner_unavailable", "misrouted"] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!(
                "taskstream_command_forwards_total{{outcome=\"{outcome}\"}}"
            ))),
            "no {outcome} forwards in\n{metrics}"
        );
    }
}
