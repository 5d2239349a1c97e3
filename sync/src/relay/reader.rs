//! Reads of one stored case without the [`Relay`]: head office's HTTP
//! reads of a case take no lock that sync holds. Storage is shared
//! between threads (sled is), so the reader sees every batch the relay has
//! applied; it loads the document from storage on each read, since the
//! relay's cache of loaded documents is its own.

use super::queries::view_with_fixes;
use super::*;

/// Reads a stored case: its owner record, view, audit and document.
#[derive(Clone)]
pub struct CaseReader<S> {
    storage: S,
}

impl<S: Storage> CaseReader<S> {
    /// A reader over the relay's storage.
    pub fn new(storage: S) -> Self {
        CaseReader { storage }
    }

    /// The relay's metadata for a case (owner, creator, last sequence).
    pub fn meta(&self, case: CaseId) -> Result<Option<CaseMeta>, StorageError> {
        queries::meta_in(&self.storage, case)
    }

    /// Head office's summary of a case as its last commit stored it.
    pub fn summary(
        &self,
        case: CaseId,
    ) -> Result<Option<super::summary::CaseSummary>, StorageError> {
        self.storage
            .get(&keys::summary(case))?
            .map(|b| serde_json::from_slice(&b).map_err(|e| corrupt("case summary", e)))
            .transpose()
    }

    /// The policy in force, as stored when it was published (the default
    /// before any publication).
    pub fn policy(&self) -> Result<crate::policy::Policy, StorageError> {
        match self.storage.get(keys::POLICY)? {
            Some(b) => {
                let json = String::from_utf8(b).map_err(|e| corrupt("policy", e))?;
                crate::policy::Policy::from_json(&json).map_err(|e| corrupt("policy", e))
            }
            None => Ok(crate::policy::Policy::default()),
        }
    }

    /// The case as plain data, as [`Relay::case_view`] shows it.
    pub fn case_view(&self, case: CaseId) -> Result<Option<CaseView>, StorageError> {
        let Some(meta) = self.meta(case)? else {
            return Ok(None);
        };
        let Some(loaded) = docs::load_doc(&self.storage, case)? else {
            return Ok(None);
        };
        let fixes = queries::clock_fixes_in(&self.storage, case)?;
        Ok(Some(view_with_fixes(
            &loaded.doc,
            case,
            &meta,
            &fixes,
            &self.policy()?,
            super::casekeys::key_in(&self.storage, case)?.as_ref(),
        )))
    }

    /// Every accepted change of the case with who sent it and when.
    pub fn audit(&self, case: CaseId) -> Result<Vec<(String, AuditRecord)>, StorageError> {
        queries::audit_in(&self.storage, case)
    }

    /// The standard Automerge binary of the case.
    pub fn doc_bytes(&self, case: CaseId) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(docs::load_doc(&self.storage, case)?.map(|l| l.doc.save()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    /// The reader shows what the relay shows, from storage alone, and
    /// nothing for a case the relay does not hold.
    #[test]
    fn reads_a_case_as_the_relay_shows_it() {
        let storage = MemoryStorage::new();
        let mut relay = crate::fuzzing::seeded_relay_over(storage.clone());
        let id = CaseId::from_bytes(crate::fuzzing::SEED_CASE);
        let reader = CaseReader::new(storage);
        let meta = reader.meta(id).unwrap();
        assert!(meta.is_some());
        assert_eq!(meta, relay.meta(id).unwrap());
        let view = reader.case_view(id).unwrap();
        assert!(view.as_ref().is_some_and(|v| !v.timeline.is_empty()));
        assert_eq!(view, relay.case_view(id).unwrap());
        let audit = reader.audit(id).unwrap();
        assert!(!audit.is_empty());
        assert_eq!(audit, relay.audit(id).unwrap());
        let heads = |b: Option<Vec<u8>>| b.map(|b| Automerge::load(&b).unwrap().get_heads());
        assert_eq!(
            heads(reader.doc_bytes(id).unwrap()),
            heads(relay.doc_bytes(id).unwrap())
        );
        assert_eq!(reader.policy().unwrap(), *relay.policy().0);
        let unknown = CaseId::from_bytes([9; 16]);
        assert!(reader.case_view(unknown).unwrap().is_none());
        assert!(reader.meta(unknown).unwrap().is_none());
        assert!(reader.doc_bytes(unknown).unwrap().is_none());
    }
}
