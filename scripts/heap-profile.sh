#!/usr/bin/env bash
# The relay's heap during the relay-memory benchmark, by heaptrack: which
# code holds the memory at the peak, and the heap over time.
#   scripts/heap-profile.sh [OUT_DIR]     (default /tmp/aftercase-heap)
# Builds the relay without its `mimalloc` feature (heaptrack sees only
# malloc) into target/heap, runs `bench --only memory` with the first relay
# it starts (the default memory bound) under heaptrack, and stops after that
# pass. The seeded data is kept in OUT_DIR/data and reused by the next run
# (BENCH_MEMORY_DATA), since seeding 100,000 cases takes minutes.
# Installs heaptrack from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-/tmp/aftercase-heap}")"
mkdir -p "$out/bin"
if ! command -v heaptrack >/dev/null; then
  apt-get install -y heaptrack >/dev/null
fi
target="${CARGO_TARGET_DIR:-target}/heap"
cargo build --quiet --locked --release --target-dir "$target" \
  -p aftercase-server --no-default-features --bins
cargo build --quiet --locked --release --target-dir "$target" -p aftercase-tests --bin bench
cp "$target/release/bench" "$out/bin/bench"
cp "$target/release/aftercase-relay" "$out/bin/relay-real"
rm -f "$out/once" "$out/relay.zst"
# The harness starts the `aftercase-relay` beside it and reads its URL from
# the first line of its output: the wrapper runs the first `serve` under
# heaptrack and passes only that line on.
cat >"$out/bin/aftercase-relay" <<EOF
#!/usr/bin/env bash
if [ "\$1" = serve ] && [ ! -e "$out/once" ]; then
  touch "$out/once"
  heaptrack -o "$out/relay" "$out/bin/relay-real" "\$@" | grep --line-buffered 'http://'
  exit
fi
exec "$out/bin/relay-real" "\$@"
EOF
chmod +x "$out/bin/aftercase-relay"
# The harness's RSS lines show the wrapper's, not the relay's: read the
# heap from the profile.
stop() {
  pkill -f "$out/bin/bench" || true
  pkill -INT -f "$out/bin/relay-real serve" || true
}
BENCH_MEMORY_DATA="$out/data" "$out/bin/bench" --only memory 2>&1 |
  while IFS= read -r line; do
    printf '%s\n' "$line"
    # The second pass (no eviction) is not profiled: stop the run there.
    if [[ "$line" == *"with no bound"* ]]; then
      stop
      break
    fi
  done || true
stop
# heaptrack writes its file once the relay has exited.
for _ in $(seq 60); do
  pgrep -f "heaptrack -o $out/relay" >/dev/null || break
  sleep 1
done
profile="$out/relay.zst"
echo "profile: $profile"
heaptrack_print -f "$profile" 2>/dev/null | grep -E '^(peak heap|peak RSS|total runtime)'
echo "heap over time (MiB, the highest in each 10 s):"
heaptrack_print -f "$profile" -M "$out/massif.out" >/dev/null 2>&1
grep -E '^(time|mem_heap_B)=' "$out/massif.out" | paste - - |
  awk -F'[=\t]' '{t=int($2/10); m=$4/1048576; if (m>max[t]) max[t]=m} END {for (k in max) printf "%4d s %6.0f\n", k*10, max[k]}' |
  sort -n
echo "read it with: heaptrack_print -f $profile | less   (or heaptrack_gui)"
