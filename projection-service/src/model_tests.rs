use chrono::{NaiveDate, TimeZone};
use event_store::events::{
    DueSet, Priority, ReminderAdded, ReminderFired, ReminderRemoved, TaskCompleted, TaskCreated,
    TaskDeleted, TaskReopened, TaskUpdated,
};
use event_store::{Actor, Cause, UserId};

use super::*;

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0).unwrap()
}

fn cause(user: &str) -> Cause {
    Cause {
        user_id: UserId::parse(user).unwrap(),
        actor: Actor::User,
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::now_v7(),
        occurred_at: at(9),
    }
}

fn created(number: u64, title: &str, tags: &[&str]) -> EventPayload {
    EventPayload::TaskCreated(TaskCreated {
        task_number: number,
        title: title.into(),
        description: None,
        priority: Priority::High,
        due: None,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        recurrence: None,
        occurrence_of: None,
    })
}

/// A record holding one commit of `payloads` for `task` from version `from`.
fn record(user: &str, task: Uuid, from: u64, payloads: Vec<EventPayload>, offset: i64) -> Input {
    let cause = cause(user);
    let events = payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| cause.event(task, from + i as u64, p))
        .collect();
    let commit = Commit::new(Uuid::now_v7(), events, None).unwrap();
    Input::new(
        LogPosition {
            partition: 0,
            offset,
        },
        Some(user.into()),
        commit.encode(),
    )
}

fn unprocessed(inputs: &[Input]) -> HashSet<Uuid> {
    inputs
        .iter()
        .filter_map(|i| i.commit.as_ref().ok())
        .flat_map(|c| c.events().iter().map(|e| e.event_id))
        .collect()
}

fn run(inputs: &[Input], current: HashMap<Uuid, Projected>) -> Plan {
    plan(inputs, current, unprocessed(inputs))
}

/// Plans `inputs` on nothing, then returns the one task's final state.
fn project(inputs: &[Input]) -> Projected {
    let out = run(inputs, HashMap::new());
    assert_eq!(out.tasks.len(), 1, "{out:?}");
    Projected {
        task: out.tasks[0].clone(),
        reminders: out
            .reminders
            .iter()
            .map(|r| (r.reminder_id, r.clone()))
            .collect(),
    }
}

#[test]
fn a_created_task_is_open_with_its_fields_tags_and_audit() {
    let task = Uuid::now_v7();
    let inputs = [record(
        "ann",
        task,
        1,
        vec![created(3, "Buy milk", &["Home", "home", "x"])],
        7,
    )];
    let out = run(&inputs, HashMap::new());
    let row = &out.tasks[0];
    assert_eq!(row.task_number, 3);
    assert_eq!(row.status, OPEN);
    assert_eq!(row.priority, 2);
    assert_eq!(row.tags, ["Home", "x"]);
    assert_eq!(row.tag_keys, ["home", "x"]);
    assert_eq!((row.partition, row.offset, row.version), (0, 7, 1));
    assert_eq!(out.audit.len(), 1);
    assert_eq!(out.audit[0].event_type, "task.created");
    assert_eq!(out.offsets[&0], 8);
    let counts: Vec<_> = out
        .tags
        .iter()
        .map(|d| (d.tag_key.as_str(), d.task_count, d.open_count))
        .collect();
    assert_eq!(counts, [("home", 1, 1), ("x", 1, 1)]);
}

#[test]
fn a_nul_in_the_log_is_projected_as_a_replacement_character() {
    let task = Uuid::now_v7();
    let inputs = [record(
        "ann",
        task,
        1,
        vec![created(1, "nul\0inside", &["a\0b"])],
        0,
    )];
    let out = run(&inputs, HashMap::new());
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.tasks[0].title, "nul\u{FFFD}inside");
    assert_eq!(out.tasks[0].tags, ["a\u{FFFD}b"]);
    let audited = serde_json::to_string(&out.audit[0].payload).unwrap();
    assert!(
        !audited.contains("\\u0000") && audited.contains('\u{FFFD}'),
        "{audited}"
    );
    // Text that only looks like an escaped NUL stays as it is.
    let literal = [record(
        "ann",
        Uuid::now_v7(),
        1,
        vec![created(2, r"C:\u0000", &[])],
        1,
    )];
    assert_eq!(run(&literal, HashMap::new()).tasks[0].title, r"C:\u0000");
}

#[test]
fn an_event_for_a_task_never_created_is_a_dead_letter() {
    let task = Uuid::now_v7();
    let inputs = [record(
        "ann",
        task,
        1,
        vec![EventPayload::TaskCompleted(TaskCompleted {})],
        0,
    )];
    let out = run(&inputs, HashMap::new());
    assert!(out.tasks.is_empty());
    assert_eq!(out.dead_letters.len(), 1);
    assert!(
        out.dead_letters[0].error.contains("does not exist"),
        "{:?}",
        out.dead_letters
    );
    assert!(out.audit.is_empty());
}

#[test]
fn an_undecodable_record_is_a_dead_letter_and_the_batch_goes_on() {
    let task = Uuid::now_v7();
    let poison = Input::new(
        LogPosition {
            partition: 0,
            offset: 0,
        },
        None,
        b"{not json".to_vec(),
    );
    let good = record("ann", task, 1, vec![created(1, "t", &[])], 1);
    let out = run(&[poison, good], HashMap::new());
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].position.offset, 0);
    assert_eq!(out.dead_letters[0].payload, b"{not json");
    assert_eq!(out.tasks.len(), 1);
    assert_eq!(out.offsets[&0], 2);
}

#[test]
fn a_commit_against_a_taken_version_loses_the_race() {
    let task = Uuid::now_v7();
    let inputs = [
        record("ann", task, 1, vec![created(1, "t", &[])], 0),
        record(
            "ann",
            task,
            2,
            vec![EventPayload::TaskCompleted(TaskCompleted {})],
            1,
        ),
        record(
            "ann",
            task,
            2,
            vec![EventPayload::TaskDeleted(TaskDeleted {})],
            2,
        ),
    ];
    let out = run(&inputs, HashMap::new());
    assert_eq!(out.tasks[0].status, COMPLETED);
    assert_eq!(out.tasks[0].version, 2);
    assert_eq!(out.lost_races.len(), 1);
    assert_eq!(out.lost_races[0].offset, 2);
    assert_eq!(
        (
            out.lost_races[0].expected_version,
            out.lost_races[0].current_version
        ),
        (1, 2)
    );
    assert_eq!(out.audit.len(), 2);
}

#[test]
fn an_already_processed_commit_is_skipped() {
    let task = Uuid::now_v7();
    let first = record("ann", task, 1, vec![created(1, "t", &[])], 0);
    let again = Input::new(
        LogPosition {
            partition: 0,
            offset: 1,
        },
        None,
        first.payload.clone(),
    );
    let inputs = [first, again];
    let out = run(&inputs, HashMap::new());
    assert_eq!(out.tally.duplicates, 1);
    assert_eq!(out.audit.len(), 1);

    // Given the event already recorded in processed_events, nothing is applied.
    let out = plan(&inputs, HashMap::new(), HashSet::new());
    assert!(out.tasks.is_empty() && out.audit.is_empty());
    assert_eq!(out.tally.duplicates, 2);
    assert_eq!(out.offsets[&0], 2);
}

#[test]
fn updates_change_only_the_fields_given() {
    let task = Uuid::now_v7();
    let p = project(&[
        record("ann", task, 1, vec![created(1, "old", &[])], 0),
        record(
            "ann",
            task,
            2,
            vec![EventPayload::TaskUpdated(TaskUpdated {
                title: None,
                description: Some(Some("words".into())),
                priority: Some(Priority::Urgent),
            })],
            1,
        ),
    ]);
    assert_eq!(p.task.title, "old");
    assert_eq!(p.task.description.as_deref(), Some("words"));
    assert_eq!(p.task.priority, 3);
}

#[test]
fn complete_reopen_and_delete_move_status_and_tag_counts() {
    let task = Uuid::now_v7();
    let base = record("ann", task, 1, vec![created(1, "t", &["a"])], 0);
    let done = record(
        "ann",
        task,
        2,
        vec![EventPayload::TaskCompleted(TaskCompleted {})],
        1,
    );
    let out = run(&[base.clone(), done.clone()], HashMap::new());
    assert_eq!(out.tasks[0].status, COMPLETED);
    assert!(out.tasks[0].completed_at.is_some());
    assert_eq!((out.tags[0].task_count, out.tags[0].open_count), (1, 0));

    // Given the completed task, when reopened and deleted, the counts go back to none.
    let current = HashMap::from([(task, project(&[base, done]))]);
    let inputs = [
        record(
            "ann",
            task,
            3,
            vec![EventPayload::TaskReopened(TaskReopened {})],
            2,
        ),
        record(
            "ann",
            task,
            4,
            vec![EventPayload::TaskDeleted(TaskDeleted {})],
            3,
        ),
    ];
    let out = run(&inputs, current);
    assert_eq!(out.tasks[0].status, DELETED);
    assert!(out.tasks[0].completed_at.is_none() && out.tasks[0].deleted_at.is_some());
    assert_eq!((out.tags[0].task_count, out.tags[0].open_count), (-1, 0));
}

#[test]
fn tag_removal_is_case_insensitive() {
    let task = Uuid::now_v7();
    let p = project(&[
        record("ann", task, 1, vec![created(1, "t", &["Work", "home"])], 0),
        record(
            "ann",
            task,
            2,
            vec![EventPayload::TagRemoved(TagChanged { tag: "WORK".into() })],
            1,
        ),
    ]);
    assert_eq!(p.task.tags, ["home"]);
    assert_eq!(p.task.tag_keys, ["home"]);
}

#[test]
fn a_date_due_is_due_by_the_end_of_that_day() {
    let task = Uuid::now_v7();
    let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let p = project(&[
        record("ann", task, 1, vec![created(1, "t", &[])], 0),
        record(
            "ann",
            task,
            2,
            vec![EventPayload::DueSet(DueSet {
                due: Due::Date { date },
            })],
            1,
        ),
    ]);
    assert_eq!(
        p.task.due_at,
        Some(Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap())
    );
}

#[test]
fn reminders_follow_due_dates_removal_firing_and_completion() {
    let task = Uuid::now_v7();
    let (before, absolute, removed) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    let due = Due::At {
        at: at(18),
        tz: None,
    };
    let add = |id, time| {
        EventPayload::ReminderAdded(ReminderAdded {
            reminder_id: id,
            time,
        })
    };
    let base = vec![
        record("ann", task, 1, vec![created(1, "Call", &[])], 0),
        record(
            "ann",
            task,
            2,
            vec![
                EventPayload::DueSet(DueSet { due }),
                add(before, ReminderTime::BeforeDue { seconds: 3600 }),
                add(absolute, ReminderTime::At { at: at(12) }),
                add(removed, ReminderTime::At { at: at(13) }),
                EventPayload::ReminderRemoved(ReminderRemoved {
                    reminder_id: removed,
                }),
                EventPayload::ReminderFired(ReminderFired {
                    reminder_id: absolute,
                    scheduled_for: at(12),
                }),
            ],
            1,
        ),
    ];
    let out = run(&base, HashMap::new());
    let status = |out: &Plan, id| {
        let r = out.reminders.iter().find(|r| r.reminder_id == id).unwrap();
        (r.status.clone(), r.remind_at)
    };
    assert_eq!(status(&out, before), (PENDING.into(), Some(at(17))));
    assert_eq!(status(&out, absolute), (FIRED.into(), Some(at(12))));
    assert_eq!(status(&out, removed), (CANCELLED.into(), Some(at(13))));
    assert_eq!(out.notifications.len(), 1);
    assert_eq!(out.notifications[0].title, "Call");
    assert_eq!(out.notifications[0].reminder_id, Some(absolute));
    // The task shows the reminders not removed, oldest first (the same instant: by id).
    let shown = |out: &Plan| {
        out.tasks[0]
            .reminders
            .iter()
            .map(|r| (r.id, r.status.clone(), r.fired, r.remind_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shown(&out),
        [
            (before, PENDING.into(), false, Some(at(17))),
            (absolute, FIRED.into(), true, Some(at(12))),
        ]
    );

    // Given those reminders, when the task is completed, the pending one is cancelled.
    let current = HashMap::from([(task, project(&base))]);
    let done = [record(
        "ann",
        task,
        8,
        vec![EventPayload::TaskCompleted(TaskCompleted {})],
        2,
    )];
    let out = run(&done, current);
    assert_eq!(status(&out, before).0, CANCELLED);
    assert_eq!(status(&out, absolute).0, FIRED);
    assert_eq!(
        shown(&out),
        [
            (before, CANCELLED.into(), false, Some(at(17))),
            (absolute, FIRED.into(), true, Some(at(12))),
        ]
    );
}

#[test]
fn a_failing_commit_changes_nothing_of_its_task() {
    let task = Uuid::now_v7();
    let base = project(&[record("ann", task, 1, vec![created(1, "t", &["a"])], 0)]);
    // A second task.created for the same task, at the next version: cannot be applied.
    let inputs = [record(
        "ann",
        task,
        2,
        vec![
            EventPayload::TaskCompleted(TaskCompleted {}),
            created(1, "again", &[]),
        ],
        1,
    )];
    let out = run(&inputs, HashMap::from([(task, base)]));
    assert!(out.tasks.is_empty(), "{:?}", out.tasks);
    assert_eq!(out.dead_letters.len(), 1);
    assert!(out.audit.is_empty());
    assert_eq!(out.offsets[&0], 2);
}

/// Plans a long workload in batches against an in-memory store that behaves like the tables
/// (upserted rows, tag counts summed), and checks the counts against the final tasks.
#[test]
fn batches_of_a_long_workload_keep_tag_counts_equal_to_the_tasks() {
    use event_store::workload::Workload;

    let mut workload = Workload::new(15, 42);
    let mut inputs = Vec::new();
    while inputs.len() < 6_000 {
        for r in workload.next_records() {
            let offset = inputs.len() as i64;
            inputs.push(Input::new(
                LogPosition {
                    partition: 0,
                    offset,
                },
                Some(r.user),
                r.payload,
            ));
        }
    }
    let mut tasks: HashMap<Uuid, Projected> = HashMap::new();
    let mut processed: HashSet<Uuid> = HashSet::new();
    let mut tags: BTreeMap<(String, String), (i32, i32)> = BTreeMap::new();
    for batch in inputs.chunks(437) {
        let ids: HashSet<Uuid> = batch
            .iter()
            .filter_map(|i| i.commit.as_ref().ok())
            .flat_map(|c| c.events().iter().map(|e| e.event_id))
            .filter(|id| !processed.contains(id))
            .collect();
        processed.extend(ids.iter().copied());
        let touched: HashMap<Uuid, Projected> = batch
            .iter()
            .filter_map(|i| i.commit.as_ref().ok())
            .filter_map(|c| {
                tasks
                    .get(&c.aggregate_id())
                    .map(|p| (c.aggregate_id(), p.clone()))
            })
            .collect();
        let out = plan(batch, touched, ids);
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        for delta in &out.tags {
            let entry = tags
                .entry((delta.user_id.clone(), delta.tag_key.clone()))
                .or_default();
            entry.0 += delta.task_count;
            entry.1 += delta.open_count;
            assert!(
                entry.0 >= 0 && entry.1 >= 0,
                "negative count for {delta:?}: {entry:?}"
            );
        }
        let reminders: Vec<ReminderRow> = out.reminders.clone();
        for task in out.tasks {
            tasks.insert(
                task.task_id,
                Projected {
                    task,
                    reminders: BTreeMap::new(),
                },
            );
        }
        for r in reminders {
            tasks
                .get_mut(&r.task_id)
                .unwrap()
                .reminders
                .insert(r.reminder_id, r);
        }
    }
    let mut expected: BTreeMap<(String, String), (i32, i32)> = BTreeMap::new();
    for p in tasks.values() {
        for (key, _, count, open) in tag_contributions(&p.task) {
            let e = expected.entry((p.task.user_id.clone(), key)).or_default();
            e.0 += count;
            e.1 += open;
        }
    }
    tags.retain(|_, v| *v != (0, 0));
    assert_eq!(tags, expected);
}
