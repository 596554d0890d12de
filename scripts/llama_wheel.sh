#!/usr/bin/env bash
# Build (once per machine and CPU feature set) the pinned llama-cpp-python wheel and print the
# folder that holds it, for `pip install --find-links`. `llama_wheel.sh --key` prints only the
# folder's key (a hash of the version, the machine and the CMake arguments), building nothing.
#
# Why not a plain `pip install`: its native build turns on llama.cpp's AMX kernels, which
# segfault here (see cpu_cmake_args.sh). We pass the CPU's own SIMD features explicitly (or those
# LLAMA_CPU_FEATURES chooses) and key the wheelhouse by them, so that pip's own cache can never
# hand back a wheel built otherwise.
set -euo pipefail
pip_bin=${1:?usage: llama_wheel.sh PATH/TO/pip | llama_wheel.sh --key}
version=$(sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' "$(dirname "$0")/../requirements.txt")
[ -n "$version" ] || { echo "llama_wheel.sh: no llama-cpp-python pin in requirements.txt" >&2; exit 1; }

args=$("$(dirname "$0")/cpu_cmake_args.sh")

key=$(printf '%s %s %s' "$version" "$(uname -m)" "$args" | sha256sum | cut -c1-16)
if [ "$pip_bin" = --key ]; then
  echo "$key"
  exit 0
fi
house="${LLAMA_WHEELHOUSE:-$HOME/.cache/inference-server/wheels}/$key"
if ! ls "$house"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  mkdir -p "$house"
  echo "Building llama-cpp-python $version from source (about 5 minutes on 2 cores)..." >&2
  echo "  CMAKE_ARGS=$args" >&2
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$pip_bin" wheel --no-deps --no-cache-dir --progress-bar off -w "$house.tmp" "llama-cpp-python==$version" >&2
  mv "$house.tmp"/llama_cpp_python-*.whl "$house"/ && rmdir "$house.tmp"
fi
echo "$house"
