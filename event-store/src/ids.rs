//! Identifiers that travel in every event: users, actors and event ids.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user's id: the `{user_id}` of `/api/{user_id}/…`, the JWT `sub`, and the Kafka record key.
///
/// 1 to 64 characters from `A–Z a–z 0–9 . _ @ -`, so it is safe in URLs, logs and SQL identifiers
/// alike and cannot smuggle separators into keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// Why a string is not a valid [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUserId {
    #[error("a user id must not be empty")]
    Empty,
    #[error("a user id is at most {max} characters long", max = UserId::MAX_LEN)]
    TooLong,
    #[error("a user id may contain only letters, digits and . _ @ -")]
    BadCharacter,
}

impl UserId {
    /// The longest user id accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates `raw` as a user id.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidUserId> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(InvalidUserId::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(InvalidUserId::TooLong);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
        {
            return Err(InvalidUserId::BadCharacter);
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidUserId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Through which path a change entered the system; shown in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The user, through the REST API.
    User,
    /// The AI chat, acting for the user.
    Chat,
    /// The scheduler (reminders, recurrence).
    Scheduler,
    /// An operator or support tool.
    Admin,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::User => "user",
            Actor::Chat => "chat",
            Actor::Scheduler => "scheduler",
            Actor::Admin => "admin",
        }
    }
}

/// Namespace of the deterministic (v5) ids that machines derive, so that emitting the same
/// decision twice yields the same id and every reader can drop the duplicate.
pub const MACHINE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x7a5c_57e0_2b1d_4c3e_9a6f_1d2e_3f40_5b61);

/// A fresh, time-ordered id (UUID v7) for an event or commit caused by a user command.
pub fn new_event_id() -> Uuid {
    Uuid::now_v7()
}

/// A deterministic id (UUID v5) for anything a machine may emit twice, derived from `name`, which
/// must identify the decision uniquely (for example `reminder.fired/<task>/<reminder>/<due time>`).
pub fn deterministic_id(name: &str) -> Uuid {
    Uuid::new_v5(&MACHINE_ID_NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_user_ids() {
        for ok in ["u1", "alice@example.com", "A.b_c-9", &"x".repeat(64)] {
            assert_eq!(UserId::parse(ok).map(|u| u.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn rejects_empty_long_and_odd_user_ids() {
        assert_eq!(UserId::parse(""), Err(InvalidUserId::Empty));
        assert_eq!(UserId::parse("x".repeat(65)), Err(InvalidUserId::TooLong));
        for bad in ["a b", "a/b", "ä", "a\nb", "a%2F"] {
            assert_eq!(
                UserId::parse(bad),
                Err(InvalidUserId::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn user_id_deserialization_validates() {
        assert!(serde_json::from_str::<UserId>("\"a/b\"").is_err());
        assert_eq!(
            serde_json::from_str::<UserId>("\"bob\"").ok(),
            UserId::parse("bob").ok()
        );
    }

    #[test]
    fn deterministic_ids_repeat_and_differ_by_name() {
        assert_eq!(deterministic_id("a"), deterministic_id("a"));
        assert_ne!(deterministic_id("a"), deterministic_id("b"));
        assert_eq!(deterministic_id("a").get_version_num(), 5);
        assert_eq!(new_event_id().get_version_num(), 7);
    }
}
