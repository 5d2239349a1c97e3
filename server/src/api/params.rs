//! Query-string parsing shared by the read API: every parameter is named,
//! an unknown one is refused by name (a typo never silently returns
//! everything), and a bad value says what was expected.

use crate::error::{clip, ApiError};
use actix_web::{web, HttpRequest};

/// The parameters of a request, checked against what the endpoint takes.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses the query string of `req`, refusing parameters not in
    /// `known`. `format` is always accepted.
    pub fn parse(req: &HttpRequest, known: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> =
            web::Query::<Vec<(String, String)>>::from_query(req.query_string())
                .map_err(|_| ApiError::BadRequest("malformed query string".into()))?
                .into_inner();
        for (k, _) in &pairs {
            if k != "format" && !known.contains(&k.as_str()) {
                let mut all: Vec<&str> = known.to_vec();
                all.push("format");
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter \"{}\": use {}",
                    clip(k),
                    all.join(", ")
                )));
            }
        }
        Ok(Params { pairs })
    }

    /// The raw value of `name` (the last one given).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` as text.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// The `store` parameter, checked as a store id.
    pub fn store(&self) -> Result<Option<aftercase_sync::StoreId>, ApiError> {
        self.get("store")
            .map(|v| {
                aftercase_sync::StoreId::new(v.to_string()).map_err(|_| {
                    ApiError::BadRequest(format!("store: \"{}\" is not a store id", clip(v)))
                })
            })
            .transpose()
    }

    /// `name` as true/false (or 1/0).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::BadRequest(format!(
                    "{name}: \"{}\" is not true or false",
                    clip(v)
                ))),
            })
            .transpose()
    }

    /// `name` as an RFC 3339 time, in ms.
    pub fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(|v| time(name, v)).transpose()
    }

    /// `name` as a number in `range`.
    pub fn number(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<Option<usize>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "{name}: \"{}\" is not a number from {} to {}",
                            clip(v),
                            range.start(),
                            range.end()
                        ))
                    })
            })
            .transpose()
    }

    /// `name` parsed with `FromStr`, refused with `what` ("a case kind").
    pub fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    ApiError::BadRequest(format!("{name}: \"{}\" is not {what}", clip(v)))
                })
            })
            .transpose()
    }
}

/// An RFC 3339 time, in ms.
pub fn time(name: &str, v: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{name}: \"{}\" is not a time like 2026-12-01T09:00:00+08:00",
                clip(v)
            ))
        })
}
