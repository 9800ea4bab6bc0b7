//! The command pipeline: resolve the task, check `If-Match` and the idempotency key, let the
//! aggregate decide, append the commit, and answer once the log says it won.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use chrono::Utc;
use event_store::{Actor, Cause, Commit, Idempotency, LogPosition, UserId, Verdict, Writer};
use prometheus::{HistogramVec, IntCounterVec};
use uuid::Uuid;

use crate::domain::{Command, Task, TaskPatch, TaskStatus};
use crate::error::AppError;
use crate::input::RecurrenceSpec;
use crate::state::SharedState;
use crate::view::TaskView;

/// Also counts, in `http`, the requests turned away before the pipeline.
pub(crate) static COMMANDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "taskstream_commands_total",
        "Commands handled, by command and outcome",
        &["command", "outcome"]
    )
    .expect("metric registers once")
});

static COMMAND_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    prometheus::register_histogram_vec!(
        "taskstream_command_duration_seconds",
        "Time to handle a command, append it and confirm it in the log",
        &["command"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric registers once")
});

/// How many times a command is re-decided after losing a race to another writer.
const ATTEMPTS: usize = 3;

/// Which task a command is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A task to create, with its new id.
    New(Uuid),
    /// An existing task by UUID.
    Id(Uuid),
    /// An existing task by per-user number.
    Number(u64),
    /// The task holding this reminder.
    Reminder(Uuid),
}

/// What to do with the task.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Run(Box<Command>),
    /// `PATCH …/complete`: complete an open task, reopen a completed one.
    ToggleComplete,
    /// `PUT …/recurrence`: without a basis, it counts from the due date if the task has one.
    SetRecurrence(RecurrenceSpec),
    /// `PATCH /tasks/{id}` setting a recurrence without a basis: it counts from the due date if
    /// the task has one once patched.
    PatchWithRecurrence(Box<TaskPatch>, RecurrenceSpec),
}

impl Action {
    fn resolve(&self, task: &Task) -> Command {
        match self {
            Action::Run(command) => (**command).clone(),
            Action::ToggleComplete if task.status == TaskStatus::Completed => Command::Reopen,
            Action::ToggleComplete => Command::Complete,
            Action::SetRecurrence(spec) => {
                Command::SetRecurrence(spec.clone().with_default_basis(task.due.is_some()))
            }
            Action::PatchWithRecurrence(patch, spec) => {
                let has_due = match &patch.due {
                    Some(due) => due.is_some(),
                    None => task.due.is_some(),
                };
                let mut patch = (**patch).clone();
                patch.recurrence = Some(Some(spec.clone().with_default_basis(has_due)));
                Command::Patch(patch)
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Action::Run(command) => command.name(),
            Action::ToggleComplete => "toggle_complete",
            Action::SetRecurrence(_) => "set_recurrence",
            Action::PatchWithRecurrence(..) => "patch",
        }
    }
}

/// One command request.
#[derive(Clone, Debug)]
pub struct CommandRequest {
    pub user: UserId,
    pub target: Target,
    pub action: Action,
    /// The version the client's change was based on (`If-Match`).
    pub if_match: Option<u64>,
    pub idempotency: Option<Idempotency>,
    pub actor: Actor,
    pub correlation_id: Uuid,
}

/// What a command did.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub view: TaskView,
    /// The log position of the task's last commit: the consistency token.
    pub position: LogPosition,
    pub created: bool,
    /// The answer is the recorded outcome of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// Runs commands against the state of this process's partitions.
#[derive(Debug, Clone)]
pub struct CommandService {
    writer: Writer,
    state: SharedState,
    user_locks: Arc<Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>>,
}

impl CommandService {
    pub fn new(writer: Writer, state: SharedState) -> Self {
        Self {
            writer,
            state,
            user_locks: Arc::default(),
        }
    }

    /// A user's commands run one at a time in this process, so task numbers, idempotency keys and
    /// `If-Match` checks see each other's effects.
    fn user_lock(&self, user: &UserId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .user_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(user.clone()).or_default())
    }

    #[tracing::instrument(skip_all, fields(user = %request.user, action = request.action.name()))]
    pub async fn execute(&self, request: CommandRequest) -> Result<Outcome, AppError> {
        let started = Instant::now();
        let name = request.action.name();
        let result = self.execute_locked(&request).await;
        let outcome = match &result {
            Ok(o) if o.replayed => "replayed",
            Ok(_) => "accepted",
            Err(e) => e.outcome(),
        };
        COMMANDS.with_label_values(&[name, outcome]).inc();
        COMMAND_SECONDS
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn execute_locked(&self, request: &CommandRequest) -> Result<Outcome, AppError> {
        let lock = self.user_lock(&request.user);
        let result = {
            let _guard = lock.lock().await;
            self.decide_and_append(request).await
        };
        self.release_user_lock(&request.user, lock);
        result
    }

    /// Forgets a user's lock once no request holds or waits for it, so the map stays as small as
    /// the set of users with commands in flight.
    fn release_user_lock(&self, user: &UserId, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self
            .user_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the map and `lock` refer to it: nobody else can take a clone without the map lock.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(user);
        }
    }

    async fn decide_and_append(&self, request: &CommandRequest) -> Result<Outcome, AppError> {
        if let Some(replay) = self.replay(request)? {
            return Ok(replay);
        }
        for _ in 0..ATTEMPTS {
            let (task_id, task, position) = self.resolve(request)?;
            if let Some(expected) = request.if_match
                && expected != task.version
            {
                return Err(self.stale(task_id, expected, task.version));
            }
            let mut command = request.action.resolve(&task);
            if let Command::Create { number, .. } = &mut command {
                *number = self.next_number(&request.user);
            }
            let payloads = task.handle(&command)?;
            if payloads.is_empty() {
                return Ok(Outcome {
                    view: TaskView::from(&task),
                    position: position.unwrap_or(LogPosition {
                        partition: self.writer.appender().partition_of(request.user.as_str()),
                        offset: 0,
                    }),
                    created: false,
                    replayed: false,
                });
            }
            let cause = Cause {
                user_id: request.user.clone(),
                actor: request.actor,
                correlation_id: request.correlation_id,
                causation_id: request.correlation_id,
                occurred_at: Utc::now(),
            };
            let events = payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| cause.event(task_id, task.version + 1 + i as u64, payload))
                .collect();
            let commit = Commit::new(Uuid::now_v7(), events, request.idempotency.clone())
                .map_err(event_store::Error::from)?;
            let confirmation = self.writer.append(&commit).await?;
            match confirmation.verdict {
                Verdict::Accepted => {
                    let state = self.state.read();
                    let entry = state
                        .task_of(&request.user, task_id)
                        .ok_or(AppError::NotReady)?;
                    return Ok(Outcome {
                        view: TaskView::from(&entry.task),
                        position: confirmation.position,
                        created: !task.exists(),
                        replayed: false,
                    });
                }
                Verdict::LostRace { .. } if request.if_match.is_some() => {
                    let current = self
                        .state
                        .read()
                        .task_of(&request.user, task_id)
                        .map_or(0, |e| e.task.version);
                    return Err(self.stale(task_id, request.if_match.unwrap_or(0), current));
                }
                Verdict::LostRace { .. } => {
                    tracing::info!(%task_id, "lost a race to another writer; deciding again");
                }
            }
        }
        Err(AppError::Contention)
    }

    /// The recorded outcome of an earlier request with the same idempotency key, if any.
    fn replay(&self, request: &CommandRequest) -> Result<Option<Outcome>, AppError> {
        let Some(idempotency) = &request.idempotency else {
            return Ok(None);
        };
        let state = self.state.read();
        let Some(recorded) = state
            .users
            .get(&request.user)
            .and_then(|u| u.idempotency.get(&idempotency.key))
        else {
            return Ok(None);
        };
        if recorded.request_hash != idempotency.request_hash {
            return Err(AppError::IdempotencyKeyReused);
        }
        Ok(Some(Outcome {
            view: recorded.view.clone(),
            position: recorded.position,
            created: recorded.created,
            replayed: true,
        }))
    }

    /// The target task's id, state and log position (for a new task: a blank state).
    fn resolve(
        &self,
        request: &CommandRequest,
    ) -> Result<(Uuid, Task, Option<LogPosition>), AppError> {
        let state = self.state.read();
        let entry = match request.target {
            Target::New(id) => {
                return Ok(match state.task_of(&request.user, id) {
                    Some(entry) => (id, entry.task.clone(), Some(entry.position)),
                    None if state.tasks.contains_key(&id) => {
                        return Err(AppError::BadRequest {
                            code: "id_taken",
                            detail: "choose another task id".into(),
                        });
                    }
                    None => (id, Task::default(), None),
                });
            }
            Target::Id(id) => state.task_of(&request.user, id),
            Target::Number(n) => state.task_by_number(&request.user, n),
            Target::Reminder(reminder) => state
                .reminders
                .get(&reminder)
                .and_then(|task| state.task_of(&request.user, *task)),
        };
        let entry = entry.ok_or_else(|| {
            AppError::Domain(crate::domain::DomainError::NotFound {
                code: if matches!(request.target, Target::Reminder(_)) {
                    "reminder_not_found"
                } else {
                    "task_not_found"
                },
                message: "no such task for this user".into(),
            })
        })?;
        Ok((entry.task.id, entry.task.clone(), Some(entry.position)))
    }

    fn next_number(&self, user: &UserId) -> u64 {
        self.state
            .read()
            .users
            .get(user)
            .map_or(0, |u| u.last_number)
            + 1
    }

    fn stale(&self, task_id: Uuid, expected: u64, current: u64) -> AppError {
        let state = self.state.read();
        let recent = state.tasks.get(&task_id).map(|e| &e.recent);
        let since: Vec<_> = recent
            .map(|r| {
                r.iter()
                    .filter(|e| e.aggregate_version > expected)
                    .map(event_store::registry::encode)
                    .collect()
            })
            .unwrap_or_default();
        let complete = since
            .first()
            .is_none_or(|first| first.aggregate_version == expected + 1)
            || expected >= current;
        AppError::Stale {
            current,
            since,
            complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use event_store::events::{Due, RecurrenceBasis};
    use serde_json::json;

    use super::*;
    use crate::input;

    fn patch_with_open_basis(body: serde_json::Value) -> Action {
        let serde_json::Value::Object(object) = body else {
            unreachable!()
        };
        let (patch, spec) = input::task_patch(object).expect("valid patch");
        Action::PatchWithRecurrence(Box::new(patch), spec.expect("no basis given"))
    }

    fn basis(command: Command) -> RecurrenceBasis {
        match command {
            Command::Patch(TaskPatch {
                recurrence: Some(Some(r)),
                ..
            }) => r.basis,
            other => panic!("not a patch setting a recurrence: {other:?}"),
        }
    }

    #[test]
    fn a_patched_recurrence_without_basis_counts_from_the_tasks_due_date() {
        let action = patch_with_open_basis(
            json!({"recurrence": {"rrule": "FREQ=DAILY", "timezone": "UTC"}}),
        );
        let due = Task {
            due: Some(Due::Date {
                date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            }),
            ..Task::default()
        };
        assert_eq!(basis(action.resolve(&due)), RecurrenceBasis::DueDate);
        assert_eq!(
            basis(action.resolve(&Task::default())),
            RecurrenceBasis::CompletionDate
        );
    }

    #[test]
    fn a_patch_that_clears_the_due_date_counts_from_completion() {
        let action = patch_with_open_basis(
            json!({"due": null, "recurrence": {"rrule": "FREQ=DAILY", "timezone": "UTC"}}),
        );
        let due = Task {
            due: Some(Due::Date {
                date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            }),
            ..Task::default()
        };
        assert_eq!(basis(action.resolve(&due)), RecurrenceBasis::CompletionDate);
    }
}
