//! Key names of the case document. Changing one is a schema migration.

/// Schema version stored in every case; readers refuse nothing but report it.
pub const SCHEMA_VERSION: i64 = 1;

/// Root keys.
pub mod root {
    pub const SCHEMA: &str = "schema";
    pub const ID: &str = "id";
    pub const CASE_NO: &str = "case_no";
    pub const KIND: &str = "kind";
    pub const STORE_ID: &str = "store_id";
    pub const CREATED_BY: &str = "created_by";
    pub const DEVICE_ID: &str = "device_id";
    pub const CREATED_AT: &str = "created_at";
    pub const CUSTOMER: &str = "customer";
    pub const ORDER: &str = "order";
    pub const ITEMS: &str = "items";
    pub const DESCRIPTION: &str = "description";
    pub const FIELDS: &str = "fields";
    pub const TIMELINE: &str = "timeline";
    pub const CONTACTS: &str = "contact_attempts";
    pub const TAGS: &str = "tags";
}

/// Keys of an entry of the timeline or of the contact attempts.
pub mod entry {
    pub const TYPE: &str = "type";
    pub const TEXT: &str = "text";
    pub const AUTHOR: &str = "author";
    pub const ROLE: &str = "role";
    pub const DEVICE: &str = "device";
    pub const AT: &str = "at";
    pub const CHANNEL: &str = "channel";
    pub const OUTCOME: &str = "outcome";
    pub const FIELD: &str = "field";
    pub const VALUE: &str = "value";
}
