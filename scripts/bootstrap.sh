#!/usr/bin/env bash
# Create .venv and install the pinned requirements: `bootstrap.sh` for running the server,
# `bootstrap.sh dev` adds the test, lint and type-check tools. Safe to run again.
# `bootstrap.sh --stale` (for the Makefile) succeeds when .venv is set up but its
# llama-cpp-python was built with other CPU flags than this machine and LLAMA_CPU_FEATURES ask for.
set -euo pipefail
cd "$(dirname "$0")/.."
flags_file=.venv/.llama-cpp-flags # the wheelhouse key of the llama-cpp-python .venv holds
if [ "${1:-}" = "--stale" ]; then
  [ -e .venv/.runtime ] && [ "$(cat "$flags_file" 2>/dev/null)" != "$(bash scripts/llama_wheel.sh --key)" ]
  exit
fi
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
  echo "bootstrap: Python 3.11 or newer is required ($python is $("$python" --version 2>&1))." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
wheelhouse=$(bash scripts/llama_wheel.sh .venv/bin/pip)
# pip keeps an installed llama-cpp-python of the pinned version whatever flags built it, so a
# wheel for other flags (another LLAMA_CPU_FEATURES, another CPU) replaces it explicitly.
if [ "$(cat "$flags_file" 2>/dev/null)" != "$(basename "$wheelhouse")" ]; then
  rm -f "$flags_file"
  echo "Installing llama-cpp-python from $wheelhouse ..." >&2
  .venv/bin/pip install --quiet --progress-bar off --force-reinstall --no-deps "$wheelhouse"/llama_cpp_python-*.whl
fi
requirements=(-r requirements.txt)
[ "${1:-}" = "dev" ] && requirements+=(-r requirements-dev.txt)
echo "Installing pinned requirements into .venv ..." >&2
.venv/bin/pip install --quiet --progress-bar off --only-binary=llama-cpp-python --find-links "$wheelhouse" "${requirements[@]}"
basename "$wheelhouse" >"$flags_file"
