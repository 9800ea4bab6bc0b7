//! The log client against the real broker: ordering, arbitration, durability, bad records,
//! headers, consumer groups.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use event_store::events::{EventPayload, Priority, TaskCreated, TaskUpdated};
use event_store::log::{admin, headers};
use event_store::testing::{
    PrivateBroker, fresh_topic, golden_samples, raw_commit_record, shared_brokers,
};
use event_store::{
    Actor, Appender, Arbiter, Cause, Commit, Error, LogConfig, LogPosition, LogReader, LogRecord,
    LogTail, StartAt, TailSink, UserId, Verdict, Writer, registry,
};
use futures::future::join_all;
use uuid::Uuid;

const IDLE: Duration = Duration::from_secs(10);

fn cause(user: &UserId) -> Cause {
    let id = Uuid::now_v7();
    Cause {
        user_id: user.clone(),
        actor: Actor::User,
        correlation_id: id,
        causation_id: id,
        occurred_at: Utc::now(),
    }
}

/// A commit for `aggregate` at `version`: `task.created` for version 1, else `task.updated` whose
/// title carries `label`.
fn commit(user: &UserId, aggregate: Uuid, version: u64, label: &str) -> Commit {
    let payload = if version == 1 {
        EventPayload::TaskCreated(TaskCreated {
            task_number: 1,
            title: label.to_owned(),
            description: None,
            priority: Priority::Medium,
            due: None,
            tags: vec![],
            recurrence: None,
            occurrence_of: None,
        })
    } else {
        EventPayload::TaskUpdated(TaskUpdated {
            title: Some(label.to_owned()),
            ..TaskUpdated::default()
        })
    };
    Commit::new(
        Uuid::now_v7(),
        vec![cause(user).event(aggregate, version, payload)],
        None,
    )
    .expect("valid commit")
}

fn title(commit: &Commit) -> String {
    match &commit.events()[0].payload {
        EventPayload::TaskCreated(c) => c.title.clone(),
        EventPayload::TaskUpdated(u) => u.title.clone().unwrap_or_default(),
        other => panic!("unexpected {other:?}"),
    }
}

async fn read_all(config: &LogConfig) -> Vec<LogRecord> {
    let mut reader = LogReader::assign_all(config, &config.topic, StartAt::Beginning)
        .await
        .expect("reader");
    reader.read_to_end(IDLE).await.expect("read")
}

fn user(i: usize) -> UserId {
    UserId::parse(format!("user-{i}")).expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commits_from_four_appenders_keep_user_order_and_contiguous_versions() {
    let config = fresh_topic(&shared_brokers(), 8).await;
    const USERS: usize = 200;
    const PER_USER: usize = 50;

    let appenders: Vec<Appender> = join_all((0..4).map(|_| Appender::connect(&config)))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("appenders");
    // Each user writes through one appender, sequentially; users run concurrently, alternating
    // between two aggregates each.
    let tasks = (0..USERS).map(|u| {
        let appender = appenders[u % appenders.len()].clone();
        tokio::spawn(async move {
            let user = user(u);
            let aggregates = [Uuid::now_v7(), Uuid::now_v7()];
            let mut versions = [0u64; 2];
            for seq in 0..PER_USER {
                let a = seq % 2;
                versions[a] += 1;
                let commit = commit(&user, aggregates[a], versions[a], &seq.to_string());
                appender.append(&commit).await.expect("append");
            }
        })
    });
    for task in join_all(tasks).await {
        task.expect("appender task");
    }

    let records = read_all(&config).await;
    assert_eq!(records.len(), USERS * PER_USER);
    let mut arbiter = Arbiter::new();
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for record in &records {
        let commit = record.decode().expect("valid commit");
        let user = commit.user_id().clone();
        assert_eq!(
            record.partition,
            event_store::partition::partition_for(user.as_str(), 8),
            "{user} is in its partition"
        );
        assert_eq!(
            arbiter.judge(&commit),
            Verdict::Accepted,
            "versions are contiguous"
        );
        seen.entry(user.to_string())
            .or_default()
            .push(title(&commit).parse().expect("sequence number"));
    }
    assert_eq!(seen.len(), USERS);
    for (user, seqs) in seen {
        assert_eq!(seqs, (0..PER_USER).collect::<Vec<_>>(), "order of {user}");
    }
    assert_eq!(arbiter.lost_races(), 0);
    assert_eq!(arbiter.aggregates(), USERS * 2);
}

/// Records the winner of every aggregate's version as one reader saw it.
#[derive(Default, Clone)]
struct Winners(Arc<Mutex<BTreeMap<(Uuid, u64), Uuid>>>);

impl TailSink for Winners {
    fn on_commit(&mut self, _: LogPosition, commit: &Commit, verdict: Verdict) {
        if verdict.is_accepted() {
            self.0.lock().expect("lock").insert(
                (commit.aggregate_id(), commit.last_version()),
                commit.commit_id,
            );
        }
    }
}

async fn writer(config: &LogConfig, name: &'static str) -> Writer {
    let starts: Vec<_> = (0..config.partitions)
        .map(|p| (p, StartAt::Beginning))
        .collect();
    let tail = LogTail::start(config, name, &starts, Arbiter::new(), ())
        .await
        .expect("tail");
    tail.caught_up().await.expect("caught up");
    Writer::new(
        config,
        Appender::connect(config).await.expect("appender"),
        Arc::new(tail),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_appenders_exactly_one_wins_and_every_reader_agrees() {
    let config = fresh_topic(&shared_brokers(), 3).await;
    let (a, b) = tokio::join!(writer(&config, "writer-a"), writer(&config, "writer-b"));
    let user = user(1);
    let mut winners = BTreeMap::new();
    for round in 0..20 {
        let aggregate = Uuid::now_v7();
        let created = a
            .append(&commit(&user, aggregate, 1, "created"))
            .await
            .expect("create");
        assert_eq!(created.verdict, Verdict::Accepted);
        // Both write version 2 against version 1.
        let from_a = commit(&user, aggregate, 2, &format!("a{round}"));
        let from_b = commit(&user, aggregate, 2, &format!("b{round}"));
        let (ra, rb) = tokio::join!(a.append(&from_a), b.append(&from_b));
        let (ra, rb) = (ra.expect("a confirmed"), rb.expect("b confirmed"));
        assert_ne!(
            ra.verdict.is_accepted(),
            rb.verdict.is_accepted(),
            "exactly one wins"
        );
        let winner = if ra.verdict.is_accepted() {
            from_a.commit_id
        } else {
            from_b.commit_id
        };
        let (first, second) = if ra.position < rb.position {
            (ra, rb)
        } else {
            (rb, ra)
        };
        assert_eq!(first.verdict, Verdict::Accepted, "the earlier record wins");
        assert_eq!(
            second.verdict,
            Verdict::LostRace {
                expected: 1,
                current: 2
            }
        );
        winners.insert((aggregate, 2), winner);
    }

    // Two independent readers, each from offset 0, agree with the writers.
    let starts: Vec<_> = (0..3).map(|p| (p, StartAt::Beginning)).collect();
    let sinks = [Winners::default(), Winners::default()];
    let mut tails = Vec::new();
    for sink in &sinks {
        let tail = LogTail::start(&config, "reader", &starts, Arbiter::new(), sink.clone())
            .await
            .expect("tail");
        tails.push(tail);
    }
    for tail in &tails {
        tail.caught_up().await.expect("caught up");
    }
    for sink in &sinks {
        let seen = sink.0.lock().expect("lock").clone();
        let races: BTreeMap<_, _> = seen.into_iter().filter(|((_, v), _)| *v == 2).collect();
        assert_eq!(races, winners);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_broker_loses_no_acknowledged_commit() {
    let mut broker = PrivateBroker::start().await;
    let config = fresh_topic(&broker.brokers(), 2).await;
    let config = LogConfig {
        append_timeout_ms: 2_000,
        ..config
    };
    let appender = Appender::connect(&config).await.expect("appender");
    let mut acknowledged = Vec::new();
    for i in 0..100 {
        let c = commit(&user(i % 7), Uuid::now_v7(), 1, &format!("before-{i}"));
        appender.append(&c).await.expect("append");
        acknowledged.push(c.commit_id);
    }

    broker.kill();
    let down = appender
        .append(&commit(&user(0), Uuid::now_v7(), 1, "while-down"))
        .await;
    assert!(
        matches!(&down, Err(e) if e.is_transient()),
        "an append to a dead broker is a transient failure: {down:?}"
    );
    broker.start_again().await;
    broker.wait_serving(&config).await;

    let appender = Appender::connect(&config).await.expect("reconnect");
    for i in 0..100 {
        let c = commit(&user(i % 7), Uuid::now_v7(), 1, &format!("after-{i}"));
        appender.append(&c).await.expect("append after restart");
        acknowledged.push(c.commit_id);
    }

    let read: Vec<Uuid> = read_all(&config)
        .await
        .iter()
        .map(|r| r.decode().expect("valid").commit_id)
        .collect();
    let missing: Vec<usize> = acknowledged
        .iter()
        .enumerate()
        .filter(|(_, id)| !read.contains(id))
        .map(|(i, _)| i)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged commits (by index) missing from the log: {missing:?}; read {}",
        read.len()
    );
}

#[derive(Default, Clone)]
struct Undecodable(Arc<Mutex<Vec<(i32, i64, String)>>>);

impl TailSink for Undecodable {
    fn on_commit(&mut self, _: LogPosition, _: &Commit, _: Verdict) {}
    fn on_undecodable(&mut self, position: LogPosition, error: &Error) {
        self.0
            .lock()
            .expect("lock")
            .push((position.partition, position.offset, error.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_is_not_a_commit_is_reported_with_its_position() {
    let config = fresh_topic(&shared_brokers(), 1).await;
    let appender = Appender::connect(&config).await.expect("appender");
    let good = commit(&user(1), Uuid::now_v7(), 1, "good");
    appender.append(&good).await.expect("append");
    let bad = appender
        .append_raw("user-1", b"\x00 not json")
        .await
        .expect("append raw");
    let unknown = appender
        .append_raw("user-1", br#"{"format":1,"commit_id":"0192f0a4-5b6c-7d8e-9f01-000000000001","events":[{"event_type":"task.teleported"}]}"#)
        .await
        .expect("append raw");

    let records = read_all(&config).await;
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0].decode().expect("valid").commit_id,
        good.commit_id
    );
    for (record, position) in records[1..].iter().zip([bad, unknown]) {
        match record.decode() {
            Err(Error::Undecodable { position: p, .. }) => assert_eq!(p, position),
            other => panic!("expected an undecodable record, got {other:?}"),
        }
    }

    // A tail reports them and keeps confirming later commits.
    let sink = Undecodable::default();
    let tail = Arc::new(
        LogTail::start(
            &config,
            "test",
            &[(0, StartAt::Beginning)],
            Arbiter::new(),
            sink.clone(),
        )
        .await
        .expect("tail"),
    );
    let writer = Writer::new(&config, appender, Arc::clone(&tail));
    let after = writer
        .append(&commit(&user(1), Uuid::now_v7(), 1, "after"))
        .await
        .expect("confirmed after bad records");
    assert_eq!(after.verdict, Verdict::Accepted);
    let reported = sink.0.lock().expect("lock").clone();
    assert_eq!(
        reported
            .iter()
            .map(|(p, o, _)| (*p, *o))
            .collect::<Vec<_>>(),
        vec![(0, bad.offset), (0, unknown.offset)]
    );
    assert!(
        reported[0].2.contains(&format!("0@{}", bad.offset)),
        "{}",
        reported[0].2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_samples_of_every_version_decode_when_read_from_the_log() {
    let config = fresh_topic(&shared_brokers(), 2).await;
    let appender = Appender::connect(&config).await.expect("appender");
    let samples = golden_samples();
    for sample in &samples {
        appender
            .append_raw(sample.raw.user_id.as_str(), &raw_commit_record(&sample.raw))
            .await
            .expect("append golden");
    }
    let records = read_all(&config).await;
    assert_eq!(records.len(), samples.len());
    for record in records {
        let commit = record.decode().expect("golden record decodes");
        let event = &commit.events()[0];
        let sample = samples
            .iter()
            .find(|s| s.raw.event_id == event.event_id && s.raw.event_type == event.event_type())
            .expect("a sample per record");
        assert_eq!(
            event,
            &registry::decode(sample.raw.clone()).expect("decodes")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_type_version_and_trace_headers() {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry::{Context, SpanId, TraceId};

    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let config = fresh_topic(&shared_brokers(), 1).await;
    let appender = Appender::connect(&config).await.expect("appender");
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex");
    let span_id = SpanId::from_hex("00f067aa0ba902b7").expect("hex");
    let cx = Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    let c = commit(&user(1), Uuid::now_v7(), 1, "traced");
    {
        let _guard = cx.attach();
        appender.append(&c).await.expect("append");
    }
    let record = read_all(&config).await.pop().expect("one record");
    assert_eq!(record.header(headers::EVENT_TYPE), Some("task.created"));
    assert_eq!(record.header(headers::SCHEMA_VERSION), Some("2"));
    assert_eq!(record.headers.len(), 3, "only the documented headers");
    assert_eq!(
        record.header(headers::TRACEPARENT),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(record.key.as_deref(), Some("user-1".as_bytes()));
    let extracted = record.trace_context();
    assert_eq!(extracted.span().span_context().trace_id(), trace_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_resumes_after_its_committed_offsets() {
    let config = fresh_topic(&shared_brokers(), 2).await;
    let appender = Appender::connect(&config).await.expect("appender");
    for i in 0..20 {
        appender
            .append(&commit(&user(i), Uuid::now_v7(), 1, &i.to_string()))
            .await
            .expect("append");
    }
    let group = format!("group-{}", Uuid::new_v4().simple());
    let mut first = LogReader::subscribe(&config, &config.topic, &group).expect("subscribe");
    let mut read = Vec::new();
    while read.len() < 20 {
        let batch = first
            .next_batch(100, Duration::from_secs(10))
            .await
            .expect("batch");
        assert!(!batch.is_empty(), "group reader got its records");
        read.extend(batch);
    }
    let mut last: HashMap<i32, i64> = HashMap::new();
    for r in &read {
        last.insert(r.partition, r.offset);
    }
    let positions: Vec<_> = last
        .iter()
        .map(|(p, o)| event_store::LogPosition {
            partition: *p,
            offset: *o,
        })
        .collect();
    first.commit(&positions).expect("commit offsets");
    drop(first);

    for i in 20..25 {
        appender
            .append(&commit(&user(i), Uuid::now_v7(), 1, &i.to_string()))
            .await
            .expect("append");
    }
    let mut second = LogReader::subscribe(&config, &config.topic, &group).expect("subscribe");
    let mut titles = Vec::new();
    while titles.len() < 5 {
        let batch = second
            .next_batch(100, Duration::from_secs(15))
            .await
            .expect("batch");
        assert!(!batch.is_empty(), "second reader got the new records");
        titles.extend(batch.iter().map(|r| title(&r.decode().expect("valid"))));
    }
    titles.sort();
    assert_eq!(titles, ["20", "21", "22", "23", "24"]);
}

#[tokio::test]
async fn a_missing_topic_and_an_unreachable_broker_are_clear_errors() {
    let config = LogConfig {
        brokers: shared_brokers(),
        topic: format!("missing.{}", Uuid::new_v4().simple()),
        ..LogConfig::default()
    };
    assert!(matches!(
        Appender::connect(&config).await,
        Err(Error::TopicMissing(t)) if t == config.topic
    ));
    let nowhere = LogConfig {
        brokers: "127.0.0.1:1".into(),
        ..LogConfig::default()
    };
    let err = admin::ping(&nowhere)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_transient(), "{err}");
}
