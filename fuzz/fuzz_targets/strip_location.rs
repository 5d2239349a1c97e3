//! Any bytes as a photo: removing location metadata must never panic, must
//! keep a JPEG's length, and a second pass must find nothing more to remove.
#![no_main]

use aftercase_sync::fuzzing::strip_location_holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strip_location_holds(data);
});
