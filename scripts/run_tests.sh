#!/usr/bin/env bash
# Run the test suite; "no tests collected" (pytest's exit code 5) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; failing." >&2
  exit 1
fi
exit "$status"
