//! Input validation: client values in, checked values (or every invalid field) out.

use std::collections::HashSet;

use event_store::events::{Due, Priority, Recurrence};
use serde::Serialize;

/// Longest title, in characters, after trimming.
pub const TITLE_MAX: usize = 200;
/// Longest description, in characters.
pub const DESCRIPTION_MAX: usize = 4000;
/// Most tags on one task.
pub const TAGS_MAX: usize = 20;
/// Longest tag, in characters, after trimming.
pub const TAG_MAX: usize = 50;

/// One invalid input field, as listed in a `422` problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path of the field, for example `title` or `tags[3]`.
    pub field: String,
    /// Stable code, for example `blank`, `too_long`, `duplicate`.
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Collects field errors while checking several fields, so a client learns them all at once.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Records the error of `result`, if any, and passes its value on.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }

    /// The recorded errors.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self.0)
        }
    }
}

/// A title: trimmed, 1 to 200 characters.
pub fn title(field: &str, raw: &str) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(
            field,
            "blank",
            "the title must not be blank",
        ));
    }
    if trimmed.chars().count() > TITLE_MAX {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("the title is at most {TITLE_MAX} characters"),
        ));
    }
    no_control_characters(field, trimmed, &[])?;
    Ok(trimmed.to_owned())
}

/// Refuses text with control characters (U+0000–U+001F, U+007F–U+009F) but `allowed`: they
/// break displays and exports, and Postgres text cannot hold U+0000 at all.
fn no_control_characters(field: &str, text: &str, allowed: &[char]) -> Result<(), FieldError> {
    match text
        .chars()
        .find(|c| c.is_control() && !allowed.contains(c))
    {
        None => Ok(()),
        Some(c) => Err(FieldError::new(
            field,
            "control_character",
            format!(
                "must not contain control characters (found U+{:04X}){}",
                u32::from(c),
                if allowed.is_empty() {
                    ""
                } else {
                    "; tabs and line breaks are allowed"
                }
            ),
        )),
    }
}

/// A description: at most 4000 characters; blank means none.
pub fn description(field: &str, raw: Option<&str>) -> Result<Option<String>, FieldError> {
    match raw {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) if text.chars().count() > DESCRIPTION_MAX => Err(FieldError::new(
            field,
            "too_long",
            format!("the description is at most {DESCRIPTION_MAX} characters"),
        )),
        Some(text) => {
            no_control_characters(field, text, &['\t', '\n', '\r'])?;
            Ok(Some(text.to_owned()))
        }
    }
}

/// A tag: trimmed, 1 to 50 characters.
pub fn tag(field: &str, raw: &str) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "blank", "a tag must not be blank"));
    }
    if trimmed.chars().count() > TAG_MAX {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("a tag is at most {TAG_MAX} characters"),
        ));
    }
    no_control_characters(field, trimmed, &[])?;
    Ok(trimmed.to_owned())
}

/// A tag list: each tag valid, at most 20, unique ignoring case (first spelling kept).
pub fn tags(field: &str, raw: &[String], errors: &mut Errors) -> Vec<String> {
    if raw.len() > TAGS_MAX {
        errors.push(FieldError::new(
            field,
            "too_many",
            format!("a task has at most {TAGS_MAX} tags"),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let Some(t) = errors.check(tag(&format!("{field}[{i}]"), t)) else {
            continue;
        };
        if seen.insert(t.to_lowercase()) {
            out.push(t);
        } else {
            errors.push(FieldError::new(
                format!("{field}[{i}]"),
                "duplicate",
                format!("the tag {t:?} is already on the task (tags ignore case)"),
            ));
        }
    }
    out
}

/// The editable fields of a task, checked: what `POST` and `PUT` carry.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskFields {
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub due: Option<Due>,
    pub tags: Vec<String>,
    pub recurrence: Option<Recurrence>,
}

/// A partial update, checked: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub due: Option<Option<Due>>,
    pub tags: Option<Vec<String>>,
    pub recurrence: Option<Option<Recurrence>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(title("title", "  Buy milk "), Ok("Buy milk".into()));
        assert_eq!(
            title("title", &"é".repeat(200)).map(|t| t.chars().count()),
            Ok(200)
        );
        assert_eq!(title("title", "   ").map_err(|e| e.code), Err("blank"));
        assert_eq!(
            title("title", &"x".repeat(201)).map_err(|e| e.code),
            Err("too_long")
        );
    }

    #[test]
    fn control_characters_are_refused_but_tabs_and_line_breaks_in_descriptions() {
        for bad in [
            "a\u{0}b",
            "bell\u{7}",
            "a\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}x",
            "tab\there",
        ] {
            assert_eq!(
                title("title", bad).map_err(|e| e.code),
                Err("control_character"),
                "{bad:?}"
            );
            assert_eq!(
                tag("tags[0]", bad).map_err(|e| e.code),
                Err("control_character"),
                "{bad:?}"
            );
        }
        assert_eq!(
            description("d", Some("line\r\nnext\tcolumn")),
            Ok(Some("line\r\nnext\tcolumn".into()))
        );
        let refused = description("d", Some("nul\u{0}")).unwrap_err();
        assert_eq!(refused.code, "control_character");
        assert!(refused.message.contains("U+0000"), "{}", refused.message);
        // Other white space and non-Latin text are fine.
        assert_eq!(
            title("title", "Grüße\u{a0}日本"),
            Ok("Grüße\u{a0}日本".into())
        );
    }

    #[test]
    fn descriptions_are_bounded_and_blank_means_none() {
        assert_eq!(description("d", Some("  ")), Ok(None));
        assert_eq!(description("d", Some("x")), Ok(Some("x".into())));
        assert!(description("d", Some(&"x".repeat(4001))).is_err());
    }

    #[test]
    fn tags_are_unique_ignoring_case_and_every_error_is_listed() {
        let mut errors = Errors::default();
        let out = tags(
            "tags",
            &[
                "Home".into(),
                "home".into(),
                " ".into(),
                "x".repeat(51),
                "work".into(),
            ],
            &mut errors,
        );
        assert_eq!(out, ["Home", "work"]);
        let listed = errors.finish(|| ()).expect_err("three errors");
        let codes: Vec<_> = listed.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            codes,
            [
                ("tags[1]", "duplicate"),
                ("tags[2]", "blank"),
                ("tags[3]", "too_long")
            ]
        );
    }

    #[test]
    fn more_than_twenty_tags_are_rejected() {
        let mut errors = Errors::default();
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        tags("tags", &many, &mut errors);
        assert!(errors.finish(|| ()).is_err());
    }
}
