//! Request bodies: JSON in, checked domain values out, with every invalid field listed.
//!
//! Bodies are read as JSON objects and checked field by field (rather than by a derive that stops
//! at the first error), so a `422` names all the problems at once.

use chrono::{DateTime, NaiveDate, Utc};
use event_store::events::{Due, Priority, Recurrence, RecurrenceBasis, ReminderTime};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::validate::{self, Errors};
use crate::domain::{FieldError, TaskFields, TaskPatch};

/// Parses a body as a JSON object, or says why it is not one.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, FieldError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FieldError::new(
            "",
            "not_an_object",
            "the body must be a JSON object",
        )),
        Err(e) => Err(FieldError::new(
            "",
            "malformed_json",
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// A checked recurrence whose `basis` may still be open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecurrenceSpec {
    rrule: String,
    tz: String,
    basis: Option<RecurrenceBasis>,
}

impl RecurrenceSpec {
    /// The recurrence, counted from the due date when none was given and the task has one,
    /// else from the completion date.
    pub fn with_default_basis(self, has_due: bool) -> Recurrence {
        let basis = self.basis.unwrap_or(if has_due {
            RecurrenceBasis::DueDate
        } else {
            RecurrenceBasis::CompletionDate
        });
        Recurrence {
            rrule: self.rrule,
            tz: self.tz,
            basis,
        }
    }
}

/// Reads fields out of an object, recording type errors and unknown fields.
struct Reader {
    object: Map<String, Value>,
    errors: Errors,
}

/// A field's presence: absent, explicitly `null`, or a value.
enum Field<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    fn value(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl Reader {
    fn new(object: Map<String, Value>) -> Self {
        Self {
            object,
            errors: Errors::default(),
        }
    }

    fn error(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, code, message));
    }

    fn take(&mut self, key: &str) -> Field<Value> {
        match self.object.remove(key) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(v) => Field::Value(v),
        }
    }

    fn string(&mut self, key: &str) -> Field<String> {
        match self.take(key) {
            Field::Value(Value::String(s)) => Field::Value(s),
            Field::Value(_) => {
                self.error(key, "wrong_type", "must be a string");
                Field::Absent
            }
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        }
    }

    fn strings(&mut self, key: &str) -> Field<Vec<String>> {
        match self.take(key) {
            Field::Value(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        _ => self.error(&format!("{key}[{i}]"), "wrong_type", "must be a string"),
                    }
                }
                Field::Value(out)
            }
            Field::Value(_) => {
                self.error(key, "wrong_type", "must be an array of strings");
                Field::Absent
            }
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        }
    }

    fn priority(&mut self, key: &str) -> Field<Priority> {
        match self.string(key) {
            Field::Value(s) => match serde_json::from_value(Value::String(s.clone())) {
                Ok(p) => Field::Value(p),
                Err(_) => {
                    self.error(key, "invalid", "must be one of low, medium, high, urgent");
                    Field::Absent
                }
            },
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        }
    }

    /// `due` (a date `YYYY-MM-DD` or an RFC 3339 instant) with the optional `timezone`.
    fn due(&mut self) -> Field<Due> {
        let tz = self.timezone("timezone");
        match self.string("due") {
            Field::Value(s) => match parse_due(&s, tz) {
                Some(due) => Field::Value(due),
                None => {
                    self.error(
                        "due",
                        "invalid",
                        "must be a date (YYYY-MM-DD) or a date-time with offset (RFC 3339)",
                    );
                    Field::Absent
                }
            },
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        }
    }

    fn timezone(&mut self, key: &str) -> Option<String> {
        let tz = self.string(key).value()?;
        if valid_timezone(&tz) {
            Some(tz)
        } else {
            self.error(
                key,
                "invalid",
                "must be an IANA time zone such as Europe/Berlin",
            );
            None
        }
    }

    fn recurrence(&mut self) -> Field<RecurrenceSpec> {
        let value = match self.take("recurrence") {
            Field::Value(Value::Object(map)) => map,
            Field::Value(_) => {
                self.error("recurrence", "wrong_type", "must be an object");
                return Field::Absent;
            }
            Field::Null => return Field::Null,
            Field::Absent => return Field::Absent,
        };
        let mut inner = Reader::new(value);
        let rrule = inner.string("rrule").value();
        let tz = inner.timezone("timezone").unwrap_or_else(|| "UTC".into());
        let basis = match inner.string("basis") {
            Field::Value(b) => match b.as_str() {
                "due_date" => Ok(Some(RecurrenceBasis::DueDate)),
                "completion_date" => Ok(Some(RecurrenceBasis::CompletionDate)),
                _ => {
                    inner.error("basis", "invalid", "must be due_date or completion_date");
                    Err(())
                }
            },
            _ => Ok(None),
        };
        inner.reject_unknown();
        for mut e in inner.errors.into_vec() {
            e.field = format!("recurrence.{}", e.field);
            self.errors.push(e);
        }
        let Some(rrule) = rrule else {
            self.error(
                "recurrence.rrule",
                "required",
                "a recurrence needs an rrule",
            );
            return Field::Absent;
        };
        if let Err(message) = check_rrule(&rrule) {
            self.error("recurrence.rrule", "invalid", message);
            return Field::Absent;
        }
        match basis {
            Ok(basis) => Field::Value(RecurrenceSpec {
                rrule: rrule.to_uppercase(),
                tz,
                basis,
            }),
            Err(()) => Field::Absent,
        }
    }

    fn reminders(&mut self) -> Vec<(Uuid, ReminderTime)> {
        let items = match self.take("reminders") {
            Field::Value(Value::Array(items)) => items,
            Field::Value(_) => {
                self.error("reminders", "wrong_type", "must be an array");
                return vec![];
            }
            _ => return vec![],
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            match reminder_time(item) {
                Ok(time) => out.push((Uuid::now_v7(), time)),
                Err(mut e) => {
                    e.field = format!("reminders[{i}]{}", e.field);
                    self.errors.push(e);
                }
            }
        }
        out
    }

    fn reject_unknown(&mut self) {
        let unknown: Vec<String> = self.object.keys().cloned().collect();
        for key in unknown {
            self.error(&key, "unknown_field", "is not a field of this request");
        }
    }
}

fn parse_due(raw: &str, tz: Option<String>) -> Option<Due> {
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Some(Due::Date { date });
    }
    DateTime::parse_from_rfc3339(raw).ok().map(|at| Due::At {
        at: at.with_timezone(&Utc),
        tz,
    })
}

/// An IANA zone name's shape: `Area/Location` words, or `UTC`.
fn valid_timezone(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= 64
        && !tz.starts_with('/')
        && !tz.ends_with('/')
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
}

/// Checks an RFC 5545 `RRULE` value's syntax: `KEY=VALUE` parts, a known `FREQ`, known keys.
fn check_rrule(rrule: &str) -> Result<(), String> {
    const KEYS: &[&str] = &[
        "FREQ",
        "INTERVAL",
        "COUNT",
        "UNTIL",
        "BYDAY",
        "BYMONTHDAY",
        "BYMONTH",
        "BYSETPOS",
        "BYYEARDAY",
        "BYWEEKNO",
        "WKST",
    ];
    let mut freq = None;
    for part in rrule.trim().trim_start_matches("RRULE:").split(';') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        let key = key.to_uppercase();
        if !KEYS.contains(&key.as_str()) {
            return Err(format!("{key} is not supported"));
        }
        if value.is_empty() {
            return Err(format!("{key} has no value"));
        }
        match key.as_str() {
            "FREQ" => freq = Some(value.to_uppercase()),
            "INTERVAL" | "COUNT" if !value.parse::<u32>().is_ok_and(|n| n > 0) => {
                return Err(format!("{key} must be a positive integer"));
            }
            _ => {}
        }
    }
    match freq.as_deref() {
        Some("DAILY" | "WEEKLY" | "MONTHLY" | "YEARLY") => Ok(()),
        Some(other) => Err(format!(
            "FREQ={other} is not supported (DAILY, WEEKLY, MONTHLY, YEARLY)"
        )),
        None => Err("FREQ is required".into()),
    }
}

/// A reminder's time: `{"remind_at": RFC 3339}` or `{"before_due_seconds": n}`.
pub fn reminder_time(value: Value) -> Result<ReminderTime, FieldError> {
    let Value::Object(map) = value else {
        return Err(FieldError::new("", "wrong_type", "a reminder is an object"));
    };
    match (map.get("remind_at"), map.get("before_due_seconds")) {
        (Some(Value::String(at)), None) => DateTime::parse_from_rfc3339(at)
            .map(|at| ReminderTime::At {
                at: at.with_timezone(&Utc),
            })
            .map_err(|_| FieldError::new(".remind_at", "invalid", "must be an RFC 3339 date-time")),
        (None, Some(Value::Number(n))) => n
            .as_u64()
            .filter(|s| *s <= 366 * 24 * 3600)
            .map(|seconds| ReminderTime::BeforeDue { seconds })
            .ok_or_else(|| {
                FieldError::new(
                    ".before_due_seconds",
                    "invalid",
                    "must be a whole number of seconds, at most a year",
                )
            }),
        _ => Err(FieldError::new(
            "",
            "invalid",
            "give exactly one of remind_at (RFC 3339) or before_due_seconds",
        )),
    }
}

/// Reminders to create with a task: their new ids and times.
pub type NewReminders = Vec<(Uuid, ReminderTime)>;

/// The body of `POST /tasks` and `PUT /tasks/{id}`: all editable fields (`title` required), plus
/// the reminders to create with the task.
pub fn task_fields(
    object: Map<String, Value>,
    allow_reminders: bool,
) -> Result<(TaskFields, NewReminders), Vec<FieldError>> {
    let mut r = Reader::new(object);
    let title = match r.string("title") {
        Field::Value(t) => r.errors.check(validate::title("title", &t)),
        _ => {
            r.error("title", "required", "a task needs a title");
            None
        }
    };
    let description = r.string("description").value();
    let description = r
        .errors
        .check(validate::description("description", description.as_deref()))
        .flatten();
    let priority = r.priority("priority").value().unwrap_or_default();
    let due = r.due().value();
    let raw_tags = r.strings("tags").value().unwrap_or_default();
    let tags = validate::tags("tags", &raw_tags, &mut r.errors);
    let recurrence = r
        .recurrence()
        .value()
        .map(|spec| spec.with_default_basis(due.is_some()));
    let reminders = if allow_reminders {
        r.reminders()
    } else {
        vec![]
    };
    r.reject_unknown();
    let Reader { errors, .. } = r;
    errors.finish(|| {
        (
            TaskFields {
                title: title.unwrap_or_default(),
                description,
                priority,
                due,
                tags,
                recurrence,
            },
            reminders,
        )
    })
}

/// The body of `PATCH /tasks/{id}` (JSON merge patch): present fields change, `null` clears.
/// A recurrence without a `basis` comes back apart: its default depends on the task's due date
/// (after the patch), which the pipeline knows under the user's lock.
pub fn task_patch(
    object: Map<String, Value>,
) -> Result<(TaskPatch, Option<RecurrenceSpec>), Vec<FieldError>> {
    let mut r = Reader::new(object);
    let mut patch = TaskPatch::default();
    match r.string("title") {
        Field::Value(t) => patch.title = r.errors.check(validate::title("title", &t)),
        Field::Null => r.error("title", "blank", "the title cannot be removed"),
        Field::Absent => {}
    }
    match r.string("description") {
        Field::Value(d) => {
            patch.description = r
                .errors
                .check(validate::description("description", Some(&d)))
        }
        Field::Null => patch.description = Some(None),
        Field::Absent => {}
    }
    match r.priority("priority") {
        Field::Value(p) => patch.priority = Some(p),
        Field::Null => patch.priority = Some(Priority::default()),
        Field::Absent => {}
    }
    match r.due() {
        Field::Value(d) => patch.due = Some(Some(d)),
        Field::Null => patch.due = Some(None),
        Field::Absent => {}
    }
    match r.strings("tags") {
        Field::Value(t) => patch.tags = Some(validate::tags("tags", &t, &mut r.errors)),
        Field::Null => patch.tags = Some(vec![]),
        Field::Absent => {}
    }
    let mut open_basis = None;
    match r.recurrence() {
        Field::Value(spec) if spec.basis.is_none() => open_basis = Some(spec),
        Field::Value(spec) => patch.recurrence = Some(Some(spec.with_default_basis(false))),
        Field::Null => patch.recurrence = Some(None),
        Field::Absent => {}
    }
    r.reject_unknown();
    let Reader { errors, .. } = r;
    errors.finish(|| (patch, open_basis))
}

/// The body of `PUT /tasks/{id}/recurrence`. Without a `basis`, the pipeline picks one from the
/// task's due date under the user's lock.
pub fn recurrence(object: Map<String, Value>) -> Result<RecurrenceSpec, Vec<FieldError>> {
    let mut wrapper = Map::new();
    wrapper.insert("recurrence".into(), Value::Object(object));
    let mut r = Reader::new(wrapper);
    let recurrence = r.recurrence().value();
    let Reader { errors, .. } = r;
    let recurrence = errors.finish(|| recurrence)?;
    recurrence.ok_or_else(|| {
        vec![FieldError::new(
            "recurrence",
            "invalid",
            "invalid recurrence",
        )]
    })
}

/// The body of `POST /tasks/{id}/tags`: `{"tag": "…"}`.
pub fn tag(mut object: Map<String, Value>) -> Result<String, Vec<FieldError>> {
    let tag = match object.remove("tag") {
        Some(Value::String(tag)) => validate::tag("tag", &tag).map_err(|e| vec![e]),
        _ => Err(vec![FieldError::new(
            "tag",
            "required",
            "give the tag as a string",
        )]),
    };
    let mut errors: Vec<FieldError> = object
        .keys()
        .map(|k| FieldError::new(k.clone(), "unknown_field", "is not a field of this request"))
        .collect();
    match tag {
        Ok(tag) if errors.is_empty() => Ok(tag),
        Ok(_) => Err(errors),
        Err(mut e) => {
            e.append(&mut errors);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_full_task_body_parses() {
        let (fields, reminders) = task_fields(
            obj(json!({
                "title": " Pay rent ", "description": "by transfer", "priority": "high",
                "due": "2026-12-01T09:00:00+01:00", "timezone": "Europe/Berlin",
                "tags": ["home", "money"],
                "recurrence": { "rrule": "FREQ=MONTHLY;BYMONTHDAY=-1", "timezone": "Europe/Berlin" },
                "reminders": [{ "before_due_seconds": 3600 }]
            })),
            true,
        )
        .expect("valid");
        assert_eq!(fields.title, "Pay rent");
        assert_eq!(fields.priority, Priority::High);
        assert!(
            matches!(fields.due, Some(Due::At { tz: Some(ref tz), .. }) if tz == "Europe/Berlin")
        );
        assert_eq!(
            fields.recurrence.map(|r| r.basis),
            Some(RecurrenceBasis::DueDate)
        );
        assert_eq!(reminders.len(), 1);
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let errors = task_fields(
            obj(json!({
                "title": "  ", "priority": "asap", "due": "tomorrow", "tags": ["a", 3],
                "recurrence": { "rrule": "FREQ=HOURLY" }, "colour": "red"
            })),
            true,
        )
        .expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "title",
                "priority",
                "due",
                "tags[1]",
                "recurrence.rrule",
                "colour"
            ]
        );
    }

    #[test]
    fn patch_tells_absent_from_null() {
        let patch = task_patch(obj(json!({ "description": null, "priority": "low" })))
            .expect("valid")
            .0;
        assert_eq!(patch.description, Some(None));
        assert_eq!(patch.priority, Some(Priority::Low));
        assert_eq!(patch.title, None);
        assert!(task_patch(obj(json!({ "title": null }))).is_err());
    }

    #[test]
    fn dates_and_rrules() {
        assert!(matches!(
            parse_due("2026-02-28", None),
            Some(Due::Date { .. })
        ));
        assert!(parse_due("2026-02-30", None).is_none());
        assert!(check_rrule("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=10").is_ok());
        assert!(check_rrule("FREQ=WEEKLY;INTERVAL=0").is_err());
        assert!(check_rrule("INTERVAL=2").is_err());
        assert!(check_rrule("FREQ=DAILY;FOO=1").is_err());
        assert!(valid_timezone("America/Argentina/Buenos_Aires"));
        assert!(!valid_timezone("Europe/../etc"));
    }
}
