//! Query-string parsing. Axum's `Query` rejects with plain text and cannot take repeated
//! parameters, so each route reads the raw pairs through [`Params`], which collects every
//! problem (unknown, repeated, malformed, out of range) and reports them all in one `400`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::error::{AppError, ParamError};

/// The longest value any parameter may have.
const MAX_VALUE_LEN: usize = 1_000;

/// The raw `name=value` pairs of the query string, in order, percent-decoded.
#[derive(Clone, Debug, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(QueryPairs)
            .map_err(|e| AppError::BadRequest {
                code: "invalid_query",
                detail: format!("the query string cannot be parsed: {e}"),
            })
    }
}

/// Reads the parameters one route takes, collecting every problem.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
    errors: Vec<ParamError>,
}

impl Params {
    /// Starts reading `pairs`; any parameter not in `known` is an error.
    pub fn new(QueryPairs(pairs): QueryPairs, known: &[&str]) -> Self {
        let mut errors = Vec::new();
        let mut reported = Vec::new();
        for (name, value) in &pairs {
            if !known.contains(&name.as_str()) {
                if !reported.contains(name) {
                    errors.push(ParamError::new(
                        name.clone(),
                        "unknown_parameter",
                        format!("this route takes only: {}", known.join(", ")),
                    ));
                    reported.push(name.clone());
                }
            } else if value.contains('\0') {
                errors.push(ParamError::new(
                    name.clone(),
                    "invalid_value",
                    "must not contain NUL characters",
                ));
            } else if value.chars().count() > MAX_VALUE_LEN {
                errors.push(ParamError::new(
                    name.clone(),
                    "too_long",
                    format!("at most {MAX_VALUE_LEN} characters"),
                ));
            }
        }
        let pairs = pairs
            .into_iter()
            .filter(|(name, value)| {
                known.contains(&name.as_str())
                    && !value.contains('\0')
                    && value.chars().count() <= MAX_VALUE_LEN
            })
            .collect();
        Self { pairs, errors }
    }

    /// Records a problem with `field`.
    pub fn error(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(ParamError::new(field, code, message));
    }

    /// A single-valued parameter, trimmed; empty counts as absent. Given twice is an error.
    pub fn single(&mut self, name: &str) -> Option<String> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty());
        let first = values.next()?.to_owned();
        if values.next().is_some() {
            self.error(name, "repeated", "give this parameter at most once");
            return None;
        }
        Some(first)
    }

    /// A multi-valued parameter: repeated and/or comma-separated; trimmed, empties dropped.
    pub fn list(&mut self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A parameter that is one of `choices`, or `default` when absent.
    pub fn choice<T: Copy>(&mut self, name: &str, choices: &[(&str, T)], default: T) -> T {
        let Some(raw) = self.single(name) else {
            return default;
        };
        match choices
            .iter()
            .find(|(label, _)| label.eq_ignore_ascii_case(&raw))
        {
            Some((_, value)) => *value,
            None => {
                let labels: Vec<_> = choices.iter().map(|(l, _)| *l).collect();
                self.error(
                    name,
                    "invalid_value",
                    format!("must be one of: {}", labels.join(", ")),
                );
                default
            }
        }
    }

    /// `limit`: an integer in `1..=max`, `default` when absent.
    pub fn limit(&mut self, default: u32, max: u32) -> u32 {
        match self.integer("limit") {
            None => default,
            Some(n) if (1..=i64::from(max)).contains(&n) => u32::try_from(n).unwrap_or(default),
            Some(_) => {
                self.error(
                    "limit",
                    "out_of_range",
                    format!("must be between 1 and {max}"),
                );
                default
            }
        }
    }

    /// A non-negative integer parameter.
    pub fn integer(&mut self, name: &str) -> Option<i64> {
        let raw = self.single(name)?;
        match raw.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            Ok(_) => {
                self.error(name, "out_of_range", "must not be negative");
                None
            }
            Err(_) => {
                self.error(name, "invalid_value", "must be an integer");
                None
            }
        }
    }

    /// A boolean parameter (`true`/`false`, `1`/`0`).
    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        let raw = self.single(name)?;
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => {
                self.error(name, "invalid_value", "must be true or false");
                None
            }
        }
    }

    /// A point in time: RFC 3339 (`2026-12-24T18:00:00+01:00`) or a date (`2026-12-24`).
    pub fn instant_or_date(&mut self, name: &str) -> Option<InstantOrDate> {
        let raw = self.single(name)?;
        let parsed = if let Ok(at) = DateTime::parse_from_rfc3339(&raw) {
            Some(InstantOrDate::Instant(at.with_timezone(&Utc)))
        } else {
            NaiveDate::parse_from_str(&raw, "%Y-%m-%d")
                .ok()
                .map(InstantOrDate::Date)
        };
        if let Some(parsed) = parsed {
            // Postgres cannot hold every year chrono can; no due date is that far away anyway.
            let year = match parsed {
                InstantOrDate::Instant(at) => at.year(),
                InstantOrDate::Date(date) => date.year(),
            };
            if (1..=9999).contains(&year) {
                return Some(parsed);
            }
            self.error(name, "out_of_range", "the year must be between 1 and 9999");
            return None;
        }
        self.error(
            name,
            "invalid_value",
            "must be an RFC 3339 date-time (2026-12-24T18:00:00Z) or a date (2026-12-24)",
        );
        None
    }

    /// Ends reading: every problem found, or nothing.
    pub fn finish(self) -> Result<(), AppError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidQuery(self.errors))
        }
    }
}

/// A time bound as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstantOrDate {
    Instant(DateTime<Utc>),
    Date(NaiveDate),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str, known: &[&str]) -> Params {
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query).expect("pairs");
        Params::new(QueryPairs(pairs), known)
    }

    #[test]
    fn lists_are_repeated_or_comma_separated() {
        let mut p = params("tags=a,b&tags=c&tags=&tags=%20d%20", &["tags"]);
        assert_eq!(p.list("tags"), ["a", "b", "c", "d"]);
        assert!(p.finish().is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut p = params(
            "limit=abc&bogus=1&status=x&status=y&due_before=soon&q=a%00b",
            &["limit", "status", "due_before", "q"],
        );
        assert_eq!(p.limit(50, 200), 50);
        assert_eq!(p.single("status"), None);
        assert_eq!(p.instant_or_date("due_before"), None);
        assert_eq!(p.single("q"), None);
        let Err(AppError::InvalidQuery(errors)) = p.finish() else {
            panic!("expected invalid query");
        };
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            [
                ("bogus", "unknown_parameter"),
                ("q", "invalid_value"),
                ("limit", "invalid_value"),
                ("status", "repeated"),
                ("due_before", "invalid_value"),
            ]
        );
    }

    #[test]
    fn limit_must_be_in_range() {
        for (query, ok) in [
            ("limit=1", true),
            ("limit=200", true),
            ("limit=0", false),
            ("limit=201", false),
            ("limit=-1", false),
            ("limit=99999999999999999999", false),
        ] {
            let mut p = params(query, &["limit"]);
            p.limit(50, 200);
            assert_eq!(p.finish().is_ok(), ok, "{query}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_dates() {
        let mut p = params("a=2026-12-24T18:00:00%2B01:00&b=2026-12-24", &["a", "b"]);
        assert_eq!(
            p.instant_or_date("a"),
            Some(InstantOrDate::Instant(
                "2026-12-24T17:00:00Z".parse().expect("valid")
            ))
        );
        assert_eq!(
            p.instant_or_date("b"),
            Some(InstantOrDate::Date(
                NaiveDate::from_ymd_opt(2026, 12, 24).expect("valid")
            ))
        );
        let mut p = params("a=2026-02-30", &["a"]);
        assert_eq!(p.instant_or_date("a"), None);
        assert!(p.finish().is_err());
    }
}
