//! Given (past events) / when (a command) / then (events or an error), one accepted and one
//! rejected case per rule.

use chrono::{NaiveDate, TimeZone, Utc};
use event_store::events::*;
use event_store::{Actor, Cause, UserId};
use uuid::Uuid;

use super::*;
use crate::domain::validate::{TaskFields, TaskPatch};

const TASK: Uuid = Uuid::from_u128(0x0192_f0a4_5b6c_7d8e_9f01_2345_6789_abcd);

fn fields(title: &str) -> TaskFields {
    TaskFields {
        title: title.into(),
        description: None,
        priority: Priority::Medium,
        due: None,
        tags: vec![],
        recurrence: None,
    }
}

fn due() -> Due {
    Due::Date {
        date: NaiveDate::from_ymd_opt(2026, 12, 24).expect("valid date"),
    }
}

fn created() -> EventPayload {
    EventPayload::TaskCreated(TaskCreated {
        task_number: 1,
        title: "Buy milk".into(),
        description: None,
        priority: Priority::Medium,
        due: None,
        tags: vec!["home".into()],
        recurrence: None,
        occurrence_of: None,
    })
}

/// The state after `history`.
fn given(history: Vec<EventPayload>) -> Task {
    let cause = Cause {
        user_id: UserId::parse("alice").expect("valid"),
        actor: Actor::User,
        correlation_id: Uuid::nil(),
        causation_id: Uuid::nil(),
        occurred_at: Utc
            .with_ymd_and_hms(2026, 11, 1, 9, 0, 0)
            .single()
            .expect("valid"),
    };
    let mut task = Task::default();
    for (i, payload) in history.into_iter().enumerate() {
        task.apply(&cause.event(TASK, i as u64 + 1, payload));
    }
    task
}

fn code(result: Result<Vec<EventPayload>, DomainError>) -> &'static str {
    match result {
        Err(DomainError::Conflict { code, .. } | DomainError::NotFound { code, .. }) => code,
        other => panic!("expected a conflict or not-found, got {other:?}"),
    }
}

#[test]
fn create_a_new_task_with_reminders() {
    let reminder = Uuid::from_u128(7);
    let mut f = fields("Buy milk");
    f.due = Some(due());
    let events = given(vec![])
        .handle(&Command::Create {
            number: 3,
            fields: f,
            reminders: vec![(reminder, ReminderTime::BeforeDue { seconds: 60 })],
        })
        .expect("accepted");
    assert!(
        matches!(&events[0], EventPayload::TaskCreated(c) if c.task_number == 3 && c.title == "Buy milk")
    );
    assert!(matches!(&events[1], EventPayload::ReminderAdded(r) if r.reminder_id == reminder));
}

#[test]
fn create_twice_is_a_conflict() {
    let result = given(vec![created()]).handle(&Command::Create {
        number: 2,
        fields: fields("again"),
        reminders: vec![],
    });
    assert_eq!(code(result), "already_exists");
}

#[test]
fn create_with_a_reminder_before_due_but_no_due_is_a_conflict() {
    let result = given(vec![]).handle(&Command::Create {
        number: 1,
        fields: fields("x"),
        reminders: vec![(Uuid::from_u128(1), ReminderTime::BeforeDue { seconds: 60 })],
    });
    assert_eq!(code(result), "reminder_needs_due");
}

#[test]
fn commands_on_a_missing_task_are_not_found() {
    assert_eq!(
        code(given(vec![]).handle(&Command::Complete)),
        "task_not_found"
    );
}

#[test]
fn complete_an_open_task() {
    let events = given(vec![created()])
        .handle(&Command::Complete)
        .expect("accepted");
    assert_eq!(events, [EventPayload::TaskCompleted(TaskCompleted {})]);
}

#[test]
fn complete_a_completed_task_is_a_conflict() {
    let task = given(vec![
        created(),
        EventPayload::TaskCompleted(TaskCompleted {}),
    ]);
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(code(task.handle(&Command::Complete)), "already_completed");
}

#[test]
fn reopen_a_completed_task_and_not_an_open_one() {
    let done = given(vec![
        created(),
        EventPayload::TaskCompleted(TaskCompleted {}),
    ]);
    assert_eq!(
        done.handle(&Command::Reopen),
        Ok(vec![EventPayload::TaskReopened(TaskReopened {})])
    );
    assert_eq!(
        code(given(vec![created()]).handle(&Command::Reopen)),
        "not_completed"
    );
}

#[test]
fn a_deleted_task_refuses_every_command() {
    let deleted = given(vec![created(), EventPayload::TaskDeleted(TaskDeleted {})]);
    assert_eq!(deleted.status, TaskStatus::Deleted);
    for command in [
        Command::Complete,
        Command::Delete,
        Command::Patch(TaskPatch {
            title: Some("x".into()),
            ..TaskPatch::default()
        }),
        Command::AddReminder {
            reminder_id: Uuid::from_u128(1),
            time: ReminderTime::At { at: Utc::now() },
        },
    ] {
        assert_eq!(
            code(deleted.handle(&command)),
            "task_deleted",
            "{command:?}"
        );
    }
    assert_eq!(
        given(vec![created()]).handle(&Command::Delete),
        Ok(vec![EventPayload::TaskDeleted(TaskDeleted {})])
    );
}

#[test]
fn patch_emits_only_what_changed() {
    let task = given(vec![created()]);
    let events = task
        .handle(&Command::Patch(TaskPatch {
            title: Some("Buy milk".into()),
            priority: Some(Priority::High),
            due: Some(Some(due())),
            ..TaskPatch::default()
        }))
        .expect("accepted");
    assert_eq!(
        events,
        [
            EventPayload::TaskUpdated(TaskUpdated {
                priority: Some(Priority::High),
                ..TaskUpdated::default()
            }),
            EventPayload::DueSet(DueSet { due: due() }),
        ]
    );
    assert_eq!(
        task.handle(&Command::Patch(TaskPatch::default())),
        Ok(vec![])
    );
}

#[test]
fn replace_diffs_tags_ignoring_case() {
    let task = given(vec![created()]);
    let mut f = fields("Buy milk");
    f.tags = vec!["HOME".into(), "errands".into()];
    let events = task.handle(&Command::Replace(f)).expect("accepted");
    assert_eq!(
        events,
        [EventPayload::TagAdded(TagChanged {
            tag: "errands".into()
        })]
    );
    let mut f = fields("Buy milk");
    f.tags = vec![];
    assert_eq!(
        task.handle(&Command::Replace(f)),
        Ok(vec![EventPayload::TagRemoved(TagChanged {
            tag: "home".into()
        })])
    );
}

#[test]
fn clearing_the_due_date_under_a_reminder_before_due_is_a_conflict() {
    let task = given(vec![
        created(),
        EventPayload::DueSet(DueSet { due: due() }),
        EventPayload::ReminderAdded(ReminderAdded {
            reminder_id: Uuid::from_u128(1),
            time: ReminderTime::BeforeDue { seconds: 600 },
        }),
    ]);
    assert_eq!(code(task.handle(&Command::ClearDue)), "reminder_needs_due");
    let without_reminder = given(vec![created(), EventPayload::DueSet(DueSet { due: due() })]);
    assert_eq!(
        without_reminder.handle(&Command::ClearDue),
        Ok(vec![EventPayload::DueCleared(DueCleared {})])
    );
}

#[test]
fn add_a_tag_once() {
    let task = given(vec![created()]);
    assert_eq!(
        task.handle(&Command::AddTag(" work ".into())),
        Ok(vec![EventPayload::TagAdded(TagChanged {
            tag: "work".into()
        })])
    );
    assert_eq!(
        code(task.handle(&Command::AddTag("Home".into()))),
        "duplicate_tag"
    );
    assert!(matches!(
        task.handle(&Command::AddTag("  ".into())),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn the_twenty_first_tag_is_a_conflict() {
    let mut history = vec![created()];
    history.extend((0..19).map(|i| {
        EventPayload::TagAdded(TagChanged {
            tag: format!("t{i}"),
        })
    }));
    let task = given(history);
    assert_eq!(task.tags.len(), 20);
    assert_eq!(
        code(task.handle(&Command::AddTag("one-more".into()))),
        "tag_limit"
    );
}

#[test]
fn remove_a_tag_that_is_there_and_not_one_that_is_not() {
    let task = given(vec![created()]);
    assert_eq!(
        task.handle(&Command::RemoveTag("HOME".into())),
        Ok(vec![EventPayload::TagRemoved(TagChanged {
            tag: "home".into()
        })])
    );
    assert_eq!(
        code(task.handle(&Command::RemoveTag("x".into()))),
        "tag_not_found"
    );
}

#[test]
fn recurrence_from_the_due_date_needs_a_due_date() {
    let recurrence = |basis| Recurrence {
        rrule: "FREQ=DAILY".into(),
        tz: "UTC".into(),
        basis,
    };
    let task = given(vec![created()]);
    assert_eq!(
        code(task.handle(&Command::SetRecurrence(recurrence(
            RecurrenceBasis::DueDate
        )))),
        "recurrence_needs_due"
    );
    assert_eq!(
        task.handle(&Command::SetRecurrence(recurrence(
            RecurrenceBasis::CompletionDate
        ))),
        Ok(vec![EventPayload::RecurrenceSet(RecurrenceSet {
            recurrence: recurrence(RecurrenceBasis::CompletionDate)
        })])
    );
}

#[test]
fn reminders_are_added_to_open_tasks_and_removed_once() {
    let id = Uuid::from_u128(9);
    let at = ReminderTime::At {
        at: Utc
            .with_ymd_and_hms(2026, 12, 1, 8, 0, 0)
            .single()
            .expect("valid"),
    };
    let task = given(vec![created()]);
    let added = task
        .handle(&Command::AddReminder {
            reminder_id: id,
            time: at.clone(),
        })
        .expect("accepted");
    let with_reminder = given(vec![created(), added[0].clone()]);
    assert_eq!(
        code(with_reminder.handle(&Command::AddReminder {
            reminder_id: id,
            time: at.clone()
        })),
        "duplicate_reminder"
    );
    assert_eq!(
        with_reminder.handle(&Command::RemoveReminder { reminder_id: id }),
        Ok(vec![EventPayload::ReminderRemoved(ReminderRemoved {
            reminder_id: id
        })])
    );
    assert_eq!(
        code(task.handle(&Command::RemoveReminder { reminder_id: id })),
        "reminder_not_found"
    );
    let done = given(vec![
        created(),
        EventPayload::TaskCompleted(TaskCompleted {}),
    ]);
    assert_eq!(
        code(done.handle(&Command::AddReminder {
            reminder_id: id,
            time: at
        })),
        "task_completed"
    );
}

#[test]
fn apply_folds_every_event_and_counts_versions() {
    let task = given(vec![
        created(),
        EventPayload::TaskUpdated(TaskUpdated {
            title: Some("Buy oat milk".into()),
            description: Some(Some("2 l".into())),
            priority: Some(Priority::Urgent),
        }),
        EventPayload::TagAdded(TagChanged { tag: "shop".into() }),
        EventPayload::TagRemoved(TagChanged { tag: "HOME".into() }),
        EventPayload::TaskCompleted(TaskCompleted {}),
        EventPayload::TaskReopened(TaskReopened {}),
    ]);
    assert_eq!(task.version, 6);
    assert_eq!(task.id, TASK);
    assert_eq!(task.title, "Buy oat milk");
    assert_eq!(task.description.as_deref(), Some("2 l"));
    assert_eq!(task.priority, Priority::Urgent);
    assert_eq!(task.tags, ["shop"]);
    assert_eq!(task.status, TaskStatus::Open);
    assert_eq!(task.completed_at, None);
}
