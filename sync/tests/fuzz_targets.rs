//! The four fuzz targets (`fuzz/fuzz_targets/`) on the stable toolchain, so
//! every CI run exercises them: each runs on inputs mutated from the
//! inputs the fuzzers kept (`fuzz/corpus/<target>`): bytes flipped,
//! ranges cut, repeated or spliced from another kept input, and on plain
//! random bytes. Without coverage guidance this finds less than
//! `scripts/fuzz.sh` (nightly, libFuzzer), but it finds it on every
//! change. Cases per target: `AFTERCASE_FUZZ_CASES` (default 256;
//! `scripts/soak.sh` runs many more). A failure prints the input's seed
//! for proptest to replay.

use aftercase_sync::fuzzing::{
    frame_decode_roundtrips, judge_accepts_arbitrary_changes, relay_accepts_arbitrary_frames,
    strip_location_holds,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The inputs a fuzzer kept for `target`.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for sub in ["corpus", "artifacts"] {
        if let Ok(entries) = std::fs::read_dir(root.join(sub).join(target)) {
            for e in entries.flatten() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    out.push(bytes);
                }
            }
        }
    }
    out.sort();
    out
}

/// One mutation of an input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Cut {
        at: usize,
        len: usize,
    },
    Repeat {
        at: usize,
        len: usize,
    },
    Splice {
        other: usize,
        at: usize,
        from: usize,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    prop_oneof![
        (pos, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (
            pos,
            prop_oneof![Just(0u8), Just(0xff), Just(0x7f), Just(0x80), any::<u8>()]
        )
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (pos, 1usize..64).prop_map(|(at, len)| Mutation::Cut { at, len }),
        (pos, 1usize..64).prop_map(|(at, len)| Mutation::Repeat { at, len }),
        (any::<usize>(), pos, any::<usize>(), 1usize..256).prop_map(|(other, at, from, len)| {
            Mutation::Splice {
                other,
                at,
                from,
                len,
            }
        }),
    ]
}

fn apply(input: &mut Vec<u8>, m: &Mutation, kept: &[Vec<u8>]) {
    let n = input.len();
    match *m {
        Mutation::Flip { at, bit } if n > 0 => input[at % n] ^= 1 << bit,
        Mutation::Set { at, byte } if n > 0 => input[at % n] = byte,
        Mutation::Cut { at, len } if n > 0 => {
            let at = at % n;
            let end = (at + len).min(n);
            input.drain(at..end);
        }
        Mutation::Repeat { at, len } if n > 0 => {
            let at = at % n;
            let end = (at + len).min(n);
            let piece: Vec<u8> = input[at..end].to_vec();
            let tail = input.split_off(end);
            input.extend_from_slice(&piece);
            input.extend_from_slice(&tail);
        }
        Mutation::Splice {
            other,
            at,
            from,
            len,
        } if !kept.is_empty() => {
            let src = &kept[other % kept.len()];
            if src.is_empty() {
                return;
            }
            let from = from % src.len();
            let end = (from + len).min(src.len());
            let at = if n == 0 { 0 } else { at % n };
            let tail = input.split_off(at);
            input.extend_from_slice(&src[from..end]);
            input.extend_from_slice(&tail);
        }
        _ => {}
    }
}

/// A kept input with a few mutations, or random bytes.
fn input(kept: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let n = kept.len();
    let mutated =
        (0..n.max(1), proptest::collection::vec(mutation(), 1..6)).prop_map(move |(i, ms)| {
            let mut data = kept.get(i).cloned().unwrap_or_default();
            for m in &ms {
                apply(&mut data, m, &kept);
            }
            data
        });
    let random = proptest::collection::vec(any::<u8>(), 0..1024);
    if n == 0 {
        return random.boxed();
    }
    prop_oneof![4 => mutated, 1 => random].boxed()
}

fn cases() -> u32 {
    std::env::var("AFTERCASE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn fuzz(target: &str, check: fn(&[u8])) {
    // A target without kept inputs (judge_changes builds its changes from
    // the bytes it is given) runs on random bytes alone.
    let kept = corpus(target);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&input(kept), |data| {
        check(&data);
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz target {target}: {e}");
    }
}

#[test]
fn frame_decode() {
    fuzz("frame_decode", frame_decode_roundtrips);
}

#[test]
fn relay_frames() {
    fuzz("relay_frames", relay_accepts_arbitrary_frames);
}

#[test]
fn judge_changes() {
    fuzz("judge_changes", judge_accepts_arbitrary_changes);
}

#[test]
fn strip_location() {
    fuzz("strip_location", strip_location_holds);
}
