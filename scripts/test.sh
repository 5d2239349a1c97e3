#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the
# workspace (unit, property, simulation and end-to-end tests of the real
# binaries on loopback, and the dashboard in a headless Chromium), then
# the Python story of the SDK's bindings (scripts/test-bindings.sh). Needs
# the Rust toolchain; installs Chromium and chromedriver from Debian's
# packages when they are missing (scripts/install-browser.sh), and
# PostgreSQL 15 for the storage backends' tests (scripts/install-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/install-browser.sh
scripts/install-postgres.sh
cargo test --workspace --locked
# The SDK's uniffi bindings as an app sees them (Python stands in for
# Kotlin and Swift): reuses the debug build above.
scripts/test-bindings.sh
