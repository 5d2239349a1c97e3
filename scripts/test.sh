#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the
# workspace (unit, property, simulation and end-to-end tests of the real
# binaries on loopback). Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
