//! The other queries, authentication, read-your-writes and the active generation, against the
//! real Postgres with rows seeded directly into the read models.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use migrations::generations;
use reqwest::StatusCode;
use serde_json::{Value, json};
use service_kit::http::Readiness;
use support::{Audit, Task, TestApp, ids, insert_audit, insert_tasks, send, set_projected};
use uuid::Uuid;

/// Every query route, for a user.
const ROUTES: &[&str] = &[
    "/tasks",
    "/tasks/1",
    "/tasks/1/history",
    "/tags",
    "/reminders",
    "/notifications",
    "/events",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_users_own_valid_token() {
    let (app, generation) = TestApp::start().await;
    insert_tasks(
        &app.pool,
        &generation,
        &[
            Task::new("alice", 1, "Alice's"),
            Task::new("bob", 1, "Bob's"),
        ],
    )
    .await;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "alice", "exp": 1_000_000 }),
        &jsonwebtoken::EncodingKey::from_secret(b"taskstream-dev-secret-change-me"),
    )
    .expect("encode");
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "alice", "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"not the secret"),
    )
    .expect("encode");
    for route in ROUTES {
        let url = format!("{}/api/alice{route}", app.base);
        let (status, _) = send(app.get("alice", route)).await;
        assert_eq!(status, StatusCode::OK, "{route}");

        let (status, problem) = send(app.get_as("alice", "bob", route)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{route}");
        assert_eq!(problem["code"], "forbidden");

        let (status, problem) = send(app.client.get(&url)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}");
        assert_eq!(problem["code"], "unauthorized");
        for token in [expired.as_str(), other_secret.as_str(), "garbage"] {
            let (status, _) = send(app.client.get(&url).bearer_auth(token)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}");
        }
        // Authentication comes before parameter checks.
        let (status, _) = send(app.client.get(format!("{url}?limit=abc"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_found_by_id_or_number_with_its_etag_but_never_another_users() {
    let (app, generation) = TestApp::start().await;
    let mut task = Task::new("alice", 7, "Pay rent")
        .due_on(chrono::NaiveDate::from_ymd_opt(2026, 12, 24).expect("date"));
    task.version = 4;
    task.description = Some("before the 1st".into());
    task.tags = vec!["Home".into(), "finance".into()];
    task.priority = 3;
    let mut deleted = Task::new("alice", 8, "Gone");
    deleted.status = "deleted";
    let bobs = Task::new("bob", 1, "Bob's secret");
    insert_tasks(
        &app.pool,
        &generation,
        &[task.clone(), deleted.clone(), bobs.clone()],
    )
    .await;
    let reminder = Uuid::now_v7();
    sqlx::query(&format!(
        "INSERT INTO {} (reminder_id, user_id, task_id, time, remind_at, status, created_at,
                         updated_at)
         VALUES ($1, 'alice', $2, $3, '2026-12-24T08:00:00Z', 'pending', now(), now())",
        generation.table("reminders")
    ))
    .bind(reminder)
    .bind(task.id)
    .bind(json!({ "kind": "before_due", "seconds": 57600 }))
    .execute(&app.pool)
    .await
    .expect("insert reminder");
    // The projector keeps the reminders a task shows on its row too.
    sqlx::query(&format!(
        "UPDATE {} SET reminders = reminders || jsonb_build_array(jsonb_build_object(
             'id', $1::uuid, 'time', $2::jsonb, 'remind_at', '2026-12-24T08:00:00Z'::timestamptz,
             'status', 'pending', 'fired', false))
         WHERE task_id = $3",
        generation.table("tasks")
    ))
    .bind(reminder)
    .bind(json!({ "kind": "before_due", "seconds": 57600 }))
    .bind(task.id)
    .execute(&app.pool)
    .await
    .expect("show the reminder on its task");

    for path in [format!("/tasks/{}", task.id), "/tasks/7".to_owned()] {
        let response = app.get("alice", &path).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["etag"], "\"4\"");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["id"], task.id.to_string());
        assert_eq!(body["number"], 7);
        assert_eq!(body["title"], "Pay rent");
        assert_eq!(body["description"], "before the 1st");
        assert_eq!(body["priority"], "urgent");
        assert_eq!(body["due"], json!({ "kind": "date", "date": "2026-12-24" }));
        assert_eq!(body["tags"], json!(["Home", "finance"]));
        assert_eq!(body["status"], "open");
        assert_eq!(body["completed"], false);
        assert_eq!(body["version"], 4);
        assert_eq!(body["reminders"][0]["id"], reminder.to_string());
        assert_eq!(
            body["reminders"][0]["time"],
            json!({ "kind": "before_due", "seconds": 57600 })
        );
        assert_eq!(body["reminders"][0]["fired"], false);
    }
    // If-None-Match with the current ETag: 304.
    let response = app
        .get("alice", "/tasks/7")
        .header("if-none-match", "\"4\"")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = app
        .get("alice", "/tasks/7")
        .header("if-none-match", "\"3\"")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    // Deleted, another user's (by UUID or number), unknown, or not an id at all: 404.
    for path in [
        format!("/tasks/{}", deleted.id),
        "/tasks/8".to_owned(),
        format!("/tasks/{}", bobs.id),
        "/tasks/99".to_owned(),
        format!("/tasks/{}", Uuid::now_v7()),
        "/tasks/not-a-task".to_owned(),
        "/tasks/99999999999999999999999".to_owned(),
        "/tasks/-1".to_owned(),
    ] {
        let response = app.get("alice", &path).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["code"], "task_not_found", "{path}");
    }
    // Bob reads his own by number.
    let (status, body) = app.json("bob", "/tasks/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["title"], "Bob's secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_of_version_2_shows_reminders_from_its_reminders_table() {
    let (pool, url) = migrations::testing::fresh_database().await;
    let generation = generations::ensure_active(&pool)
        .await
        .expect("activate the first generation");
    // Version 2's tasks have no `reminders` column.
    sqlx::query(&format!(
        "ALTER TABLE {} DROP COLUMN reminders",
        generation.table("tasks")
    ))
    .execute(&pool)
    .await
    .expect("drop the column");
    sqlx::query("UPDATE read_model_generations SET ddl_version = 2 WHERE generation = $1")
        .bind(generation.number)
        .execute(&pool)
        .await
        .expect("mark version 2");
    let app = TestApp::start_on(pool, url, |_| {}).await;
    let task = Task::new("alice", 1, "Dentist");
    insert_tasks(&app.pool, &generation, std::slice::from_ref(&task)).await;
    let (first, second) = (Uuid::from_u128(2), Uuid::from_u128(1));
    for (id, status, created) in [(first, "fired", 1), (second, "pending", 2)] {
        sqlx::query(&format!(
            "INSERT INTO {} (reminder_id, user_id, task_id, time, remind_at, status, created_at,
                             updated_at)
             VALUES ($1, 'alice', $2, $3, '2026-12-24T08:00:00Z', $4,
                     to_timestamp($5), to_timestamp($5))",
            generation.table("reminders")
        ))
        .bind(id)
        .bind(task.id)
        .bind(json!({ "kind": "at", "at": "2026-12-24T08:00:00Z" }))
        .bind(status)
        .bind(f64::from(created))
        .execute(&app.pool)
        .await
        .expect("insert reminder");
    }

    for path in ["/tasks/1", "/tasks"] {
        let (status, body) = app.json("alice", path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let task = if path == "/tasks" {
            &body["items"][0]
        } else {
            &body
        };
        let shown: Vec<(&str, bool)> = task["reminders"]
            .as_array()
            .expect("reminders")
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r["fired"].as_bool().unwrap()))
            .collect();
        assert_eq!(
            shown,
            [
                (first.to_string().as_str(), true),
                (second.to_string().as_str(), false)
            ],
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_counted_sorted_and_autocompleted() {
    let (app, generation) = TestApp::start().await;
    let sql = format!(
        "INSERT INTO {} (user_id, tag_key, tag, task_count, open_count, colour)
         VALUES ($1, $2, $3, $4, $5, $6)",
        generation.table("tags")
    );
    for (user, key, tag, count, open, colour) in [
        ("alice", "work", "Work", 5, 2, Some("#ff0000")),
        ("alice", "workout", "workout", 2, 2, None),
        ("alice", "home", "Home", 5, 5, None),
        ("alice", "w_x", "W_X", 1, 0, None),
        ("alice", "wax", "wax", 1, 1, None),
        ("alice", "unused", "unused", 0, 0, None),
        ("bob", "work", "work", 9, 9, None),
    ] {
        sqlx::query(&sql)
            .bind(user)
            .bind(key)
            .bind(tag)
            .bind(count)
            .bind(open)
            .bind(colour)
            .execute(&app.pool)
            .await
            .expect("insert tag");
    }
    let tags = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| t["tag"].as_str().expect("tag").to_owned())
            .collect()
    };
    let (status, body) = app.json("alice", "/tags").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tags(&body), ["Home", "Work", "workout", "W_X", "wax"]);
    assert_eq!(
        body["items"][1],
        json!({ "tag": "Work", "key": "work", "task_count": 5, "open_count": 2, "colour": "#ff0000" })
    );
    let (_, body) = app.json("alice", "/tags?prefix=WO").await;
    assert_eq!(tags(&body), ["Work", "workout"]);
    // `_` and `%` are literal in a prefix.
    let (_, body) = app.json("alice", "/tags?prefix=w_").await;
    assert_eq!(tags(&body), ["W_X"]);
    let (_, body) = app.json("alice", "/tags?prefix=%25").await;
    assert_eq!(tags(&body), Vec::<String>::new());
    let (_, body) = app.json("alice", "/tags?limit=2").await;
    assert_eq!(tags(&body), ["Home", "Work"]);
    let (status, _) = app.json("alice", "/tags?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_and_notifications_list_in_order_and_page() {
    let (app, generation) = TestApp::start().await;
    let task = Task::new("alice", 1, "Dentist");
    let bobs = Task::new("bob", 1, "Bob's");
    insert_tasks(&app.pool, &generation, &[task.clone(), bobs.clone()]).await;
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).single();
    let mut reminders = Vec::new();
    let insert = format!(
        "INSERT INTO {} (reminder_id, user_id, task_id, time, remind_at, status, fired_at,
                         created_at, updated_at)
         VALUES ($1, $2, $3, '{{\"kind\":\"at\",\"at\":\"2026-03-01T00:00:00Z\"}}', $4, $5, NULL,
                 now(), now())",
        generation.table("reminders")
    );
    // Ties on remind_at and several without one: ordered by time, then id, NULLs last.
    for (i, (hour, status)) in [
        (Some(9), "pending"),
        (None, "pending"),
        (Some(7), "fired"),
        (Some(9), "pending"),
        (None, "cancelled"),
        (Some(8), "cancelled"),
        (Some(9), "fired"),
        (None, "pending"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = Uuid::from_u128(0x1000 + (7 - i as u128));
        let remind_at = hour.and_then(at);
        sqlx::query(&insert)
            .bind(id)
            .bind("alice")
            .bind(task.id)
            .bind(remind_at)
            .bind(status)
            .execute(&app.pool)
            .await
            .expect("insert reminder");
        reminders.push((remind_at, id, status));
    }
    sqlx::query(&insert)
        .bind(Uuid::now_v7())
        .bind("bob")
        .bind(bobs.id)
        .bind(at(1))
        .bind("pending")
        .execute(&app.pool)
        .await
        .expect("insert bob's reminder");
    reminders.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    let all: Vec<Uuid> = reminders.iter().map(|r| r.1).collect();
    assert_eq!(app.walk("alice", "/reminders?limit=3").await, all);
    assert_eq!(app.walk("alice", "/reminders?limit=1").await, all);
    let pending: Vec<Uuid> = reminders
        .iter()
        .filter(|r| r.2 == "pending")
        .map(|r| r.1)
        .collect();
    assert_eq!(
        app.walk("alice", "/reminders?status=pending&limit=2").await,
        pending
    );
    let (_, page) = app.json("alice", "/reminders?status=fired").await;
    assert_eq!(page["items"][0]["task_title"], "Dentist");
    assert_eq!(page["items"][0]["task_number"], 1);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let (status, problem) = app.json("alice", "/reminders?status=late").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "status");

    // Notifications: newest first, ties by id, paged.
    let insert = format!(
        r#"INSERT INTO {} (notification_id, user_id, kind, task_id, reminder_id, title,
                          created_at, "partition", "offset")
           VALUES ($1, $2, 'reminder', $3, NULL, 'Dentist', $4, 0, $5)"#,
        generation.table("notifications")
    );
    let mut notifications = Vec::new();
    for i in 0..7u32 {
        let id = Uuid::from_u128(0x2000 + u128::from(i * 7 % 5));
        let created = at(10 + i % 3).expect("time");
        if notifications.iter().any(|(_, n)| *n == id) {
            continue;
        }
        sqlx::query(&insert)
            .bind(id)
            .bind("alice")
            .bind(task.id)
            .bind(created)
            .bind(i64::from(i))
            .execute(&app.pool)
            .await
            .expect("insert notification");
        notifications.push((created, id));
    }
    sqlx::query(&insert)
        .bind(Uuid::now_v7())
        .bind("bob")
        .bind(bobs.id)
        .bind(at(23))
        .bind(99i64)
        .execute(&app.pool)
        .await
        .expect("insert bob's notification");
    notifications.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let want: Vec<Uuid> = notifications.iter().map(|n| n.1).collect();
    assert!(want.len() >= 4);
    assert_eq!(app.walk("alice", "/notifications?limit=2").await, want);
    let (_, page) = app.json("alice", "/notifications").await;
    assert_eq!(ids(&page), want);
    assert!(
        page["items"][0]["position"]
            .as_str()
            .is_some_and(|p| p.starts_with("0@"))
    );
    let (status, _) = app.json("alice", "/notifications?limit=201").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Alice's task 1 (versions 1–5, the last two in one commit) and task 2 (deleted), interleaved in
/// the log with bob's events.
async fn seed_audit(
    app: &TestApp,
    generation: &generations::Generation,
) -> (Task, Task, Vec<Audit>) {
    let task = Task::new("alice", 1, "Audited");
    let mut gone = Task::new("alice", 2, "Deleted later");
    gone.status = "deleted";
    let bobs = Task::new("bob", 1, "Bob's");
    insert_tasks(
        &app.pool,
        generation,
        &[task.clone(), gone.clone(), bobs.clone()],
    )
    .await;
    // (user, task, version, type, offset): one record per offset; equal offsets share a commit.
    let rows = [
        ("alice", task.id, 1, "task.created", 3),
        ("bob", bobs.id, 1, "task.created", 4),
        ("alice", gone.id, 1, "task.created", 5),
        ("alice", task.id, 2, "task.renamed", 6),
        ("alice", task.id, 3, "task.tag_added", 8),
        ("alice", task.id, 4, "task.tag_added", 8),
        ("alice", task.id, 5, "task.tag_added", 8),
        ("bob", bobs.id, 2, "task.completed", 9),
        ("alice", gone.id, 2, "task.deleted", 10),
        ("alice", task.id, 6, "task.completed", 12),
        ("alice", task.id, 7, "reminder.added", 12),
        ("alice", task.id, 8, "task.reopened", 13),
    ];
    let mut commits = std::collections::HashMap::new();
    let events: Vec<Audit> = rows
        .iter()
        .map(|&(user, task, version, event_type, offset)| Audit {
            event_id: Uuid::now_v7(),
            user: user.to_owned(),
            task,
            version,
            event_type,
            offset,
            commit: *commits.entry(offset).or_insert_with(Uuid::now_v7),
        })
        .collect();
    insert_audit(&app.pool, generation, &events).await;
    (task, gone, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_a_tasks_events_by_version_even_once_deleted() {
    let (app, generation) = TestApp::start().await;
    let (task, gone, events) = seed_audit(&app, &generation).await;
    let of = |id: Uuid| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.task == id)
            .map(|e| json!(e.event_id.to_string()))
            .collect()
    };
    let (status, body) = app.json("alice", "/tasks/1/history").await;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().expect("items");
    let got: Vec<Value> = items.iter().map(|e| e["event_id"].clone()).collect();
    assert_eq!(got, of(task.id));
    assert_eq!(body["next"], Value::Null);
    let first = &items[0];
    assert_eq!(first["event_type"], "task.created");
    assert_eq!(first["aggregate_version"], 1);
    assert_eq!(first["schema_version"], 1);
    assert_eq!(first["actor"], "user");
    assert_eq!(first["position"], "0@3");
    assert_eq!(first["payload"], json!({ "n": 1 }));
    for key in ["occurred_at", "correlation_id", "causation_id", "commit_id"] {
        assert!(first[key].is_string(), "{key}");
    }
    // Paged by version.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = app
            .json(
                "alice",
                &format!("/tasks/{}/history?limit=3&after={after}", task.id),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        paged.extend(
            body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["event_id"].clone()),
        );
        match body["next"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(paged, of(task.id));
    // A deleted task keeps its history; another user's task has none for alice.
    let (status, body) = app.json("alice", "/tasks/2/history").await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<Value> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    assert_eq!(got, of(gone.id));
    let bobs = events.iter().find(|e| e.user == "bob").expect("bob's").task;
    let (status, problem) = app.json("alice", &format!("/tasks/{bobs}/history")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "task_not_found");
    let (status, _) = app.json("alice", "/tasks/9/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_feed_pages_in_log_order_and_never_splits_a_commit() {
    let (app, generation) = TestApp::start().await;
    let (_, _, events) = seed_audit(&app, &generation).await;
    let alices: Vec<&Audit> = events.iter().filter(|e| e.user == "alice").collect();
    let want: Vec<String> = alices.iter().map(|e| e.event_id.to_string()).collect();

    for limit in [1, 2, 3, 4, 100] {
        let mut got = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..50 {
            let path = match &after {
                Some(a) => format!("/events?limit={limit}&after={a}"),
                None => format!("/events?limit={limit}"),
            };
            let (status, page) = app.json("alice", &path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            let items = page["items"].as_array().expect("items");
            let offsets: Vec<i64> = items
                .iter()
                .map(|e| {
                    e["position"].as_str().expect("position")[2..]
                        .parse()
                        .expect("offset")
                })
                .collect();
            // Whole commits only: every commit on this page is complete.
            for offset in &offsets {
                let in_page = offsets.iter().filter(|o| *o == offset).count();
                let in_log = alices.iter().filter(|e| e.offset == *offset).count();
                assert_eq!(in_page, in_log, "{path}: commit at {offset} split");
            }
            if items.len() > limit {
                assert_eq!(
                    offsets
                        .iter()
                        .collect::<std::collections::HashSet<_>>()
                        .len(),
                    1,
                    "{path}: only a single large commit may exceed the limit"
                );
            }
            got.extend(
                items
                    .iter()
                    .map(|e| e["event_id"].as_str().expect("id").to_owned()),
            );
            let next = page["next"].as_str().map(str::to_owned);
            if !page["has_more"].as_bool().expect("has_more") {
                // Polling from the end: nothing new, the same position back.
                if let Some(next) = &next {
                    let (_, again) = app.json("alice", &format!("/events?after={next}")).await;
                    assert_eq!(again["items"], json!([]));
                    assert_eq!(again["next"].as_str(), Some(next.as_str()));
                    assert_eq!(again["has_more"], false);
                }
                break;
            }
            after = next;
        }
        assert_eq!(got, want, "limit {limit}");
    }
    // After a position: only later records.
    let (_, page) = app.json("alice", "/events?after=0@8").await;
    let offsets: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["position"].as_str().expect("position"))
        .collect();
    assert_eq!(offsets, ["0@10", "0@12", "0@12", "0@13"]);
    for bad in ["8", "a@b", "0@-1", "-1@0"] {
        let (status, problem) = app.json("alice", &format!("/events?after={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(problem["errors"][0]["field"], "after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistency_token_waits_for_the_projections() {
    let (app, generation) = TestApp::start().await;
    insert_tasks(&app.pool, &generation, &[Task::new("alice", 1, "Written")]).await;
    set_projected(&app.pool, &generation, 0, 10).await;
    let with_token = |token: &str| {
        app.get("alice", "/tasks/1")
            .header("x-consistency-token", token)
    };

    // Already projected (next offset 10 > 9): answered at once.
    let (status, _) = send(with_token("0@9")).await;
    assert_eq!(status, StatusCode::OK);

    // Not yet: 504 after the configured wait, saying how far behind.
    let started = Instant::now();
    let response = with_token("0@12").send().await.expect("request");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "projection_behind");
    assert_eq!(problem["projected_next_offset"], 10);
    assert_eq!(problem["behind_by"], 3);
    assert_eq!(problem["consistency_token"], "0@12");

    // A partition with nothing projected yet.
    let (status, problem) = send(with_token("1@0")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(problem["projected_next_offset"], Value::Null);

    // The projection catches up while the query waits: answered as soon as it does.
    let pool = app.pool.clone();
    let writer_generation = generation.clone();
    let catch_up = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        set_projected(&pool, &writer_generation, 0, 13).await;
    });
    let (status, body) = send(with_token("0@12")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    catch_up.await.expect("caught up");

    // Every route honours it (the waits run concurrently).
    let app = &app;
    let answers = futures::future::join_all(ROUTES.iter().flat_map(|route| {
        ["0@12", "0@13"].map(|token| async move {
            let (status, _) =
                send(app.get("alice", route).header("x-consistency-token", token)).await;
            (*route, token, status)
        })
    }))
    .await;
    for (route, token, status) in answers {
        let want = if token == "0@12" {
            StatusCode::OK
        } else {
            StatusCode::GATEWAY_TIMEOUT
        };
        assert_eq!(status, want, "{route} with {token}");
    }

    // Malformed tokens: 400 at once.
    for bad in [
        "12",
        "0@",
        "@5",
        "a@b",
        "-1@5",
        "0@-5",
        "99@1",
        "0@99999999999999999999",
    ] {
        let (status, problem) = send(with_token(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(problem["code"], "invalid_consistency_token", "{bad}");
    }

    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("taskstream_query_consistency_wait_seconds_count{outcome=\"timeout\"}")
    );
    assert!(
        metrics.contains("taskstream_query_consistency_wait_seconds_count{outcome=\"reached\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_follow_the_active_generation_and_are_503_without_one() {
    let (pool, url) = migrations::testing::fresh_database().await;
    // Only a notification can tell the service of a switch-over within this test.
    let app = TestApp::start_on(pool.clone(), url, |s| {
        s.query.generation_refresh_ms = 60_000;
    })
    .await;

    // No generation yet: 503 with Retry-After, and not ready.
    let response = app.get("alice", "/tasks").send().await.expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "read_models_unavailable");
    // (`/ready` also checks the broker, unreachable here; the query checks alone are fast.)
    let state = query_service::AppState::new(pool.clone(), &support::settings(&app.url));
    let checks = query_service::readiness(&state, Readiness::new());
    let results: HashMap<_, _> = checks.run().await.into_iter().collect();
    assert_eq!(results["database"], Ok(()));
    assert!(results["read_models"].is_err());

    // The first generation appears: found without waiting for a refresh.
    let first = generations::ensure_active(&pool).await.expect("activate");
    insert_tasks(&pool, &first, &[Task::new("alice", 1, "In generation 1")]).await;
    let (status, page) = app.json("alice", "/tasks").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["title"], "In generation 1");
    let results: HashMap<_, _> = checks.run().await.into_iter().collect();
    assert_eq!(results["read_models"], Ok(()));

    // A rebuild fills generation 2 and switches to it: the service follows the notification.
    let second = generations::create(&pool).await.expect("create");
    insert_tasks(&pool, &second, &[Task::new("alice", 1, "In generation 2")]).await;
    let mut tx = pool.begin().await.expect("begin");
    generations::lock_for_switch(&mut tx).await.expect("lock");
    generations::activate(&mut tx, second.number)
        .await
        .expect("activate");
    tx.commit().await.expect("commit");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, page) = app.json("alice", "/tasks").await;
        assert_eq!(status, StatusCode::OK);
        if page["items"][0]["title"] == "In generation 2" {
            break;
        }
        assert!(Instant::now() < deadline, "still reading generation 1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    generations::drop_generation(&pool, &first)
        .await
        .expect("drop");

    // A switch-over this process does not hear of (its notification lost), after which the
    // generation it still reads is dropped: the query notices, re-reads and answers from the
    // new generation — never a 500.
    let third = generations::create(&pool).await.expect("create");
    insert_tasks(&pool, &third, &[Task::new("alice", 1, "In generation 3")]).await;
    sqlx::raw_sql(&format!(
        "UPDATE read_model_generations SET state = 'retired' WHERE generation = {old};
         UPDATE read_model_generations SET state = 'active' WHERE generation = {new};
         UPDATE read_model_active SET generation = {new};",
        old = second.number,
        new = third.number
    ))
    .execute(&pool)
    .await
    .expect("silent switch");
    generations::drop_generation(&pool, &second)
        .await
        .expect("drop");
    let (status, page) = app.json("alice", "/tasks").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["title"], "In generation 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_query_route() {
    let (app, _) = TestApp::start().await;
    let (status, doc) = send(app.client.get(format!("{}/openapi.json", app.base))).await;
    assert_eq!(status, StatusCode::OK);
    for route in ROUTES {
        let path = format!("/api/{{user_id}}{}", route.replace("/1", "/{id}"));
        assert!(
            doc["paths"][&path]["get"].is_object(),
            "{path} in {}",
            doc["paths"]
        );
    }
    let params: Vec<&str> = doc["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    for name in [
        "status",
        "priority",
        "tags",
        "tags_mode",
        "q",
        "sort",
        "cursor",
        "X-Consistency-Token",
    ] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }
    let docs = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    // Unknown routes and methods are problem+json too.
    let (status, problem) = send(app.client.get(format!("{}/api/alice/nope", app.base))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "not_found");
}
