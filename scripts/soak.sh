#!/usr/bin/env bash
# The long proof, kept out of scripts/test.sh (hours on 2 cores): the
# seeded simulations over many more seeds than CI's 200 (each on one relay
# node and on two, plus the booking simulation), then the fuzz targets on
# the stable toolchain over many more inputs than CI's 256 each.
#
#   scripts/soak.sh [SEEDS] [FUZZ_CASES]      # defaults: 10000 100000
#
# A failing plan is saved under target/sim-plans/ and the failure names the
# file: replay it with AFTERCASE_SIM_PLAN=FILE cargo test -p aftercase-tests
# --test simulation. A failing fuzz input is printed by proptest.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-10000}"
cases="${2:-100000}"
started=$(date +%s)
echo "soak: $seeds seeds per simulation, $cases fuzz inputs per target ($(date -u +%FT%TZ))"
AFTERCASE_SIM_SEEDS="$seeds" cargo test --locked -p aftercase-tests \
    --test simulation --test booking_simulation -- --test-threads 2
AFTERCASE_FUZZ_CASES="$cases" cargo test --locked -p aftercase-sync --test fuzz_targets
echo "soak: passed in $(( $(date +%s) - started )) s"
