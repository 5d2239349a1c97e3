//! Helpers shared by the sync crate's integration tests.

use aftercase_sync::case::evidence::{attach, Evidence};
use aftercase_sync::case::EditContext;
use aftercase_sync::policy::Policy;
use aftercase_sync::CaseId;
use automerge::Automerge;

/// Records a photo on the case: a damage claim needs one before
/// `evidence_collected`.
pub fn add_photo(doc: &mut Automerge, id: CaseId, c: &EditContext) {
    attach(
        doc,
        id,
        c,
        &Policy::default(),
        &Evidence {
            kind: "photo".into(),
            hash: "ab".repeat(32),
            size: 1_000,
            media_type: "image/jpeg".into(),
            captured_at: 1_790_000_000_000,
            caption: None,
        },
    )
    .unwrap();
}
