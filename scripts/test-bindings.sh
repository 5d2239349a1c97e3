#!/usr/bin/env bash
# The SDK's bindings as an app sees them: builds the `aftercase-ffi` shared
# library (debug profile, shared with the tests' build), generates uniffi's
# Python module from it with the workspace's own uniffi-bindgen (the same
# generator makes the Kotlin and Swift sources), and runs
# client-sdk/bindings-test/story.py against the real relay and CLI.
# Python's binding uses only ctypes: no pip packages. Exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is required for the bindings test" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --quiet -p aftercase-ffi -p aftercase-server -p aftercase-cli
lib="$target/debug/libaftercase_ffi.so"
[[ "$(uname)" == Darwin ]] && lib="$target/debug/libaftercase_ffi.dylib"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$target/debug/uniffi-bindgen" generate "$lib" --language python --out-dir "$out" --no-format >/dev/null
cp "$lib" "$out/"
python3 client-sdk/bindings-test/story.py "$out" "$target/debug"
