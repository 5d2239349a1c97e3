//! Arbitrary change bytes uploaded by a clerk of the case's own store: the
//! relay's judge must never panic, and whatever it accepts must leave the
//! fixed fields and every recorded entry of the case untouched.
#![no_main]

use aftercase_sync::fuzzing::judge_accepts_arbitrary_changes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    judge_accepts_arbitrary_changes(data);
});
