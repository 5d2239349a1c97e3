#!/usr/bin/env bash
# Runs the fuzz targets for a while each. Needs cargo-fuzz (installed here if
# missing); the stable toolchain is allowed nightly flags via RUSTC_BOOTSTRAP.
# Crashing inputs land in fuzz/artifacts/; commit them: the test suite
# replays every kept input (sync/tests/hostile_input.rs).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in frame_decode relay_frames judge_changes strip_location; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds"
done
