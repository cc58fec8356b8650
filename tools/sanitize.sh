#!/usr/bin/env bash
# ASan + UBSan build of fastnn (core, CPU kernels at every ISA level, the emulated CUDA module)
# and a test run under it. docs/RELIABILITY.md explains the choices.
#
#   tools/sanitize.sh                        build, then run the CI subset (SANITIZE_TESTS below)
#   tools/sanitize.sh tests                  the whole suite (by hand: ~10x slower than normal)
#   tools/sanitize.sh tests/test_conv.py -k grad    any pytest arguments
#   tools/sanitize.sh --leaks [pytest args]  LeakSanitizer too (detect_leaks=1), in processes that
#                                            cannot import torch (FASTNN_TEST_NO_TORCH=1: tests that
#                                            need it skip); tools/lsan.supp: CPython's memory only
#   tools/sanitize.sh --leaks-torch [args]   LeakSanitizer with torch importable: tools/lsan.supp
#                                            plus tools/lsan_torch.supp (each entry justified there)
#   tools/sanitize.sh --no-build ...         reuse the build as it is
#   tools/sanitize.sh --ci                   what CI runs (.ci/run): the binding glue uninstrumented
#                                            at -O0 (cmake -DFASTNN_SANITIZE_BINDINGS=OFF; the
#                                            kernels, core and emulator are instrumented) and the
#                                            CI subset; prints the build and test times
# Environment: FASTNN_SANITIZE (default address,undefined), FASTNN_SANITIZE_BUILD (default
# build-asan), CCACHE_* as for any build. Exit status: pytest's; any sanitizer report fails the
# run (UBSan aborts on its first report, ASan on its first error, LSan at exit).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${FASTNN_SANITIZE_BUILD:-build-asan}"
sanitizers="${FASTNN_SANITIZE:-address,undefined}"
leaks=0
do_build=1
bindings=ON
while [ $# -gt 0 ]; do
  case "$1" in
    --leaks) leaks=1; export FASTNN_TEST_NO_TORCH=1; shift ;;
    --leaks-torch) leaks=2; shift ;;
    --no-build) do_build=0; shift ;;
    --ci) bindings=OFF; shift ;;
    *) break ;;
  esac
done
# The CI subset: every public op (forward and backward kernels of every family) on the CPU at each
# SIMD level and on the emulated CUDA device in four thread orders, and whole training runs
# (test_determinism); ops and training steps from several threads (test_concurrency); the CUDA
# emulator itself (fiber switching, faults and exceptions inside kernels) and the tensor core.
SANITIZE_TESTS=(tests/test_determinism.py tests/test_concurrency.py tests/test_cuda_emulator.py
                tests/test_tensor.py)
# Deselected under ASan: the emulator's fiber stack-overflow test (the overflow fault is handled on
# the emulator's alternate signal stack; ASan's runtime exits with status 1 without a report there).
if [ $# -eq 0 ]; then set -- "${SANITIZE_TESTS[@]}" -k "not stack_overflow"; fi

if [ "$do_build" = 1 ]; then
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  t0=$(date +%s)
  cmake -S . -B "$build" -G Ninja -DFASTNN_BUILD_MODE=cpu -DFASTNN_SANITIZE="$sanitizers" \
        -DFASTNN_SANITIZE_BINDINGS="$bindings" "${launcher[@]}" >/dev/null
  cmake --build "$build" -j"${FASTNN_SANITIZE_JOBS:-2}"
  echo "sanitize.sh: build took $(( $(date +%s) - t0 )) s"
fi

cxx="$(grep -E '^CMAKE_CXX_COMPILER:' "$build/CMakeCache.txt" | cut -d= -f2)"
preload=""
case "$sanitizers" in
  # libstdc++ right after the runtime: python is not linked with it, and ASan's __cxa_throw
  # interceptor must find the real function at start-up (else the first C++ throw aborts with
  # "CHECK failed: ... real___cxa_throw").
  *address*) preload="$("${cxx:-g++}" -print-file-name=libasan.so) $("${cxx:-g++}" -print-file-name=libstdc++.so)" ;;
esac
if [ -n "$preload" ] && [ ! -e "${preload%% *}" ]; then
  echo "sanitize.sh: libasan not found ($preload)" >&2
  exit 2
fi

# Python was not built with ASan: the runtime must be the first library loaded (LD_PRELOAD).
# - detect_leaks=0 for ordinary runs: CPython keeps much of its memory until exit by design.
# - allow_user_segv_handler=1: the emulator turns a fault inside a kernel into a Python error
#   (tests check that); ASan must let it install its handler.
# - PYTHONMALLOC=malloc: Python objects come from malloc too, so ASan sees their bounds.
# - The caching allocators keep freed tensor blocks for reuse: a use-after-free of a cached
#   block is invisible to ASan (an overflow past a block's end is not).
# - allocator_may_return_null=1: a request too large for memory returns NULL as with glibc, so
#   fastnn raises its documented MemoryError (tests/test_memory.py) instead of ASan aborting.
# - log_path: reports go to files (pytest captures fd 2, and a report that kills the process
#   would be lost with the capture); they are printed and counted below.
reports_dir="$(mktemp -d)"
asan_opts="detect_leaks=$(( leaks > 0 )):allow_user_segv_handler=1:handle_segv=1:halt_on_error=1:abort_on_error=0"
# - use_sigaltstack=0: the emulator installs its own alternate signal stack per launching thread
#   (for its fault handler); ASan would otherwise try to unmap that one as its own at thread exit.
asan_opts="$asan_opts:allocator_may_return_null=1:log_path=$reports_dir/asan:use_sigaltstack=0"
asan_opts="$asan_opts:detect_odr_violation=0:strict_init_order=1:check_initialization_order=1"
supp="$(mktemp)"
if [ "$leaks" = 1 ]; then cp tools/lsan.supp "$supp"; fi
if [ "$leaks" = 2 ]; then cat tools/lsan.supp tools/lsan_torch.supp > "$supp"; fi
if [ "$leaks" != 0 ]; then
  # print_suppressions=1: the run's log shows which suppression matched how many leaks.
  export LSAN_OPTIONS="suppressions=$supp:print_suppressions=1:report_objects=0"
fi
export ASAN_OPTIONS="$asan_opts${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports_dir/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONMALLOC=malloc
export FASTNN_CUDA_EMULATE=1
# Small memory-test budgets: ASan's bookkeeping makes RSS noisy and every call slower.
export FASTNN_MEMORY_CALLS="${FASTNN_MEMORY_CALLS:-200}" FASTNN_MEMORY_SECONDS="${FASTNN_MEMORY_SECONDS:-1}"
# ASan's quarantine holds freed blocks before reuse: RSS grows by MiBs over 200 calls without a leak
# (seen: 4.4-8.8 MiB); tests/test_memory.py's live-bytes check and LSan (--leaks) are the leak checks here.
export FASTNN_MEMORY_RSS_SLACK_MIB="${FASTNN_MEMORY_RSS_SLACK_MIB:-64}"
log="$(mktemp)"
echo "sanitize.sh: LD_PRELOAD=$preload ASAN_OPTIONS=$ASAN_OPTIONS"
t0=$(date +%s)
set +e
LD_PRELOAD="$preload" PYTHONPATH="$build/python" python -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if compgen -G "$reports_dir/*" >/dev/null; then cat "$reports_dir"/* | tee -a "$log"; fi
reports=$(grep -cE '^(==[0-9]+==ERROR: |SUMMARY: (Address|Undefined|Leak)Sanitizer)|runtime error: ' "$log" || true)
rm -rf "$reports_dir" "$supp"
echo "sanitize.sh: tests took $(( $(date +%s) - t0 )) s; sanitizer reports: $reports; pytest exit code $rc"
rm -f "$log"
if [ "$reports" != 0 ] && [ "$rc" = 0 ]; then rc=1; fi
exit "$rc"
