//! The Aftercase client SDK: what a store tablet or a technician's phone
//! embeds, and the `aftercase` command line built on it.
//!
//! Typical workflow: [`DeviceConfig::init`] once with the relay's address and
//! the device token; then [`Device::open`] at every start. Edits
//! ([`Device::create_case`], [`Device::add_note`], ...) work offline and
//! return only once they are durable on the device. [`Device::sync_once`]
//! exchanges everything with the relay and returns when nothing is pending;
//! [`Device::run_live`] stays connected, receives other devices' changes as
//! they happen, pushes local edits at once and reconnects with backoff.

mod config;
mod device;
mod error;
mod live;
mod logging;
mod transport;

pub use config::{DeviceConfig, CONFIG_FILE};
pub use device::{library_version, BookingRequest, Device, SyncStatus};
pub use error::{ClientError, SyncError};
pub use live::{LiveEvent, Progress, SyncReport};

pub mod cli;
