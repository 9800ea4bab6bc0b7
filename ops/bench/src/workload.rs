//! Realistic commits: many users, each with a few tasks that are created and then updated, every
//! commit padded so that its encoded record value has a chosen size.
//!
//! Commits go round-robin over the users, and each user's commits round-robin over its tasks, so
//! consecutive commits land on different partitions and two commits of one aggregate are always
//! `users` commits apart (far more than any number in flight): versions are contiguous in log
//! order and every commit is accepted by the arbitration rule.

use anyhow::{Context, Result};
use chrono::Utc;
use event_store::events::{EventPayload, Priority, TaskCreated, TaskUpdated};
use event_store::{Actor, Cause, Commit, Event, UserId};
use uuid::Uuid;

/// Tasks each user works on.
const TASKS_PER_USER: usize = 4;

/// Text the padding is cut from (ASCII, nothing JSON would escape).
const FILLER: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
    tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
    exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. ";

/// Generates commits; see the module docs.
#[derive(Debug)]
pub struct Workload {
    users: Vec<User>,
    /// Target size of every encoded commit, in bytes.
    value_bytes: usize,
    generated: usize,
}

#[derive(Debug)]
struct User {
    id: UserId,
    tasks: Vec<Task>,
}

#[derive(Debug)]
struct Task {
    id: Uuid,
    number: u64,
    /// The aggregate's version after the last commit generated for it.
    version: u64,
}

impl Workload {
    /// `users` users named `<prefix>-<n>` with fresh tasks; commits of `value_bytes` bytes
    /// (never smaller than the smallest commit of its kind).
    pub fn new(prefix: &str, users: usize, value_bytes: usize) -> Result<Self> {
        let users = (0..users)
            .map(|n| {
                let id = UserId::parse(format!("{prefix}-{n}"))
                    .with_context(|| format!("user id {prefix}-{n}"))?;
                let tasks = (1..=TASKS_PER_USER as u64)
                    .map(|number| Task {
                        id: Uuid::now_v7(),
                        number,
                        version: 0,
                    })
                    .collect();
                Ok(User { id, tasks })
            })
            .collect::<Result<Vec<_>>>()?;
        anyhow::ensure!(!users.is_empty(), "a workload needs at least one user");
        Ok(Self {
            users,
            value_bytes,
            generated: 0,
        })
    }

    /// The next `count` commits.
    pub fn commits(&mut self, count: usize) -> Result<Vec<Commit>> {
        (0..count).map(|_| self.next_commit()).collect()
    }

    /// The next commit: `task.created` for a task's first commit, `task.updated` afterwards.
    pub fn next_commit(&mut self) -> Result<Commit> {
        let n = self.generated;
        self.generated += 1;
        let user_count = self.users.len();
        let user = &mut self.users[n % user_count];
        let task = &mut user.tasks[(n / user_count) % TASKS_PER_USER];
        task.version += 1;

        let id = Uuid::now_v7();
        let cause = Cause {
            user_id: user.id.clone(),
            actor: Actor::User,
            correlation_id: id,
            causation_id: id,
            occurred_at: Utc::now(),
        };
        let payload = if task.version == 1 {
            EventPayload::TaskCreated(TaskCreated {
                task_number: task.number,
                title: format!("Task {} of {}", task.number, user.id),
                description: Some(String::new()),
                priority: Priority::Medium,
                due: None,
                tags: vec!["bench".into()],
                recurrence: None,
                occurrence_of: None,
            })
        } else {
            EventPayload::TaskUpdated(TaskUpdated {
                title: Some(format!(
                    "Task {} of {}, v{}",
                    task.number, user.id, task.version
                )),
                description: Some(Some(String::new())),
                priority: None,
            })
        };
        let event = cause.event(task.id, task.version, payload);
        padded(Uuid::now_v7(), event, self.value_bytes)
    }
}

/// The commit of `event` with its (empty) description filled so that the commit encodes to
/// `value_bytes` bytes, or as it is if it is already that long.
fn padded(commit_id: Uuid, mut event: Event, value_bytes: usize) -> Result<Commit> {
    let bare = Commit::new(commit_id, vec![event.clone()], None).context("build a commit")?;
    let missing = value_bytes.saturating_sub(bare.encode().len());
    if missing == 0 {
        return Ok(bare);
    }
    let padding = filler(missing);
    match &mut event.payload {
        EventPayload::TaskCreated(created) => created.description = Some(padding),
        EventPayload::TaskUpdated(updated) => updated.description = Some(Some(padding)),
        other => anyhow::bail!("cannot pad a {} event", other.event_type()),
    }
    Commit::new(commit_id, vec![event], None).context("build a padded commit")
}

/// `len` bytes of filler text.
fn filler(len: usize) -> String {
    FILLER.chars().cycle().take(len).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use event_store::Arbiter;
    use event_store::partition::partition_for;

    use super::*;

    #[test]
    fn commits_encode_to_the_requested_size() {
        let mut workload = Workload::new("user", 50, 600).expect("workload");
        for commit in workload.commits(500).expect("commits") {
            assert_eq!(commit.encode().len(), 600);
        }
    }

    #[test]
    fn small_sizes_leave_commits_unpadded() {
        let mut workload = Workload::new("user", 3, 10).expect("workload");
        let commit = workload.next_commit().expect("commit");
        assert!(commit.encode().len() > 10);
    }

    #[test]
    fn every_commit_is_accepted_in_order_and_every_partition_is_used() {
        let mut workload = Workload::new("user", 1_000, 600).expect("workload");
        let mut arbiter = Arbiter::new();
        let mut partitions = BTreeSet::new();
        let mut created = 0;
        for commit in workload.commits(20_000).expect("commits") {
            assert!(arbiter.judge(&commit).is_accepted());
            partitions.insert(partition_for(commit.user_id().as_str(), 12));
            if commit.events()[0].event_type() == "task.created" {
                created += 1;
            }
        }
        assert_eq!(partitions.len(), 12);
        assert_eq!(created, 1_000 * TASKS_PER_USER);
    }
}
