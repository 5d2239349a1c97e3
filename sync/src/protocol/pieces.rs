//! Joining a case or sync message that arrives in [`Frame::Piece`]s, for
//! anything that receives from a relay (a device's session, a store relay's
//! link): in order, one kind and total per case, and at most
//! [`MAX_ASSEMBLED_BYTES`], so a peer cannot make the receiver hold more.
//!
//! [`Frame::Piece`]: super::Frame::Piece

use super::{PieceKind, SessionError};
use crate::ids::CaseId;
use std::collections::HashMap;

/// Most bytes joined from pieces for one case: far above any case the
/// relay's size limits let grow, and a bound on what a relay can make a
/// receiver hold.
pub const MAX_ASSEMBLED_BYTES: usize = 256 << 20;

/// A case or sync message arriving in pieces.
struct Assembly {
    kind: PieceKind,
    total: u32,
    next: u32,
    bytes: Vec<u8>,
}

/// The pieces received so far, per case.
#[derive(Default)]
pub struct Pieces {
    assembling: HashMap<CaseId, Assembly>,
}

impl Pieces {
    /// Takes piece `index` of `total` for `doc`; returns the joined bytes
    /// once the last piece is in. A piece out of order, of another kind or
    /// total than the first, or past the size bound drops the case's
    /// pieces and is an error.
    pub fn join(
        &mut self,
        doc: CaseId,
        kind: PieceKind,
        index: u32,
        total: u32,
        bytes: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        let bad = |what: &str| {
            SessionError::Protocol(format!("piece {index} of {total} for case {doc}: {what}"))
        };
        if index == 0 {
            self.assembling.insert(
                doc,
                Assembly {
                    kind,
                    total,
                    next: 0,
                    bytes: Vec::new(),
                },
            );
        }
        let a = self
            .assembling
            .get_mut(&doc)
            .ok_or_else(|| bad("no first piece"))?;
        if a.kind != kind || a.total != total || a.next != index || index >= total {
            self.assembling.remove(&doc);
            return Err(bad("out of order"));
        }
        if a.bytes.len() + bytes.len() > MAX_ASSEMBLED_BYTES {
            self.assembling.remove(&doc);
            return Err(bad("more than a device joins"));
        }
        a.bytes.extend_from_slice(&bytes);
        a.next += 1;
        if a.next < a.total {
            return Ok(None);
        }
        Ok(self.assembling.remove(&doc).map(|a| a.bytes))
    }

    /// Whether no case is half received.
    pub fn is_empty(&self) -> bool {
        self.assembling.is_empty()
    }
}
