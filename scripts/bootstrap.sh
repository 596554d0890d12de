#!/usr/bin/env bash
# Create .venv and install the pinned requirements: `bootstrap.sh` for running the server,
# `bootstrap.sh dev` adds the test, lint and type-check tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
  echo "bootstrap: Python 3.11 or newer is required ($python is $("$python" --version 2>&1))." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
wheelhouse=$(bash scripts/llama_wheel.sh .venv/bin/pip)
requirements=(-r requirements.txt)
[ "${1:-}" = "dev" ] && requirements+=(-r requirements-dev.txt)
echo "Installing pinned requirements into .venv ..." >&2
.venv/bin/pip install --quiet --progress-bar off --only-binary=llama-cpp-python --find-links "$wheelhouse" "${requirements[@]}"
