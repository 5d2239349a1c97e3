#!/usr/bin/env bash
# Benchmarks, kept out of the test suite. Prints one markdown table:
# scenario, our figure, the baseline's figure, ratio.
#   scripts/bench.sh           full sizes, release build (what BENCHMARKS.md records)
#   scripts/bench.sh --quick   small sizes, the test build profile (CI smoke check)
# Extra arguments go to the harness, e.g.
# `--only sync|writes|memory|edge|fanout|validate|attacks|headoffice|evidence|baseline`
# (`--only fanout-replicas`: the fan-out load from full replicas, only when named;
# with `--only fanout`, `--fanout-stores N` sizes it and `--fanout-no-push` has the
# devices refuse pushed changes, so every delivery is a sync message;
# `--fanout-postgres` puts the relay's cases in PostgreSQL, a private cluster on
# the relay's CPU: run scripts/install-postgres.sh first; with it, `--fanout-relays N`
# runs N relays on the one database, each store's devices spread over them, figures
# summed over the relays).
# Builds into $CARGO_TARGET_DIR when it is set, else ./target.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
if [[ "${1:-}" == "--quick" ]]; then
  # The relay scenarios start the real relay binary, built beside the harness.
  cargo build --quiet --locked -p aftercase-server -p aftercase-tests --bins
  exec "$target/debug/bench" "$@"
else
  cargo build --quiet --locked --release -p aftercase-server -p aftercase-tests --bins
  exec "$target/release/bench" "$@"
fi
