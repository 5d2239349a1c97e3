//! How the command line speaks: human lines in the chosen language with
//! times in the store's zone, or JSON objects for programs.

use crate::lang::Lang;
use aftercase_sync::policy::Policy;
use aftercase_sync::rules::calendar::format_local;
use serde_json::{Map, Value};
use unicode_width::UnicodeWidthStr;

/// The version of every JSON object the command line prints. Raised only
/// when a field is renamed or removed or changes meaning; new fields may
/// appear within a version.
pub const SCHEMA_VERSION: u32 = 1;

/// Output settings of one run.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Language of human output.
    pub lang: Lang,
    /// Print JSON instead.
    pub json: bool,
}

impl Out {
    /// Words in the chosen language.
    pub fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        self.lang.t(zh, en)
    }
}

/// Prints `fields` (a JSON object) with `schema_version` added.
pub fn json(fields: Value) -> anyhow::Result<()> {
    let mut map = match fields {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    map.insert("schema_version".into(), SCHEMA_VERSION.into());
    println!("{}", serde_json::to_string_pretty(&Value::Object(map))?);
    Ok(())
}

/// Prints a serialisable object (a case, a status) with `schema_version`
/// added beside its own fields.
pub fn json_of<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    json(serde_json::to_value(v)?)
}

/// Milliseconds as the store's local time, `2026-12-08 10:00`.
pub fn local(policy: &Policy, ms: i64) -> String {
    format_local(policy, ms)
}

/// An RFC 3339 time (as case views carry them) as the store's local time
/// without seconds; text that is not a time is shown as it is.
pub fn local_text(policy: &Policy, rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| format_local(policy, t.timestamp_millis()))
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// `text` padded with spaces to `width` terminal cells (a Chinese
/// character takes two), so columns line up in either language.
pub fn pad(text: &str, width: usize) -> String {
    let w = text.width();
    if w >= width {
        format!("{text} ")
    } else {
        format!("{text}{}", " ".repeat(width - w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_the_store_zone_without_seconds() {
        let p = Policy::default();
        // The default policy is China time, UTC+8.
        assert_eq!(
            local_text(&p, "2026-11-25T05:00:00.127Z"),
            "2026-11-25 13:00"
        );
        assert_eq!(local_text(&p, "soon"), "soon");
    }

    #[test]
    fn columns_count_a_chinese_character_as_two_cells() {
        assert_eq!(pad("派工", 6), "派工  ");
        assert_eq!(pad("dispatched", 6), "dispatched ");
        assert_eq!(pad("ab", 4), "ab  ");
    }
}
