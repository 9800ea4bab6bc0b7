//! `GET /api/{user_id}/tasks`: every filter, sort and order, walked page by page with the cursor
//! and compared exactly with a reference computed here over the seeded rows; search; cursors;
//! hostile parameters.

mod support;

use std::cmp::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use support::{Lcg, Task, TestApp, ids, insert_tasks};
use uuid::Uuid;

const VERBS: &[&str] = &[
    "Buy", "Call", "email", "Fix", "plan", "Review", "write", "Clean", "Book", "Pay",
];
const OBJECTS: &[&str] = &[
    "groceries",
    "dentist",
    "report",
    "Car",
    "garden",
    "taxes",
    "flights",
    "invoice",
    "presentation",
    "kitchen",
];
const DESCRIPTIONS: &[&str] = &[
    "before the weekend",
    "ask about the quarterly report",
    "remember the receipt",
    "call back if busy",
    "the big one",
];
const TAGS: &[&str] = &["Work", "home", "errands", "Health", "finance", "urgent"];
const STATUSES: &[&str] = &[
    "open",
    "open",
    "open",
    "open",
    "open",
    "completed",
    "completed",
    "completed",
    "deleted",
];

/// Tasks for alice (many), bob and carol, with ties in every sort key, NULL due times, and no
/// due time within three hours of `now` (so `overdue` cannot change while the test runs).
fn seed(now: DateTime<Utc>) -> Vec<Task> {
    let mut rng = Lcg(20_261_122);
    let base = now - Duration::days(200);
    let today = now.date_naive();
    let mut tasks = Vec::new();
    for (user, count) in [("alice", 230), ("bob", 40), ("carol", 12)] {
        for number in 1..=count {
            let title = if rng.chance(15) {
                // Many tasks share a title: the tie-breaker must order them.
                "Buy groceries".to_owned()
            } else {
                format!("{} {}", rng.pick(VERBS), rng.pick(OBJECTS))
            };
            let mut task = Task::new(user, number, &title);
            task.id = rng.uuid();
            if rng.chance(60) {
                task.description = Some((*rng.pick(DESCRIPTIONS)).to_owned());
            }
            task.priority = rng.below(4) as i16;
            // Coarse times: many tasks share a created or updated time.
            task.created_at = base + Duration::hours(rng.below(120) as i64);
            task.updated_at = task.created_at + Duration::hours(rng.below(3) as i64 * 24);
            match rng.below(10) {
                0..=2 => {}
                3..=6 => {
                    let day = today
                        .checked_add_days(Days::new(rng.below(40)))
                        .and_then(|d| d.checked_sub_days(Days::new(20)))
                        .expect("date");
                    task = task.due_on(day);
                }
                _ => {
                    let minutes = rng.below(60 * 24 * 60) as i64 - 60 * 24 * 30;
                    task = task.due_at(now + Duration::minutes(minutes));
                }
            }
            if task
                .due_at
                .is_some_and(|at| (at - now).num_minutes().abs() < 180)
            {
                task.due = None;
                task.due_at = None;
            }
            let mut tags: Vec<String> = Vec::new();
            for _ in 0..rng.below(4) {
                let tag = (*rng.pick(TAGS)).to_owned();
                if !tags.iter().any(|t| t.eq_ignore_ascii_case(&tag)) {
                    tags.push(tag);
                }
            }
            task.tags = tags;
            task.status = *rng.pick(STATUSES);
            if task.status == "completed" {
                task.completed_at = Some(task.updated_at);
            }
            task.version = 1 + rng.below(8) as i64;
            tasks.push(task);
        }
    }
    tasks
}

fn compare(a: &Task, b: &Task, sort: &str, desc: bool) -> Ordering {
    let directed = |o: Ordering| if desc { o.reverse() } else { o };
    match sort {
        // NULL due times last in both directions.
        "due" => match (a.due_at, b.due_at) {
            (Some(x), Some(y)) => directed(x.cmp(&y).then(a.id.cmp(&b.id))),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => directed(a.id.cmp(&b.id)),
        },
        _ => {
            let key = match sort {
                "created" => a.created_at.cmp(&b.created_at),
                "updated" => a.updated_at.cmp(&b.updated_at),
                "priority" => a.priority.cmp(&b.priority),
                "title" => a.title.as_bytes().cmp(b.title.as_bytes()),
                other => panic!("unknown sort {other}"),
            };
            directed(key.then(a.id.cmp(&b.id)))
        }
    }
}

fn expected(
    tasks: &[Task],
    user: &str,
    keep: impl Fn(&Task) -> bool,
    sort: &str,
    desc: bool,
) -> Vec<Uuid> {
    let mut chosen: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.user == user && t.status != "deleted" && keep(t))
        .collect();
    chosen.sort_by(|a, b| compare(a, b, sort, desc));
    chosen.iter().map(|t| t.id).collect()
}

fn status_is(status: &str) -> impl Fn(&Task) -> bool + '_ {
    move |t: &Task| status == "all" || t.status == status
}

/// The midnight (UTC) that ends `date`: the deadline of a task due that day.
fn end_of(date: NaiveDate) -> DateTime<Utc> {
    date.checked_add_days(Days::new(1))
        .expect("date")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
}

async fn seeded() -> (TestApp, Vec<Task>, DateTime<Utc>) {
    let (app, generation) = TestApp::start().await;
    let now = Utc::now();
    let tasks = seed(now);
    insert_tasks(&app.pool, &generation, &tasks).await;
    (app, tasks, now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_sort_and_order_pages_exactly_like_the_reference() {
    let (app, tasks, _) = seeded().await;
    let mut checked = 0;
    for status in ["open", "completed", "all"] {
        for sort in ["created", "updated", "due", "priority", "title"] {
            for order in ["asc", "desc"] {
                let path = format!("/tasks?status={status}&sort={sort}&order={order}&limit=13");
                let got = app.walk("alice", &path).await;
                let want = expected(&tasks, "alice", status_is(status), sort, order == "desc");
                assert!(!want.is_empty());
                assert_eq!(got, want, "{path}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 30);

    // Defaults: open tasks, newest first, 50 a page.
    let (status, page) = app.json("alice", "/tasks").await;
    assert_eq!(status, StatusCode::OK);
    let want = expected(&tasks, "alice", status_is("open"), "created", true);
    assert_eq!(ids(&page), want[..50]);
    assert!(page["next_cursor"].is_string());
    // Other users see only their own.
    let got = app.walk("bob", "/tasks?status=all&limit=200").await;
    assert_eq!(
        got,
        expected(&tasks, "bob", status_is("all"), "created", true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_matches_the_reference() {
    let (app, tasks, now) = seeded().await;
    let today = now.date_naive();
    let soon = today.checked_add_days(Days::new(5)).expect("date");
    let lately = today.checked_sub_days(Days::new(7)).expect("date");
    let instant = (now + Duration::days(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let instant_at: DateTime<Utc> = instant.parse().expect("valid");
    let open = |t: &Task| t.status == "open";
    let has = |t: &Task, tag: &str| t.tag_keys().iter().any(|k| k == tag);

    type Keep<'a> = Box<dyn Fn(&Task) -> bool + 'a>;
    let cases: Vec<(String, Keep)> = vec![
        (
            "priority=high".into(),
            Box::new(move |t| open(t) && t.priority == 2),
        ),
        (
            "priority=low,urgent".into(),
            Box::new(move |t| open(t) && matches!(t.priority, 0 | 3)),
        ),
        (
            "priority=LOW&priority=urgent&status=all".into(),
            Box::new(|t| matches!(t.priority, 0 | 3)),
        ),
        (
            "tags=WORK".into(),
            Box::new(move |t| open(t) && has(t, "work")),
        ),
        (
            "tags=work,home".into(),
            Box::new(move |t| open(t) && (has(t, "work") || has(t, "home"))),
        ),
        (
            "tags=work&tags=Home&tags_mode=all".into(),
            Box::new(move |t| open(t) && has(t, "work") && has(t, "home")),
        ),
        (
            "status=completed&tags=health,finance&tags_mode=any".into(),
            Box::new(move |t| t.status == "completed" && (has(t, "health") || has(t, "finance"))),
        ),
        (
            format!("due_before={soon}"),
            Box::new(move |t| open(t) && t.due_at.is_some_and(|d| d <= end_of(soon))),
        ),
        (
            format!("due_after={lately}&status=all"),
            Box::new(move |t| t.due_at.is_some_and(|d| d > end_of(lately))),
        ),
        (
            format!("due_after={lately}&due_before={soon}"),
            Box::new(move |t| {
                open(t)
                    && t.due_at
                        .is_some_and(|d| d > end_of(lately) && d <= end_of(soon))
            }),
        ),
        (
            format!("due_before={instant}&status=all"),
            Box::new(move |t| t.due_at.is_some_and(|d| d < instant_at)),
        ),
        (
            format!("due_after={instant}"),
            Box::new(move |t| open(t) && t.due_at.is_some_and(|d| d > instant_at)),
        ),
        (
            "overdue=true".into(),
            Box::new(move |t| open(t) && t.due_at.is_some_and(|d| d < now)),
        ),
        (
            "overdue=true&status=all&priority=high,urgent".into(),
            Box::new(move |t| open(t) && t.priority >= 2 && t.due_at.is_some_and(|d| d < now)),
        ),
        ("overdue=true&status=completed".into(), Box::new(|_| false)),
        (
            "status=all&priority=medium,high&tags=work,errands&due_before=2100-01-01".into(),
            Box::new(move |t| {
                matches!(t.priority, 1 | 2)
                    && (has(t, "work") || has(t, "errands"))
                    && t.due_at.is_some()
            }),
        ),
        ("tags=nosuchtag".into(), Box::new(|_| false)),
    ];
    let mut non_empty = 0;
    for (filter, keep) in &cases {
        for (sort, order) in [("due", "asc"), ("priority", "desc"), ("title", "asc")] {
            let path = format!("/tasks?{filter}&sort={sort}&order={order}&limit=9");
            let got = app.walk("alice", &path).await;
            let want = expected(&tasks, "alice", keep, sort, order == "desc");
            assert_eq!(got, want, "{path}");
            if !want.is_empty() {
                non_empty += 1;
            }
        }
    }
    assert!(non_empty >= 14 * 3, "the seed exercises the filters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_many_tasks_finds_every_prefix_match() {
    let (app, tasks, _) = seeded().await;
    let words = |text: &str| {
        text.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w.starts_with("repo"))
    };
    let keep = |t: &Task| words(&t.title) || t.description.as_deref().is_some_and(words);
    let want = expected(&tasks, "alice", keep, "created", false);
    assert!(want.len() > 20, "the seed has matches");
    let got = app
        .walk(
            "alice",
            "/tasks?q=Repo&status=all&sort=created&order=asc&limit=7",
        )
        .await;
    assert_eq!(got, want);
    // By relevance, page by page, the same set with no duplicates or gaps.
    let mut by_rank = app.walk("alice", "/tasks?q=repo&status=all&limit=6").await;
    let (status, one_page) = app
        .json("alice", "/tasks?q=repo&status=all&limit=200")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_rank, ids(&one_page));
    by_rank.sort();
    let mut want = want;
    want.sort();
    assert_eq!(by_rank, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_prefixes_and_typos_and_ranks_titles_first() {
    let (app, generation) = TestApp::start().await;
    let mut groceries = Task::new("sam", 1, "Buy groceries");
    groceries.created_at -= Duration::hours(5);
    let mut weekend = Task::new("sam", 2, "Weekend plans");
    weekend.description = Some("don't forget the groceries and flowers".into());
    weekend.created_at -= Duration::hours(4);
    let mut plumber = Task::new("sam", 3, "Call the plumber");
    plumber.description = Some("kitchen sink leaks".into());
    let mut party = Task::new("sam", 4, "Groceries for the party");
    party.created_at -= Duration::hours(3);
    let mut done = Task::new("sam", 5, "Buy groceries again");
    done.status = "completed";
    let mut deleted = Task::new("sam", 6, "groceries secret");
    deleted.status = "deleted";
    let others = Task::new("bob", 1, "Buy groceries");
    let all = [
        groceries.clone(),
        weekend.clone(),
        plumber.clone(),
        party.clone(),
        done.clone(),
        deleted,
        others,
    ];
    insert_tasks(&app.pool, &generation, &all).await;

    let search = |q: &str| {
        let app = &app;
        let path = format!("/tasks?{q}");
        async move {
            let (status, page) = app.json("sam", &path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            ids(&page)
        }
    };

    // A prefix finds title and description matches; titles rank first.
    let found = search("q=groc").await;
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[2], weekend.id, "the description match ranks last");
    assert!(found[..2].contains(&groceries.id) && found[..2].contains(&party.id));
    assert_eq!(search("q=GROC").await, found, "case does not matter");
    // Typos in a title word still find it.
    for typo in ["grocerys", "grcoeries", "Groceris"] {
        let found = search(&format!("q={typo}")).await;
        assert!(found.contains(&groceries.id), "{typo}: {found:?}");
        assert!(!found.contains(&plumber.id), "{typo}: {found:?}");
    }
    // Every word must match, in the title or the description.
    assert_eq!(search("q=kitchen%20plumb").await, [plumber.id]);
    assert_eq!(search("q=sink").await, [plumber.id]);
    assert_eq!(search("q=zebra").await, Vec::<Uuid>::new());
    // Filters and explicit sorts apply to searches.
    let with_done = search("q=groc&status=all").await;
    assert_eq!(with_done.len(), 4);
    assert!(with_done.contains(&done.id));
    assert_eq!(
        search("q=groc&sort=title&order=asc").await,
        [groceries.id, party.id, weekend.id]
    );
    assert_eq!(
        search("q=groc&sort=created&order=asc").await,
        [groceries.id, weekend.id, party.id]
    );
    // Relevance pages one task at a time without duplicates or gaps.
    let paged = app.walk("sam", "/tasks?q=groc&status=all&limit=1").await;
    assert_eq!(paged, search("q=groc&status=all").await);
    // Sorting by relevance needs a search.
    let (status, problem) = app.json("sam", "/tasks?sort=relevance").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "sort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_in_a_short_title_word_still_finds_the_task_and_nothing_unrelated() {
    let (app, generation) = TestApp::start().await;
    let report = Task::new("kim", 1, "Write quarterly report");
    let porch = Task::new("kim", 2, "Repair the porch");
    let dentist = Task::new("kim", 3, "Book dentist");
    let plumber = Task::new("kim", 4, "Call the plumber");
    insert_tasks(
        &app.pool,
        &generation,
        &[report.clone(), porch, dentist.clone(), plumber.clone()],
    )
    .await;
    let search = |q: &'static str| {
        let app = &app;
        async move {
            let (status, page) = app.json("kim", &format!("/tasks?q={q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {page}");
            ids(&page)
        }
    };

    // One letter missing from a five- or six-letter word.
    assert_eq!(search("reprt").await, [report.id], "not the porch repair");
    assert_eq!(search("dentst").await, [dentist.id]);
    assert_eq!(search("plumbr").await, [plumber.id]);
    assert_eq!(search("quartely%20reprt").await, [report.id]);
    // A short word is not a typo of a longer one that merely starts alike.
    assert_eq!(search("cat").await, Vec::<Uuid>::new(), "not \"Call\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_only_continues_its_own_list() {
    let (app, _, _) = seeded().await;
    let (status, first) = app
        .json("alice", "/tasks?status=open&sort=title&limit=5")
        .await;
    assert_eq!(status, StatusCode::OK);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();

    // The same list with another page size continues.
    let (status, _) = app
        .json(
            "alice",
            &format!("/tasks?status=open&sort=title&limit=7&cursor={cursor}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    for other in [
        "status=completed&sort=title",
        "status=open&sort=due",
        "status=open&sort=title&order=asc",
        "status=open&sort=title&priority=high",
        "status=open&sort=title&q=buy",
    ] {
        let (status, problem) = app
            .json("alice", &format!("/tasks?{other}&cursor={cursor}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{other}");
        assert_eq!(problem["code"], "cursor_mismatch", "{other}");
    }
    // Another user's cursor does not continue this user's list either.
    let (status, problem) = app
        .json(
            "bob",
            &format!("/tasks?status=open&sort=title&cursor={cursor}"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "cursor_mismatch");

    // A cursor whose sort key was tampered with, and garbage, are invalid.
    let mut decoded: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&cursor).expect("base64")).expect("json");
    decoded["k"] = Value::from(12);
    let tampered = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&decoded).expect("json"));
    let long = "x".repeat(3000);
    for garbage in [
        tampered.as_str(),
        "abc",
        "%00",
        "e30",
        "null",
        long.as_str(),
    ] {
        let (status, problem) = app
            .json(
                "alice",
                &format!("/tasks?status=open&sort=title&cursor={garbage}"),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{garbage}");
        assert!(
            problem["code"] == "invalid_cursor" || problem["code"] == "invalid_query",
            "{garbage}: {problem}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_with_every_one_listed() {
    let (app, _, _) = seeded().await;
    let (status, problem) = app
        .json(
            "alice",
            "/tasks?limit=abc&status=closed&priority=high,extreme&due_before=tomorrow&sort=size&bogus=1",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "invalid_query");
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["bogus", "due_before", "limit", "priority", "sort", "status"]
    );
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-5", "limit"),
        ("limit=1.5", "limit"),
        ("due_after=2026-02-30", "due_after"),
        ("due_after=2026-13-01T00:00:00Z", "due_after"),
        ("overdue=maybe", "overdue"),
        ("tags_mode=some", "tags_mode"),
        ("order=up", "order"),
        ("status=open&status=all", "status"),
    ] {
        let response = app
            .get("alice", &format!("/tasks?{query}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let (status, _) = app.json("alice", "/tasks?limit=200").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_searches_and_values_never_fail_the_server() {
    let (app, _, _) = seeded().await;
    let long = "groceries ".repeat(20);
    let too_long = "a".repeat(201);
    let hostile = [
        "'",
        "\"",
        "&",
        "|",
        "!",
        ":*",
        "a:*",
        "a & b | !c",
        "(groc",
        "groc)",
        "<->",
        "\\",
        "%",
        "_",
        "'; DROP TABLE tasks; --",
        "x²",
        "naïve café",
        "ü",
        "日本語",
        "مرحبا",
        "🙂🙂",
        "\u{200b}",
        "a\u{0301}",
        long.trim(),
        "   ",
        "--",
    ];
    for q in hostile {
        let response = app
            .get("alice", "/tasks")
            .query(&[("q", q), ("status", "all")])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{q:?}");
    }
    for (name, value) in [
        ("q", too_long.as_str()),
        ("q", "a\0b"),
        ("tags", "a\0b"),
        ("due_before", "2026-01-01T00:00:00+99:00"),
        ("due_before", "99999-01-01"),
        ("due_after", "-0001-01-01"),
        ("due_after", "0000-12-31T00:00:00Z"),
        ("limit", "99999999999999999999999"),
        ("cursor", "\u{1F600}"),
    ] {
        let response = app
            .get("alice", "/tasks")
            .query(&[(name, value)])
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{name}={value:?}"
        );
    }
    // Odd but valid values.
    for (name, value) in [
        ("tags", "%"),
        ("tags", "'"),
        ("tags", "ü,日本"),
        ("due_before", "0001-01-01"),
        ("due_after", "9999-12-31"),
    ] {
        let response = app
            .get("alice", "/tasks")
            .query(&[(name, value)])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{name}={value:?}");
    }
}
