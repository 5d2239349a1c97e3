//! A connection that sends arbitrary bytes: the relay core must answer or
//! close with an error, never panic, and never keep a half-applied change.
#![no_main]

use aftercase_sync::fuzzing::relay_accepts_arbitrary_frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    relay_accepts_arbitrary_frames(data);
});
