#!/usr/bin/env bash
# Run the test suite under the CPU-kernel settings that change float32 rounding, one pytest run per setting.
#
# Why (issue 18): the numerical tolerances of the tests must hold on any x86-64 CPU, not only on the machine that
# wrote them. On an AVX-512 Xeon with MKL, test_beats failed (fbank 5.07e-05 > 1e-05): MKL dispatches its FFT (and
# its GEMMs) on the CPU at run time, and the log of the Kaldi fbank amplifies a few ulps of FFT difference in quiet mel
# bins. This script makes one machine imitate several: it forces
#   - MKL_ENABLE_INSTRUCTIONS=SSE4_2 / AVX2 / AVX512  (MKL's code path: FFT, sgemm; on CPUs where MKL does not take the
#     hint -- AMD ones -- these runs repeat the default path),
#   - ATEN_CPU_CAPABILITY=default / avx2               (PyTorch's own vectorised kernels: pow, log, softmax,
#     layer_norm, interpolate, randn, ...; "default" is the scalar build, the strongest change on any CPU),
# each with OMP_NUM_THREADS=1 and 2 (how reductions are split between threads; tests/conftest.py honours it),
# and prints one PASS / FAIL line per setting. A tolerance that only passes under some of them is not portable.
#
# Usage: tools/check_portability.sh [pytest args]     (default: the whole suite, `tests`)
#        tools/check_portability.sh tests/test_beats.py -s
# Environment: PYTHON (default python), LOG_DIR (default a new temporary directory; one log per setting).
# Exit status: 0 when every setting passes, 1 otherwise.

set -u

PYTHON=${PYTHON:-python}
if [ "$#" -eq 0 ]; then
    set -- tests
fi
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/check_portability.XXXXXX")}
mkdir -p "$LOG_DIR"

SETTINGS=(
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2"
    "MKL_ENABLE_INSTRUCTIONS=AVX2"
    "MKL_ENABLE_INSTRUCTIONS=AVX512"
    "ATEN_CPU_CAPABILITY=default"
    "ATEN_CPU_CAPABILITY=avx2"
)

failed=0
total_start=$SECONDS
for setting in "${SETTINGS[@]}"; do
    for threads in 1 2; do
        name="${setting}_OMP_NUM_THREADS=${threads}"
        log="$LOG_DIR/${name//=/-}.log"
        run=(env -u MKL_ENABLE_INSTRUCTIONS -u ATEN_CPU_CAPABILITY "$setting" "OMP_NUM_THREADS=$threads")
        aten=$("${run[@]}" "$PYTHON" -c "import torch; print(torch.backends.cpu.get_cpu_capability())" 2>/dev/null)
        start=$SECONDS
        "${run[@]}" "$PYTHON" -m pytest "$@" >"$log" 2>&1
        status=$?
        elapsed=$((SECONDS - start))
        summary=$(grep -E '[0-9]+ (passed|failed|error)' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
        if [ "$status" -eq 0 ]; then
            printf 'PASS  %-31s OMP_NUM_THREADS=%s  (ATen kernels: %s; %s)\n' \
                "$setting" "$threads" "${aten:-?}" "${summary:-$elapsed s}"
        else
            failed=1
            printf 'FAIL  %-31s OMP_NUM_THREADS=%s  (ATen kernels: %s; %s; pytest exit %d; log %s)\n' \
                "$setting" "$threads" "${aten:-?}" "${summary:-$elapsed s}" "$status" "$log"
            grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/      /'
        fi
    done
done

echo "logs: $LOG_DIR; total $((SECONDS - total_start)) s"
exit "$failed"
