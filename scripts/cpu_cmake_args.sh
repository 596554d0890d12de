#!/usr/bin/env bash
# Print the CMake arguments for building llama.cpp on this CPU: its own SIMD features, AMX never.
#
# Why not -march=native: it turns on llama.cpp's AMX kernels on CPUs that have AMX, and those
# segfault on the first decode of Q4_K models (llama.cpp issue #20824). Both our
# llama-cpp-python wheel and the llama-server built for benchmarks use these flags, so the
# two are compared on the same kernels.
#
# LLAMA_CPU_FEATURES chooses the kernels:
#   native (the default)  every SIMD feature this CPU has (AMX excepted);
#   avx2                  at most AVX2 (x86-64-v3: AVX, AVX2, FMA, F16C, BMI2): AVX-512 and its
#                         extensions, AVX-VNNI and AMX off, as on AMD EPYC before Zen 4 and
#                         Intel before Ice Lake. It lets a machine with AVX-512 build and test
#                         the kernels such CPUs run (their floating-point results differ).
set -euo pipefail
features=${LLAMA_CPU_FEATURES:-native}
case "$features" in
  native | avx2) ;;
  *)
    echo "cpu_cmake_args.sh: LLAMA_CPU_FEATURES='$features' is not one of: native (this CPU's own features, the default), avx2 (at most AVX2, no AVX-512)." >&2
    exit 1
    ;;
esac
args="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
case "$(uname -m)" in
  x86_64)
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    has() { [[ " $flags " == *" $1 "* ]]; }
    if [ "$features" = avx2 ] && ! has avx2; then
      echo "cpu_cmake_args.sh: LLAMA_CPU_FEATURES=avx2 needs a CPU with AVX2, and this one has none; leave LLAMA_CPU_FEATURES unset." >&2
      exit 1
    fi
    for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI \
                avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
      flag=${pair%%:*} option=${pair#*:}
      if has "$flag" && { [ "$features" = native ] || [[ "$flag" != avx512* && "$flag" != avx_vnni ]]; }; then
        args="$args -DGGML_$option=ON"
      else
        args="$args -DGGML_$option=OFF"
      fi
    done
    args="$args -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    ;;
  *)
    if [ "$features" != native ]; then
      echo "cpu_cmake_args.sh: LLAMA_CPU_FEATURES=$features is for x86_64 CPUs, and this one is $(uname -m); leave LLAMA_CPU_FEATURES unset." >&2
      exit 1
    fi
    args="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
    ;;
esac
echo "$args"
