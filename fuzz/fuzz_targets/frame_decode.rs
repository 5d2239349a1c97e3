//! Any bytes from the network: decoding must return a frame or an error,
//! never panic, and a decoded frame must re-encode to the same bytes.
#![no_main]

use aftercase_sync::fuzzing::frame_decode_roundtrips;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frame_decode_roundtrips(data);
});
