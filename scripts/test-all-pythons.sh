#!/usr/bin/env bash
# The release check: the README's test command (scripts/test.sh) on every supported Python this
# machine has, each in its own environment (.venv-3.11, .venv-3.12, .venv-3.13), one after the other.
# Each run's output goes to test-output/python-3.X.log; a line per Python says how it went.
# Extra arguments go to pytest (e.g. -x, or -m "not browser"). LAB_START_METHOD=forkserver
# forces the start method that Python 3.14 makes the default.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-output
status=0
for version in 3.11 3.12 3.13; do
  log=test-output/python-$version.log
  started=$(date +%s)
  LAB_VENV=.venv-$version PYTHON=python$version bash scripts/test.sh "$@" >"$log" 2>&1
  code=$?
  seconds=$(( $(date +%s) - started ))
  last=$(grep -E "^=+ .*(passed|failed|error).* =+$" "$log" | tail -n 1 | tr -d '=' | xargs)
  if grep -q "does not run (not on PATH" "$log"; then
    echo "python$version: not installed here, skipped"
    continue
  fi
  echo "python$version: exit $code in ${seconds}s: ${last:-no pytest summary; see $log}"
  [ "$code" = 0 ] || status=1
done
exit $status
