//! Opaque keyset cursors.
//!
//! A cursor is base64url (no padding) of a small JSON object: the sort key of the last row of a
//! page (`k`), that row's id as the tie-breaker (`id`), and a fingerprint (`f`) of everything that
//! shaped the list — route, user, filters, sort. A cursor presented with other filters or another
//! sort is `400 cursor_mismatch` rather than a page of some other list; anything that does not
//! decode is `400 invalid_cursor`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::AppError;

/// Longer strings are not cursors this service issued.
const MAX_LEN: usize = 2_048;

/// What a cursor holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The fingerprint of the list it continues.
    #[serde(rename = "f")]
    pub fingerprint: String,
    /// The sort key of the last row returned.
    #[serde(rename = "k")]
    pub key: Value,
    /// The last row's id.
    pub id: Uuid,
}

/// The fingerprint of a list: a hash of a canonical description of it.
pub fn fingerprint(list: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(list).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl Cursor {
    pub fn new(fingerprint: &str, key: Value, id: Uuid) -> Self {
        Self {
            fingerprint: fingerprint.to_owned(),
            key,
            id,
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes `raw` and checks it continues the list with fingerprint `expected`.
    pub fn decode(raw: &str, expected: &str) -> Result<Self, AppError> {
        let cursor = Self::parse(raw).ok_or_else(invalid)?;
        if cursor.fingerprint != expected {
            return Err(AppError::BadRequest {
                code: "cursor_mismatch",
                detail: "this cursor belongs to a list with other filters or another sort; \
                         start again without a cursor"
                    .into(),
            });
        }
        Ok(cursor)
    }

    fn parse(raw: &str) -> Option<Self> {
        if raw.len() > MAX_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// `400 invalid_cursor`.
pub fn invalid() -> AppError {
    AppError::BadRequest {
        code: "invalid_cursor",
        detail: "the cursor is not one this service issued".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_for_its_own_list_only() {
        let list = fingerprint(&("tasks", "alice", "open"));
        let other = fingerprint(&("tasks", "alice", "completed"));
        assert_ne!(list, other);
        let id = Uuid::now_v7();
        let cursor = Cursor::new(&list, serde_json::json!("2026-01-01T00:00:00Z"), id);
        let raw = cursor.encode();
        assert_eq!(Cursor::decode(&raw, &list).expect("decodes"), cursor);
        let Err(AppError::BadRequest { code, .. }) = Cursor::decode(&raw, &other) else {
            panic!("mismatch expected");
        };
        assert_eq!(code, "cursor_mismatch");
    }

    #[test]
    fn garbage_is_an_invalid_cursor() {
        let long = "A".repeat(5000);
        for raw in ["", "!!!", "bm90IGpzb24", "e30", long.as_str()] {
            let Err(AppError::BadRequest { code, .. }) = Cursor::decode(raw, "x") else {
                panic!("{raw:?} should be invalid");
            };
            assert_eq!(code, "invalid_cursor", "{raw:?}");
        }
    }
}
