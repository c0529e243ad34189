#!/usr/bin/env bash
# The GPU check, prepared on a machine without a GPU and run on one without Rust.
#
#   scripts/gpu-check.sh        builds the CUDA parity tests (--features cuda, needs nvcc)
#                               into .gpu-bundle/ (ignored by git) with a runner script;
#   .gpu-bundle/run.sh          on the GPU machine: runs every parity test,
#                               `mrgan bench kernels` and its cuDNN baseline
#                               (benches/torch_kernels.py, needs python3 with torch), writes
#                               the full logs, the CSVs and the GPU's description under $OUT
#                               (default .gpu-bundle/results) and prints short tables last. Every step runs under
#                               `timeout` (see run.sh) so one device call always returns.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=.gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle"
log=$(mktemp)
cargo test --release --locked --features cuda --test cuda_parity --no-run 2>&1 | tee "$log"
exe=$(grep -o 'target/release/deps/cuda_parity-[0-9a-f]*' "$log" | tail -1)
[ -n "$exe" ] || { echo "gpu-check: could not find the cuda_parity test binary" >&2; exit 1; }
cp "$exe" "$bundle/cuda_parity"
cargo build --release --locked --features cuda --bin mrgan
cp target/release/mrgan "$bundle/mrgan"
cp benches/torch_kernels.py "$bundle/torch_kernels.py"
cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the bundled CUDA parity tests; see scripts/gpu-check.sh.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
# Built on another machine: say so at once if the binaries cannot start here.
"$here/mrgan" --version >> "$out/gpu.txt" 2>&1 || ldd "$here/mrgan" >> "$out/gpu.txt" 2>&1
# Each step is bounded so that one call on a 15-minute device lease always returns a
# table: MRGAN_PARITY_TIMEOUT / MRGAN_BENCH_TIMEOUT seconds (exit 124 marks a step cut off).
timeout "${MRGAN_PARITY_TIMEOUT:-240}" "$here/cuda_parity" --nocapture --test-threads 1 \
  > "$out/cuda_parity.txt" 2>&1
rc=$?
[ $rc = 124 ] && echo "cuda_parity: cut off after ${MRGAN_PARITY_TIMEOUT:-240} s" >> "$out/cuda_parity.txt"
echo "== GPU"
cat "$out/gpu.txt"
echo "== CUDA parity: the largest error of each test vs the CPU op (every case: cuda_parity.txt)"
awk '/^test .* \.\.\. /{t=$2} /skipped/{print t": "$0}
     /max abs error/{e=$NF+0; if (e>m[t]) m[t]=e; seen[t]=1}
     END{for (t in seen) printf "%s: largest max abs error %.2e\n", t, m[t]}' "$out/cuda_parity.txt" | sort
grep -E "panicked|^test result" -A2 "$out/cuda_parity.txt"
# Kernel timings (a few minutes): skip with MRGAN_SKIP_BENCH=1, shorten with
# MRGAN_BENCH_ARGS="--batch 1".
if [ "${MRGAN_SKIP_BENCH:-0}" != 1 ]; then
  timeout "${MRGAN_BENCH_TIMEOUT:-300}" "$here/mrgan" bench kernels ${MRGAN_BENCH_ARGS:-} \
    --csv "$out/kernels.csv" > "$out/kernels.txt" 2> "$out/kernels.log"
  bench_rc=$?
  if [ $bench_rc = 124 ]; then
    echo "bench kernels: cut off after ${MRGAN_BENCH_TIMEOUT:-300} s; rows so far in kernels.log:"
    tail -5 "$out/kernels.log"
  elif [ $bench_rc != 0 ]; then
    echo "bench kernels: failed (exit $bench_rc):"
    tail -5 "$out/kernels.log"
  fi
  echo "== kernels (full table: $out/kernels.txt)"
  head -3 "$out/kernels.txt"
  grep -E "gemm|block \(x18\)|norm|adam" "$out/kernels.txt"
  # The same primitives on cuDNN, same GPU, same run (MRGAN_TORCH_TIMEOUT seconds).
  if [ -s "$out/kernels.csv" ]; then
    timeout "${MRGAN_TORCH_TIMEOUT:-150}" python3 "$here/torch_kernels.py" "$out/kernels.csv" \
      --csv "$out/torch_kernels.csv" > "$out/torch_kernels.txt" 2>&1
    echo "== mrgan vs cuDNN (exit $?; full table: $out/torch_kernels.txt)"
    head -1 "$out/torch_kernels.txt"
    sed -n '/^Whole network/,$p' "$out/torch_kernels.txt"
  fi
fi
exit $rc
RUN
chmod +x "$bundle/run.sh"
echo "gpu-check: bundle ready in $bundle/ ($(du -sh "$bundle" | cut -f1)); on a GPU machine run $bundle/run.sh"
