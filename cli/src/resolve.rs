//! Which case a person means: its case number as printed everywhere
//! (`S001-tab-a-1`), its id, or any unique start of its id.

use aftercase_client::Device;
use aftercase_sync::case::CaseView;
use aftercase_sync::CaseId;

/// Shortest start of an id taken as a prefix: shorter ones would match by
/// accident.
const MIN_PREFIX: usize = 4;

/// A case the command acts on.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its id.
    pub id: CaseId,
    /// Its case number, when the device holds the case.
    pub no: Option<String>,
}

impl Target {
    /// The number people read, or the id when the case is not here.
    pub fn name(&self) -> String {
        self.no.clone().unwrap_or_else(|| self.id.to_string())
    }
}

/// Finds the case `text` names among `cases`; `Err` says why not in words.
pub fn find(cases: &[CaseView], text: &str) -> Result<Target, String> {
    let t = text.trim();
    if let Ok(id) = t.parse::<CaseId>() {
        let no = cases
            .iter()
            .find(|v| v.id == id.to_string())
            .and_then(|v| v.case_no.clone());
        return Ok(Target { id, no });
    }
    let target = |v: &CaseView| -> Result<Target, String> {
        Ok(Target {
            id: v.id.parse().map_err(|e| format!("case {}: {e}", v.id))?,
            no: v.case_no.clone(),
        })
    };
    if let Some(v) = cases.iter().find(|v| {
        v.case_no
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(t))
    }) {
        return target(v);
    }
    let lower = t.to_ascii_lowercase();
    let looks_like_id =
        lower.len() >= MIN_PREFIX && lower.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if looks_like_id {
        let hits: Vec<&CaseView> = cases.iter().filter(|v| v.id.starts_with(&lower)).collect();
        match hits[..] {
            [v] => return target(v),
            [] => {}
            _ => {
                let names: Vec<String> = hits
                    .iter()
                    .take(5)
                    .map(|v| format!("{} ({})", v.case_no.as_deref().unwrap_or("-"), v.id))
                    .collect();
                return Err(format!(
                    "{t:?} starts the ids of {} cases: {}; type more of it or the case number",
                    hits.len(),
                    names.join(", ")
                ));
            }
        }
    }
    Err(format!(
        "no case {t:?} on this device: give its case number (as `case list` shows), its id or the start of its id (at least {MIN_PREFIX} characters); or run `aftercase sync`"
    ))
}

/// [`find`] over the cases on `device`.
pub fn case(device: &Device, text: &str) -> anyhow::Result<Target> {
    // A whole id needs no listing: only its number is looked up.
    if let Ok(id) = text.trim().parse::<CaseId>() {
        let no = device.case(id)?.and_then(|v| v.case_no);
        return Ok(Target { id, no });
    }
    let cases = device.cases()?;
    find(&cases, text).map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, no: &str) -> CaseView {
        let mut v = CaseView::from_doc(&automerge::Automerge::new(), id);
        v.id = id.to_string();
        v.case_no = Some(no.to_string());
        v
    }

    #[test]
    fn a_case_is_found_by_number_id_or_unique_start_of_its_id() {
        let a = "1a2b3c4d-0000-4000-8000-000000000001";
        let b = "1a2b9999-0000-4000-8000-000000000002";
        let cases = vec![view(a, "S001-tab-a-1"), view(b, "S001-tab-a-2")];
        assert_eq!(find(&cases, "S001-tab-a-2").unwrap().id.to_string(), b);
        assert_eq!(find(&cases, "s001-TAB-a-1").unwrap().id.to_string(), a);
        assert_eq!(find(&cases, a).unwrap().no.as_deref(), Some("S001-tab-a-1"));
        assert_eq!(find(&cases, "1a2b3").unwrap().id.to_string(), a);
        assert_eq!(find(&cases, "1A2B9").unwrap().id.to_string(), b);
        let both = find(&cases, "1a2b").unwrap_err();
        assert!(
            both.contains("2 cases") && both.contains("S001-tab-a-2"),
            "{both}"
        );
        // Too short to be taken as a start of an id.
        assert!(find(&cases, "1a2").is_err());
        let none = find(&cases, "S001-tab-a-3").unwrap_err();
        assert!(none.contains("no case \"S001-tab-a-3\""), "{none}");
        // An id not on this device still names a case (the command says
        // whether it is there).
        let other = "ffffffff-0000-4000-8000-000000000003";
        assert!(find(&cases, other).unwrap().no.is_none());
    }
}
