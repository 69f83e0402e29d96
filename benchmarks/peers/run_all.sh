#!/usr/bin/env bash
# Runs every peer comparison in benchmarks/peers/ (each *.py with /usr/bin/python3, each *.sh with bash; this
# script excepted), prints their output, then a summary. `make bench-peers` calls it. The scripts get no arguments:
# the build directory (absolute) is in the environment as QUANTSIM_BUILD_DIR, the repository as QUANTSIM_SOURCE_DIR.
# One failing script is tolerated (reported, exit 0), so one broken peer does not hide the others; two or more fail
# the run.
#   benchmarks/peers/run_all.sh BUILD_DIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-}"
if [ -z "$build" ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build="$(cd "$build" 2>/dev/null && pwd)" || { echo "run_all.sh: build directory '$1' does not exist" >&2; exit 2; }
PY="${PY:-/usr/bin/python3}"
export QUANTSIM_BUILD_DIR="$build"
export QUANTSIM_SOURCE_DIR="$(cd "$here/../.." && pwd)"

shopt -s nullglob
scripts=()
for f in "$here"/*.py "$here"/*.sh; do
  [ "$(basename "$f")" = "run_all.sh" ] && continue
  scripts+=("$f")
done
if [ "${#scripts[@]}" -eq 0 ]; then
  echo "run_all.sh: no peer scripts in $here" >&2
  exit 1
fi

failed=()
summary=()
for f in "${scripts[@]}"; do
  name="$(basename "$f")"
  echo "=== $name ==="
  start=$(date +%s)
  case "$f" in
    *.py) "$PY" "$f" </dev/null ;;
    *.sh) bash "$f" </dev/null ;;
  esac
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then
    summary+=("ok      $name (${secs}s)")
  else
    summary+=("FAILED  $name (exit $rc, ${secs}s)")
    failed+=("$name")
  fi
  echo
done

echo "=== peer benchmarks: ${#scripts[@]} run, ${#failed[@]} failed ==="
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 1 ]; then
  exit 1
fi
exit 0
