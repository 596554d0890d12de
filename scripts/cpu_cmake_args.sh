#!/usr/bin/env bash
# Print the CMake arguments for building llama.cpp on this CPU: its own SIMD features, AMX never.
#
# Why not -march=native: it turns on llama.cpp's AMX kernels on CPUs that have AMX, and those
# segfault on the first decode of Q4_K models (llama.cpp issue #20824). Both our
# llama-cpp-python wheel and the llama-server built for benchmarks use these flags, so the
# two are compared on the same kernels.
set -euo pipefail
args="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
case "$(uname -m)" in
  x86_64)
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    has() { [[ " $flags " == *" $1 "* ]]; }
    for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI \
                avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
      if has "${pair%%:*}"; then args="$args -DGGML_${pair#*:}=ON"; else args="$args -DGGML_${pair#*:}=OFF"; fi
    done
    args="$args -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    ;;
  *) args="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" ;;
esac
echo "$args"
