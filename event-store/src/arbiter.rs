//! The log-order arbitration rule, the one piece of code every reader of the log applies.
//!
//! Kafka has no conditional append, so the log itself decides races: reading in log order, a
//! commit is accepted only if its first event's `aggregate_version` is exactly the aggregate's
//! current version + 1. Any other commit lost a race (two writers wrote against the same version,
//! or a zombie wrote late) and is skipped by every reader alike. Because every reader sees the
//! same partition in the same order and applies the same rule, they all agree on the winner.

use std::collections::HashMap;

use uuid::Uuid;

use crate::commit::Commit;

/// What the rule decided for one commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The commit extended its aggregate: apply its events.
    Accepted,
    /// The commit was written against `expected` but the aggregate was already at `current`:
    /// skip it.
    LostRace { expected: u64, current: u64 },
}

impl Verdict {
    pub fn is_accepted(self) -> bool {
        matches!(self, Verdict::Accepted)
    }
}

/// Tracks every aggregate's current version as commits are read in log order.
#[derive(Debug, Default, Clone)]
pub struct Arbiter {
    versions: HashMap<Uuid, u64>,
    accepted: u64,
    lost_races: u64,
}

impl Arbiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges the next commit read from the log and, if it is accepted, advances its aggregate.
    pub fn judge(&mut self, commit: &Commit) -> Verdict {
        let verdict = self.check(commit.aggregate_id(), commit.expected_version());
        match verdict {
            Verdict::Accepted => {
                self.versions
                    .insert(commit.aggregate_id(), commit.last_version());
                self.accepted += 1;
            }
            Verdict::LostRace { .. } => self.lost_races += 1,
        }
        verdict
    }

    /// What [`judge`](Self::judge) would decide for a commit written against `expected`, without
    /// recording anything.
    pub fn check(&self, aggregate_id: Uuid, expected: u64) -> Verdict {
        let current = self.version(aggregate_id);
        if expected == current {
            Verdict::Accepted
        } else {
            Verdict::LostRace { expected, current }
        }
    }

    /// The aggregate's current version (0 if no commit of it was accepted).
    pub fn version(&self, aggregate_id: Uuid) -> u64 {
        self.versions.get(&aggregate_id).copied().unwrap_or(0)
    }

    /// Starts an aggregate at `version`, as restored from a snapshot.
    pub fn restore(&mut self, aggregate_id: Uuid, version: u64) {
        self.versions.insert(aggregate_id, version);
    }

    /// Commits accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Commits skipped as lost races so far.
    pub fn lost_races(&self) -> u64 {
        self.lost_races
    }

    /// How many aggregates are tracked.
    pub fn aggregates(&self) -> usize {
        self.versions.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::envelope::Cause;
    use crate::events::{EventPayload, TaskCompleted};
    use crate::ids::{Actor, UserId};

    fn commit(aggregate: Uuid, first_version: u64, events: u64) -> Commit {
        let id = Uuid::now_v7();
        let cause = Cause {
            user_id: UserId::parse("u").expect("valid"),
            actor: Actor::User,
            correlation_id: id,
            causation_id: id,
            occurred_at: Utc::now(),
        };
        let events = (0..events)
            .map(|i| {
                cause.event(
                    aggregate,
                    first_version + i,
                    EventPayload::TaskCompleted(TaskCompleted {}),
                )
            })
            .collect();
        Commit::new(Uuid::now_v7(), events, None).expect("valid")
    }

    #[test]
    fn given_a_new_aggregate_when_version_1_arrives_then_it_is_accepted() {
        let mut arbiter = Arbiter::new();
        let a = Uuid::now_v7();
        assert_eq!(arbiter.judge(&commit(a, 1, 2)), Verdict::Accepted);
        assert_eq!(arbiter.version(a), 2);
        assert_eq!(arbiter.judge(&commit(a, 3, 1)), Verdict::Accepted);
        assert_eq!(arbiter.version(a), 3);
    }

    #[test]
    fn given_a_race_when_the_second_commit_arrives_then_it_lost() {
        let mut arbiter = Arbiter::new();
        let a = Uuid::now_v7();
        arbiter.judge(&commit(a, 1, 1));
        assert_eq!(
            arbiter.judge(&commit(a, 1, 1)),
            Verdict::LostRace {
                expected: 0,
                current: 1
            }
        );
        assert_eq!(arbiter.version(a), 1);
        assert_eq!(arbiter.lost_races(), 1);
        assert_eq!(arbiter.accepted(), 1);
    }

    #[test]
    fn given_a_gap_when_a_commit_skips_ahead_then_it_lost() {
        let mut arbiter = Arbiter::new();
        let a = Uuid::now_v7();
        assert_eq!(
            arbiter.judge(&commit(a, 3, 1)),
            Verdict::LostRace {
                expected: 2,
                current: 0
            }
        );
        assert_eq!(arbiter.version(a), 0);
    }

    #[test]
    fn restored_versions_continue() {
        let mut arbiter = Arbiter::new();
        let a = Uuid::now_v7();
        arbiter.restore(a, 7);
        assert_eq!(arbiter.judge(&commit(a, 8, 1)), Verdict::Accepted);
        assert!(!arbiter.judge(&commit(a, 8, 1)).is_accepted());
    }
}
