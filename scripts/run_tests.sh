#!/usr/bin/env bash
# Run the test suite; "no tests collected" (pytest's exit code 5) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
# The settings refuse to start without SECRET_KEY when DEBUG is off, as in production.
export SECRET_KEY="${SECRET_KEY:-test-suite-only-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}"
.venv/bin/python manage.py prepare_models
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; failing." >&2
  exit 1
fi
exit "$status"
