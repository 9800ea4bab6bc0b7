//! Request bodies: JSON in, checked domain values out, with every invalid field listed.
//!
//! Bodies are read as JSON objects and checked field by field (rather than by a derive that stops
//! at the first error), so a `422` names all the problems at once.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use event_store::events::{Due, Priority, Recurrence, RecurrenceBasis, ReminderTime};
use rrule::{Frequency, ParseError, RRule, RRuleError, Unvalidated, ValidationError};
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
        let tz = self.timezone("timezone").map(|tz| tz.name().to_owned());
        match self.string("due") {
            Field::Value(s) => match parse_due(&s, tz) {
                Some(due) => Field::Value(due),
                None => {
                    self.error(
                        "due",
                        "invalid",
                        "must be a date (YYYY-MM-DD, 1900-01-01 to 9999-12-30) or a date-time with offset (RFC 3339, years 1900 to 9999)",
                    );
                    Field::Absent
                }
            },
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        }
    }

    fn timezone(&mut self, key: &str) -> Option<Tz> {
        let raw = self.string(key).value()?;
        let tz = timezone(&raw);
        if tz.is_none() {
            self.error(
                key,
                "invalid",
                format!("{raw:?} is not an IANA time zone such as Europe/Berlin or UTC"),
            );
        }
        tz
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
        let tz = inner.timezone("timezone").unwrap_or(Tz::UTC);
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
        if let Err(message) = check_rrule(&rrule, tz) {
            self.error("recurrence.rrule", "invalid", message);
            return Field::Absent;
        }
        match basis {
            Ok(basis) => Field::Value(RecurrenceSpec {
                rrule: rrule.to_uppercase(),
                tz: tz.name().to_owned(),
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
            self.errors.push(unknown_field(key));
        }
    }
}

/// A body member the request does not have.
fn unknown_field(field: impl Into<String>) -> FieldError {
    FieldError::new(field, "unknown_field", "is not a field of this request")
}

/// A due date or date-time from 1900 on, due by the end of 9999 at the latest: what every reader
/// of the log can hold (Postgres takes no year before 1 or after 9999 as the projector writes
/// it), with a year to spare for reminders before it.
fn parse_due(raw: &str, tz: Option<String>) -> Option<Due> {
    let due = if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Due::Date { date }
    } else {
        let at = DateTime::parse_from_rfc3339(raw).ok()?;
        Due::At {
            at: at.with_timezone(&Utc),
            tz,
        }
    };
    let first_year = match &due {
        Due::Date { date } => date.year(),
        Due::At { at, .. } => at.year(),
    };
    (first_year >= 1900 && due.deadline().year() <= 9999).then_some(due)
}

/// A zone of the IANA time zone database (`Europe/Berlin`, `UTC`, or a link such as
/// `US/Eastern`). The case is not significant: `europe/berlin` is read as `Europe/Berlin`, the
/// name that is stored.
fn timezone(raw: &str) -> Option<Tz> {
    let raw = raw.trim();
    raw.parse::<Tz>().ok().or_else(|| {
        chrono_tz::TZ_VARIANTS
            .iter()
            .copied()
            .find(|tz| tz.name().eq_ignore_ascii_case(raw))
    })
}

/// The `RRULE` parts a task's recurrence may use: day-level rules only, so no `BYHOUR`,
/// `BYMINUTE` or `BYSECOND`.
const RRULE_PARTS: &[&str] = &[
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

/// Checks an RFC 5545 `RRULE` value (without `DTSTART`, optionally prefixed `RRULE:`, any case)
/// for a recurrence in `tz`: known parts with values in range, a `FREQ` of at least a day, and
/// the RFC's rules (`COUNT` or `UNTIL`, not both; no `BYMONTHDAY` with `WEEKLY`; …).
///
/// The rule has no start of its own (it counts from the due or completion date), so it is checked
/// against a start at the Unix epoch in `tz`; `UNTIL` is a date (`YYYYMMDD`) or a UTC date-time
/// (`YYYYMMDDTHHMMSSZ`), as RFC 5545 requires with a start in a time zone.
fn check_rrule(rrule: &str, tz: Tz) -> Result<(), String> {
    let rule = rrule.trim().to_uppercase();
    let rule = rule.strip_prefix("RRULE:").unwrap_or(&rule);
    if !rule
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b';' | b',' | b'+' | b'-'))
    {
        return Err(
            "an RRULE is KEY=VALUE parts separated by ';', such as FREQ=WEEKLY;BYDAY=MO".into(),
        );
    }
    // What the rrule crate parses: the same parts, with a date-only UNTIL as a UTC date-time,
    // the form it expects with a start in a time zone.
    let mut parts = Vec::new();
    for part in rule.split(';') {
        if part.is_empty() {
            return Err("the rule has an empty part (';;', or ';' at an end)".into());
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        if !RRULE_PARTS.contains(&key) {
            return Err(format!("{key} is not supported"));
        }
        if value.is_empty() {
            return Err(format!("{key} has no value"));
        }
        if key == "BYDAY"
            && let Some(day) = value.split(',').find(|day| !weekday_position_ok(day))
        {
            return Err(format!(
                "BYDAY={day}: a weekday's position is 1 to 53, or -1 to -53 counting from the end"
            ));
        }
        if key == "UNTIL" {
            parts.push(format!("UNTIL={}", until_in_utc(value)?));
        } else {
            parts.push(part.to_owned());
        }
    }
    let parsed: RRule<Unvalidated> = parts.join(";").parse().map_err(rrule_error)?;
    match parsed.get_freq() {
        Frequency::Daily | Frequency::Weekly | Frequency::Monthly | Frequency::Yearly => {}
        other => return Err(unsupported_freq(&other.to_string())),
    }
    if parsed.get_interval() == 0 {
        return Err("INTERVAL must be a positive integer".into());
    }
    if parsed.get_count() == Some(0) {
        return Err("COUNT must be a positive integer".into());
    }
    if parsed.get_count().is_some() && parsed.get_until().is_some() {
        return Err("give COUNT or UNTIL, not both".into());
    }
    // Two checks the crate makes only after filling in parts from the start, too late to fail.
    if parsed.get_by_month_day().contains(&0) {
        return Err("BYMONTHDAY cannot be 0 (1 to 31, or -31 to -1 counting from the end)".into());
    }
    let by_parts = !parsed.get_by_month().is_empty()
        || !parsed.get_by_month_day().is_empty()
        || !parsed.get_by_year_day().is_empty()
        || !parsed.get_by_week_no().is_empty()
        || !parsed.get_by_weekday().is_empty();
    if !parsed.get_by_set_pos().is_empty() && !by_parts {
        return Err("BYSETPOS needs another BY part to pick from, such as BYDAY".into());
    }
    let start = DateTime::UNIX_EPOCH.with_timezone(&rrule::Tz::from(tz));
    parsed.validate(start).map(drop).map_err(rrule_error)
}

/// Whether a `BYDAY` item's position (`2` in `2TU`, `-1` in `-1FR`, none in `MO`) is a non-zero
/// number: the crate reads one it cannot parse (`0MO`, `+MO`, `+-1MO`) as every such weekday.
/// `day` is ASCII.
fn weekday_position_ok(day: &str) -> bool {
    let position = &day[..day.len().saturating_sub(2)];
    let digits = position.strip_prefix(['+', '-']).unwrap_or(position);
    position.is_empty()
        || (!digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.parse::<u16>().is_ok_and(|n| n > 0))
}

/// `UNTIL`'s value as a UTC date-time (`YYYYMMDDTHHMMSSZ`): a date is read as its first instant.
/// `value` is ASCII.
fn until_in_utc(value: &str) -> Result<String, String> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match value.len() {
        8 if digits(value) && NaiveDate::parse_from_str(value, "%Y%m%d").is_ok() => {
            Ok(format!("{value}T000000Z"))
        }
        16 if digits(&value[..8])
            && digits(&value[9..15])
            && NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").is_ok() =>
        {
            Ok(value.to_owned())
        }
        _ => Err(format!(
            "UNTIL={value} is neither a date (YYYYMMDD) nor a date-time in UTC (YYYYMMDDTHHMMSSZ)"
        )),
    }
}

fn unsupported_freq(freq: &str) -> String {
    format!("FREQ={freq} is not supported (DAILY, WEEKLY, MONTHLY, YEARLY)")
}

/// The rrule crate's complaint, without its `RRule parsing error:` prefix.
fn rrule_error(error: RRuleError) -> String {
    match error {
        RRuleError::ParserError(ParseError::InvalidFrequency(freq)) => unsupported_freq(&freq),
        RRuleError::ParserError(ParseError::MissingProperty(part)) => format!("{part} is required"),
        RRuleError::ParserError(e) => e.to_string(),
        RRuleError::ValidationError(ValidationError::UntilBeforeStart { .. }) => {
            "UNTIL must not be before 1970".into()
        }
        RRuleError::ValidationError(e) => e.to_string(),
        RRuleError::IterError(e) => e,
    }
}

/// A reminder's time: `{"remind_at": RFC 3339}` or `{"before_due_seconds": n}`.
pub fn reminder_time(value: Value) -> Result<ReminderTime, FieldError> {
    let Value::Object(map) = value else {
        return Err(FieldError::new("", "wrong_type", "a reminder is an object"));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "remind_at" | "before_due_seconds"))
    {
        return Err(unknown_field(format!(".{unknown}")));
    }
    match (map.get("remind_at"), map.get("before_due_seconds")) {
        (Some(Value::String(at)), None) => DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|at| at.with_timezone(&Utc))
            .filter(|at| at.year() >= 1900)
            .map(|at| ReminderTime::At { at })
            .ok_or_else(|| {
                FieldError::new(
                    ".remind_at",
                    "invalid",
                    "must be an RFC 3339 date-time in the years 1900 to 9999",
                )
            }),
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
    // The zone is kept with a date-time due; alone it would change nothing.
    if r.object.get("timezone").is_some_and(|z| !z.is_null()) && !r.object.contains_key("due") {
        r.error(
            "timezone",
            "requires_due",
            "a time zone belongs to a due date-time: send due with it",
        );
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
    let mut errors: Vec<FieldError> = object.keys().map(|k| unknown_field(k.clone())).collect();
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
    fn a_patched_time_zone_comes_with_a_due() {
        let alone = task_patch(obj(json!({ "timezone": "Asia/Tokyo" }))).expect_err("refused");
        assert_eq!(
            (alone[0].field.as_str(), alone[0].code),
            ("timezone", "requires_due")
        );
        let (patch, _) = task_patch(obj(json!({
            "due": "2026-12-24T18:00:00Z", "timezone": "Asia/Tokyo"
        })))
        .expect("valid");
        assert!(matches!(
            patch.due,
            Some(Some(Due::At { tz: Some(ref tz), .. })) if tz == "Asia/Tokyo"
        ));
        assert!(task_patch(obj(json!({ "timezone": null }))).is_ok());
    }

    #[test]
    fn dates_and_rrules() {
        assert!(matches!(
            parse_due("2026-02-28", None),
            Some(Due::Date { .. })
        ));
        assert!(parse_due("2026-02-30", None).is_none());
        for out_of_range in [
            "-5000-01-01",
            "+10000-01-01",
            "0000-01-01",
            "1899-12-31",
            "1899-12-31T23:59:59Z",
            "9999-12-31",
            "9999-12-31T23:59:59-01:00",
        ] {
            assert!(parse_due(out_of_range, None).is_none(), "{out_of_range}");
        }
        for in_range in ["1900-01-01", "9999-12-30", "9999-12-31T23:59:59Z"] {
            assert!(parse_due(in_range, None).is_some(), "{in_range}");
        }
    }

    fn rrule_error(rrule: &str) -> String {
        check_rrule(rrule, Tz::UTC).expect_err(rrule)
    }

    #[test]
    fn time_zones_are_iana_zones_named_as_the_database_spells_them() {
        for (raw, canonical) in [
            ("UTC", "UTC"),
            ("Europe/Berlin", "Europe/Berlin"),
            (
                "America/Argentina/Buenos_Aires",
                "America/Argentina/Buenos_Aires",
            ),
            ("US/Eastern", "US/Eastern"),
            ("Etc/GMT+5", "Etc/GMT+5"),
            ("europe/berlin", "Europe/Berlin"),
            ("utc", "UTC"),
            ("AMERICA/NEW_YORK", "America/New_York"),
        ] {
            assert_eq!(timezone(raw).map(|tz| tz.name()), Some(canonical), "{raw}");
        }
        for raw in [
            "",
            "Europe/Atlantis",
            "Mars/Olympus_Mons",
            "Europe/../etc",
            "+02:00",
            "CEST",
        ] {
            assert_eq!(timezone(raw), None, "{raw}");
        }
    }

    #[test]
    fn a_time_zone_is_stored_with_its_canonical_name_and_an_unknown_one_is_listed() {
        let (fields, _) = task_fields(
            obj(json!({
                "title": "t", "due": "2026-12-01T09:00:00+01:00", "timezone": "europe/berlin",
                "recurrence": { "rrule": "FREQ=DAILY", "timezone": "asia/tokyo" }
            })),
            false,
        )
        .expect("valid");
        assert!(
            matches!(fields.due, Some(Due::At { tz: Some(ref tz), .. }) if tz == "Europe/Berlin")
        );
        assert_eq!(fields.recurrence.map(|r| r.tz), Some("Asia/Tokyo".into()));
        let errors = task_fields(
            obj(json!({
                "title": "t", "due": "2026-12-01T09:00:00Z", "timezone": "Europe/Atlantis",
                "recurrence": { "rrule": "FREQ=DAILY", "timezone": "Nowhere/Land" }
            })),
            false,
        )
        .expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            [("timezone", "invalid"), ("recurrence.timezone", "invalid")]
        );
    }

    #[test]
    fn the_rules_in_use_are_accepted() {
        for rrule in [
            "FREQ=DAILY",
            "FREQ=WEEKLY;BYDAY=MO",
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=10",
            "FREQ=MONTHLY;BYMONTHDAY=-1",
            "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=12",
            "FREQ=MONTHLY;BYDAY=-1FR",
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=30",
            "FREQ=YEARLY;BYWEEKNO=1;BYDAY=MO",
            "FREQ=DAILY;UNTIL=20261231",
            "FREQ=WEEKLY;UNTIL=20261231T235959Z;WKST=SU",
            "RRULE:FREQ=DAILY;INTERVAL=3",
            "freq=weekly;byday=mo",
        ] {
            assert_eq!(check_rrule(rrule, Tz::UTC), Ok(()), "{rrule}");
            assert_eq!(
                check_rrule(rrule, Tz::Europe__Berlin),
                Ok(()),
                "{rrule} in Berlin"
            );
        }
    }

    #[test]
    fn a_rule_needs_a_daily_or_longer_freq() {
        assert!(rrule_error("INTERVAL=2").contains("FREQ is required"));
        assert!(rrule_error("FREQ=FORTNIGHTLY").contains("FREQ=FORTNIGHTLY is not supported"));
        for freq in ["HOURLY", "MINUTELY", "SECONDLY"] {
            let message = rrule_error(&format!("FREQ={freq}"));
            assert!(message.contains("is not supported (DAILY"), "{message}");
        }
    }

    #[test]
    fn a_rule_has_known_parts_once_each() {
        assert!(rrule_error("FREQ=DAILY;FOO=1").contains("FOO is not supported"));
        assert!(rrule_error("FREQ=DAILY;BYHOUR=9").contains("BYHOUR is not supported"));
        assert!(rrule_error("FREQ=DAILY;COUNT").contains("is not KEY=VALUE"));
        assert!(rrule_error("FREQ=DAILY;").contains("empty part"));
        assert!(rrule_error("FREQ=DAILY;COUNT=").contains("COUNT has no value"));
        assert!(rrule_error("FREQ=DAILY;FREQ=WEEKLY").contains("duplicate"));
        assert!(rrule_error("DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY").contains("KEY=VALUE"));
    }

    #[test]
    fn interval_and_count_are_positive() {
        assert!(rrule_error("FREQ=WEEKLY;INTERVAL=0").contains("INTERVAL must be a positive"));
        assert!(rrule_error("FREQ=WEEKLY;INTERVAL=-1").contains("INTERVAL"));
        assert!(rrule_error("FREQ=DAILY;COUNT=0").contains("COUNT must be a positive"));
        assert!(rrule_error("FREQ=DAILY;COUNT=many").contains("COUNT"));
    }

    #[test]
    fn count_and_until_are_not_both_given() {
        assert_eq!(check_rrule("FREQ=DAILY;COUNT=5", Tz::UTC), Ok(()));
        assert!(rrule_error("FREQ=DAILY;COUNT=5;UNTIL=20261231").contains("not both"));
    }

    #[test]
    fn until_is_a_date_or_a_utc_date_time() {
        assert_eq!(check_rrule("FREQ=DAILY;UNTIL=20260228", Tz::UTC), Ok(()));
        for until in [
            "20260230",
            "2026-12-31",
            "20261231T235959",
            "20261231T256000Z",
            "1",
        ] {
            let message = rrule_error(&format!("FREQ=DAILY;UNTIL={until}"));
            assert!(message.contains("UNTIL="), "{until}: {message}");
        }
        assert!(rrule_error("FREQ=DAILY;UNTIL=19691231").contains("before 1970"));
    }

    #[test]
    fn weekdays_are_two_letter_days() {
        assert_eq!(check_rrule("FREQ=WEEKLY;BYDAY=SA,SU", Tz::UTC), Ok(()));
        assert!(rrule_error("FREQ=WEEKLY;BYDAY=XX").contains("not a valid weekday"));
        assert!(rrule_error("FREQ=MONTHLY;BYDAY=9MO").contains("BYDAY"));
        assert!(rrule_error("FREQ=MONTHLY;BYDAY=0MO").contains("position"));
        assert!(rrule_error("FREQ=MONTHLY;BYDAY=1MO,+MO").contains("BYDAY=+MO"));
        assert!(rrule_error("FREQ=MONTHLY;BYDAY=+-1MO").contains("position"));
        assert_eq!(check_rrule("FREQ=MONTHLY;BYDAY=+2TU,-1FR", Tz::UTC), Ok(()));
    }

    #[test]
    fn by_values_are_in_range_and_fit_the_freq() {
        assert!(rrule_error("FREQ=MONTHLY;BYMONTHDAY=32").contains("BYMONTHDAY"));
        assert!(rrule_error("FREQ=MONTHLY;BYMONTHDAY=0").contains("BYMONTHDAY cannot be 0"));
        assert!(rrule_error("FREQ=YEARLY;BYMONTH=13").contains("BYMONTH"));
        assert!(rrule_error("FREQ=WEEKLY;BYMONTHDAY=1").contains("BYMONTHDAY"));
        assert!(rrule_error("FREQ=MONTHLY;BYWEEKNO=1").contains("BYWEEKNO"));
        assert!(rrule_error("FREQ=MONTHLY;BYSETPOS=1").contains("BYSETPOS"));
        assert!(rrule_error("FREQ=YEARLY;BYYEARDAY=367").contains("BYYEARDAY"));
    }

    #[test]
    fn an_invalid_rrule_is_listed_on_recurrence_rrule_and_a_valid_one_is_stored_uppercased() {
        let spec =
            recurrence(obj(json!({ "rrule": "freq=monthly;bymonthday=-1" }))).expect("valid");
        assert_eq!(
            spec.with_default_basis(true).rrule,
            "FREQ=MONTHLY;BYMONTHDAY=-1"
        );
        let errors =
            recurrence(obj(json!({ "rrule": "FREQ=MONTHLY;BYMONTHDAY=32" }))).expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code),
            ("recurrence.rrule", "invalid")
        );
        assert!(
            errors[0].message.contains("BYMONTHDAY"),
            "{}",
            errors[0].message
        );
    }
}
