//! The after-sales case as an Automerge document.
//!
//! A case is created with [`edit::create_case`] and changed only through the
//! typed edits in [`edit`]; [`view::CaseView`] reads it back. The document
//! layout (see [`schema`]) keeps every list that two devices may append to
//! concurrently as a map keyed by a random id, so offline appends never clash.

pub mod blob;
pub mod booking;
pub mod edit;
pub mod evidence;
pub mod exif;
mod kind;
pub mod offer;
pub mod read;
pub mod schema;
pub mod seal;
pub mod service;
pub mod table;
pub mod transition;
pub mod view;

pub use edit::{CaseField, ContactChannel, EditContext, EditError, NewCase};
pub use kind::{CaseKind, UnknownKind};
pub use view::{
    CaseView, ConflictView, ContactView, CustomerView, ItemView, OfferView, TimelineEntry,
};
