//! The language of human output: Chinese (the shop floor's, the default)
//! or English. JSON output never changes with it: it keeps the stable
//! English codes.

use aftercase_sync::case::CaseKind;
use aftercase_sync::labels::{self, Label};

/// Environment variable choosing the language, like `--lang`.
pub const ENV: &str = "AFTERCASE_LANG";

/// A language of human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 简体中文 (zh-CN).
    Zh,
    /// English.
    En,
}

impl std::str::FromStr for Lang {
    type Err = String;

    /// `zh`, `zh-CN`, `zh_CN.UTF-8`, `en`, `en-US`, ... (case-insensitive).
    fn from_str(s: &str) -> Result<Lang, String> {
        let lower = s.trim().to_ascii_lowercase();
        if lower.starts_with("zh") {
            Ok(Lang::Zh)
        } else if lower.starts_with("en") {
            Ok(Lang::En)
        } else {
            Err(format!("{s:?} is not a language here: zh (中文) or en"))
        }
    }
}

impl Lang {
    /// The words for this language.
    pub fn t<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    fn pick(self, l: Label) -> &'static str {
        match self {
            Lang::Zh => l.zh,
            Lang::En => l.en,
        }
    }

    /// A case kind by its wire name (`-` when it has none).
    pub fn kind(self, kind: Option<&str>) -> String {
        match kind {
            None => "-".into(),
            Some(k) => k
                .parse::<CaseKind>()
                .map_or_else(|_| k.to_string(), |k| self.pick(labels::kind(k)).into()),
        }
    }

    /// A state of a case of kind `kind`, by its code.
    pub fn state(self, kind: Option<&str>, state: &str) -> String {
        kind.and_then(|k| k.parse::<CaseKind>().ok())
            .and_then(|k| labels::state(k, state))
            .map_or_else(|| state.to_string(), |l| self.pick(l).into())
    }

    /// A state with its code beside it where the person may have to type
    /// it (`确认 confirmed`); in English the name alone when it is the code.
    pub fn state_and_code(self, kind: Option<&str>, state: &str) -> String {
        let name = self.state(kind, state);
        if name == state || name.replace(' ', "_") == state {
            state.to_string()
        } else {
            format!("{name} {state}")
        }
    }

    /// A deadline by its code.
    pub fn timer(self, name: &str) -> String {
        labels::timer(name).map_or_else(|| name.to_string(), |l| self.pick(l).into())
    }

    /// A role.
    pub fn role(self, role: aftercase_sync::access::Role) -> String {
        self.pick(labels::role(role)).into()
    }

    /// A settable field by its code.
    pub fn field(self, field: &str) -> String {
        field
            .parse::<aftercase_sync::case::CaseField>()
            .map_or_else(
                |_| field.to_string(),
                |f| self.pick(labels::field(f)).into(),
            )
    }

    /// A refusal code of the relay, with the code in brackets for support.
    pub fn refusal(self, code: &str) -> String {
        labels::refusal(code).map_or_else(
            || format!("[{code}]"),
            |l| format!("{} [{code}]", self.pick(l)),
        )
    }

    /// An entry of a case's log by its type.
    pub fn entry(self, kind: &str) -> String {
        labels::entry(kind).map_or_else(|| kind.to_string(), |l| self.pick(l).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_read_from_locale_like_names() {
        assert_eq!("zh-CN".parse::<Lang>(), Ok(Lang::Zh));
        assert_eq!("zh_CN.UTF-8".parse::<Lang>(), Ok(Lang::Zh));
        assert_eq!("EN".parse::<Lang>(), Ok(Lang::En));
        assert!("fr".parse::<Lang>().unwrap_err().contains("zh"));
    }

    #[test]
    fn labels_follow_the_language_and_keep_the_code_to_type() {
        assert_eq!(Lang::Zh.state(Some("repair"), "dispatched"), "派工");
        assert_eq!(Lang::En.state(Some("repair"), "in_repair"), "in repair");
        assert_eq!(
            Lang::Zh.state_and_code(Some("repair"), "confirmed"),
            "确认 confirmed"
        );
        assert_eq!(
            Lang::En.state_and_code(Some("repair"), "confirmed"),
            "confirmed"
        );
        assert_eq!(
            Lang::En.state_and_code(Some("repair"), "in_repair"),
            "in_repair"
        );
        assert_eq!(Lang::Zh.kind(Some("return_exchange")), "退换货");
        assert_eq!(Lang::Zh.refusal("forbidden"), "无此权限 [forbidden]");
    }
}
