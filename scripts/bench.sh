#!/usr/bin/env bash
# Benchmarks, kept out of the test suite. Prints one markdown table:
# scenario, our figure, the baseline's figure (per-document Automerge sync,
# as automerge-repo-style peers do), ratio.
#   scripts/bench.sh           full sizes, release build (what BENCHMARKS.md records)
#   scripts/bench.sh --quick   small sizes, the test build profile (CI smoke check)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--quick" ]]; then
  cargo run --quiet --locked -p aftercase-tests --bin bench -- --quick
else
  cargo run --quiet --locked --release -p aftercase-tests --bin bench
fi
