//! The Aftercase client SDK: what a store tablet or a technician's phone
//! embeds (the `aftercase` command line, crate `aftercase-cli`, is built on
//! it).
//!
//! Typical workflow: [`Device::init`] once with the relay's address and
//! the device token; then [`Device::open`] at every start. Edits
//! ([`Device::create_case`], [`Device::add_note`], ...) work offline and
//! return only once they are durable on the device. [`Device::sync_once`]
//! exchanges everything with the relay and returns when nothing is pending;
//! [`Device::run_live`] stays connected, receives other devices' changes as
//! they happen, pushes local edits at once and reconnects with backoff;
//! [`Device::start_live`] runs it on a thread of its own with a handle to
//! stop it (what an app's UI uses).
//!
//! Every error has a stable snake_case [`ClientError::code`] /
//! [`SyncError::code`] for the app to translate; a refusal by the relay
//! carries the relay's own code. Apps in Kotlin or Swift use the bindings
//! of the `aftercase-ffi` crate (`client-sdk/ffi`), built on this one.

mod config;
mod device;
mod error;
mod live;
mod live_sync;
mod transport;

pub use config::{DeviceConfig, CONFIG_FILE};
pub use device::{library_version, BookingRequest, Device, SyncStatus};
pub use error::{ClientError, SyncError};
pub use live::{LiveEvent, Progress, SyncReport};
pub use live_sync::LiveSync;
