#!/usr/bin/env bash
# make bench: runs every Google Benchmark program in BUILD/bin (bench_*), with JSON copies in out/bench/.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$repo/build}"
mkdir -p "$repo/out/bench"
status=0
for b in "$build"/bin/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  echo "== $name"
  "$b" --benchmark_out="$repo/out/bench/$name.json" --benchmark_out_format=json || status=1
done
exit $status
