//! Any bytes from the network: decoding must return a frame or an error,
//! never panic, and a decoded frame must re-encode to the same bytes.
#![no_main]

use aftercase_sync::protocol::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let again = Frame::decode(&frame.encode()).expect("re-encoded frame decodes");
        assert_eq!(again, frame);
    }
});
