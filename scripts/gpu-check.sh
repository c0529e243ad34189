#!/usr/bin/env bash
# The GPU check, prepared on a machine without a GPU and run on one without Rust.
#
#   scripts/gpu-check.sh        builds the CUDA parity tests (--features cuda, needs nvcc)
#                               into .gpu-bundle/ (ignored by git) with a runner script;
#   .gpu-bundle/run.sh          on the GPU machine: runs every parity test, the
#                               whole-network PyTorch goldens on the GPU (model_golden),
#                               the demo on the GPU and on the CPU, `mrgan bench train`
#                               against PyTorch on the GPU, `mrgan bench kernels` and its
#                               cuDNN baseline
#                               (benches/torch_kernels.py, needs python3 with torch), writes
#                               the full logs, the CSVs and the GPU's description under
#                               .gpu-bundle/results (and, with $OUT set, an archive of them
#                               plus the main tables into $OUT) and prints short tables last. Every step runs under
#                               `timeout` (see run.sh) so one device call always returns.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=.gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle"
log=$(mktemp)
cargo test --release --locked --features cuda --test cuda_parity --test model_golden --no-run 2>&1 | tee "$log"
for test in cuda_parity model_golden; do
  exe=$(grep -o "target/release/deps/$test-[0-9a-f]*" "$log" | tail -1)
  [ -n "$exe" ] || { echo "gpu-check: could not find the $test test binary" >&2; exit 1; }
  cp "$exe" "$bundle/$test"
done
mkdir -p "$bundle/fixtures"
cp tests/fixtures/models.safetensors "$bundle/fixtures/"
cargo build --release --locked --features cuda --bin mrgan
cp target/release/mrgan "$bundle/mrgan"
cp benches/torch_kernels.py benches/torch_reference.py "$bundle/"
cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the bundled CUDA parity tests; see scripts/gpu-check.sh.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Results go to results/ beside this script; with $OUT set (the device tool brings back at
# most eight files from it) they also go there as one archive (without the demos' volumes
# and checkpoints) plus the tables read first.
out="$here/results"
rm -rf "$out"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
# Built on another machine: say so at once if the binaries cannot start here.
"$here/mrgan" --version >> "$out/gpu.txt" 2>&1 || ldd "$here/mrgan" >> "$out/gpu.txt" 2>&1
# The whole script fits one device call: every step's timeout is its own (MRGAN_*_TIMEOUT)
# or what is left of MRGAN_TOTAL_SECONDS (default 560), whichever is shorter; once time is
# up, each remaining step is cut off at once (exit 124, reported as cut off).
start=$(date +%s)
within() {  # within SECONDS: the timeout for the next step, at least 1 (0 would mean none)
  local left=$(( ${MRGAN_TOTAL_SECONDS:-560} - ($(date +%s) - start) ))
  [ "$left" -lt 1 ] && left=1
  [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}
# On a GPU machine a test that cannot open the GPU fails rather than skips.
export MRGAN_REQUIRE_GPU=1
timeout "$(within ${MRGAN_PARITY_TIMEOUT:-240})" "$here/cuda_parity" --nocapture --test-threads 1 \
  > "$out/cuda_parity.txt" 2>&1
rc=$?
[ $rc = 124 ] && echo "cuda_parity: cut off after ${MRGAN_PARITY_TIMEOUT:-240} s" >> "$out/cuda_parity.txt"
echo "== GPU"
cat "$out/gpu.txt"
echo "== CUDA parity: the largest error of each test vs the CPU op (every case: cuda_parity.txt)"
awk '/^test .* \.\.\. /{t=$2} /skipped|no GPU/{print t": "$0}
     /max abs error/{e=$NF+0; if (e>m[t]) m[t]=e; seen[t]=1}
     END{for (t in seen) printf "%s: largest max abs error %.2e\n", t, m[t]}' "$out/cuda_parity.txt" | sort
grep -E "panicked|^test result" -A2 "$out/cuda_parity.txt"
# Whole networks on the GPU (skip with MRGAN_SKIP_NETWORKS=1, e.g. for a second call that
# only times kernels): one pix2pix, CycleGAN and 3D CycleGAN step against PyTorch's
# goldens, then the demo trained on each device, a training iteration against PyTorch and
# the 3D CycleGAN's costs.
golden_rc=0
if [ "${MRGAN_SKIP_NETWORKS:-0}" != 1 ]; then
MRGAN_FIXTURES="$here/fixtures" timeout "$(within ${MRGAN_GOLDEN_TIMEOUT:-120})" "$here/model_golden" \
  --nocapture --test-threads 1 > "$out/model_golden.txt" 2>&1
golden_rc=$?
echo "== whole-network goldens (model_golden.txt): devices, then results"
grep -E " on |no GPU|panicked|^test result" "$out/model_golden.txt" | sort | uniq -c
for dev in cuda cpu; do
  ( cd "$out" && timeout "$(within ${MRGAN_DEMO_TIMEOUT:-120})" "$here/mrgan" demo --device $dev \
      --epochs 2 --decay 0 --out "$out/demo-$dev" > "$out/demo-$dev.txt" 2>&1 )
  echo "== demo on $dev (exit $?): $(grep -E '^pix2pix prediction|^[0-9]+ s;' "$out/demo-$dev.txt" | tr '\n' ' ')"
done
# One pix2pix iteration (unet_256, batch 1 and 4) against PyTorch on the same GPU, then
# batch 1 again with the conv launches autotuned (the warm-up step times the candidates).
for run in "1" "4" "1 --autotune"; do
  name="bench-train-b${run// --/-}"
  MRGAN_TORCH_REFERENCE="$here/torch_reference.py" \
    timeout "$(within ${MRGAN_TRAIN_TIMEOUT:-120})" "$here/mrgan" bench train --device cuda --batch $run \
    --python python3 > "$out/$name.txt" 2>&1
  echo "== bench train batch $run (exit $?)"
  cat "$out/$name.txt"
done
# One CycleGAN iteration at BraTS's slice size (240 x 240), against PyTorch; then autotuned
# (its 18 residual-block convs may take Winograd's transform), without PyTorch again
# (`false` stands in for a Python without torch).
for tuned in "" "-autotune"; do
  args="--python python3"
  [ -n "$tuned" ] && args="--autotune --python false"
  MRGAN_TORCH_REFERENCE="$here/torch_reference.py" \
    timeout "$(within ${MRGAN_TRAIN_TIMEOUT:-120})" "$here/mrgan" bench train --device cuda --model cyclegan \
    --size 240 $args > "$out/bench-train-cyclegan-240$tuned.txt" 2>&1
  echo "== bench train CycleGAN 240 x 240 batch 1 $args (exit $?)"
  cat "$out/bench-train-cyclegan-240$tuned.txt"
done
# The 3D CycleGAN at its defaults (ngf 64, 128x128x64 patches): prediction cost of a
# 240x240x155 volume (one window times 100; with batch 1 also the whole volume end to end)
# and one training step at batch 1 and 2 (the issue's size; the dry run on the emulated
# device books 30.8 GiB at batch 2), each with the device memory it peaks at, and
# PyTorch's step on the same GPU with its memory peak.
for batch in 1 2; do
  whole=""
  [ $batch = 1 ] && whole="--whole-volume"
  MRGAN_TORCH_REFERENCE="$here/torch_reference.py" \
    timeout "$(within ${MRGAN_VOLUMETRIC_TIMEOUT:-180})" "$here/mrgan" bench volumetric --device cuda --train \
    --batch $batch $whole --python python3 > "$out/bench-volumetric-b$batch.txt" 2>&1
  echo "== bench volumetric batch $batch (exit $?)"
  cat "$out/bench-volumetric-b$batch.txt"
done
fi
[ $golden_rc = 0 ] || rc=$golden_rc
# Kernel timings (a few minutes): skip with MRGAN_SKIP_BENCH=1, shorten with
# MRGAN_BENCH_ARGS="--batch 1".
if [ "${MRGAN_SKIP_BENCH:-0}" != 1 ]; then
  timeout "$(within ${MRGAN_BENCH_TIMEOUT:-300})" "$here/mrgan" bench kernels ${MRGAN_BENCH_ARGS:-} \
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
  # The floor's layer (and at 240 x 240), the one-channel ends (tiled against thin), the
  # PatchGAN's fourth wgrad (rows of 31 and 29: K tiles that cross rows), norms, Adam.
  sed '/^\(split sweep\|floor:\)/,$d' "$out/kernels.txt" |
    grep -E "gemm|block \(x18\)|resnet_9blocks (stem|head) (fprop|dgrad|wgrad)(-tiled|-thin)? |c4 wgrad|norm|adam"
  echo "== the CUDA issue's floor, and the K-split sweep on its shape"
  sed -n '/^\(split sweep\|floor:\)/,$p' "$out/kernels.txt"
  # The same primitives on cuDNN, same GPU, same run (MRGAN_TORCH_TIMEOUT seconds).
  if [ -s "$out/kernels.csv" ]; then
    timeout "$(within ${MRGAN_TORCH_TIMEOUT:-150})" python3 "$here/torch_kernels.py" "$out/kernels.csv" \
      --csv "$out/torch_kernels.csv" > "$out/torch_kernels.txt" 2>&1
    echo "== mrgan vs cuDNN (exit $?; full table: $out/torch_kernels.txt)"
    head -1 "$out/torch_kernels.txt"
    # The residual block's three passes ("any shape": Winograd's where faster); its wgrad is
    # cuDNN's largest lead.
    grep -E "block \(x18\) +(fprop|dgrad|wgrad)" "$out/torch_kernels.txt"
    sed -n '/^Whole network/,$p' "$out/torch_kernels.txt"
  fi
fi
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu-check-results.tar.gz" --exclude='*.nii.gz' --exclude='*.safetensors' -C "$here" results
  for table in gpu.txt cuda_parity.txt kernels.txt torch_kernels.txt; do
    [ -f "$out/$table" ] && cp "$out/$table" "$OUT/"
  done
fi
exit $rc
RUN
chmod +x "$bundle/run.sh"
echo "gpu-check: bundle ready in $bundle/ ($(du -sh "$bundle" | cut -f1)); on a GPU machine run $bundle/run.sh"
