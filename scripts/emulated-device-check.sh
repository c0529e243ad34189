#!/usr/bin/env bash
# The GPU code path on a machine without a GPU. Builds tests/emulation/fake_libcuda.cpp (the
# driver API calls mrgan makes, with every kernel of kernels/*.cu run by the host emulation)
# into target/fake-cuda/libcuda.so, puts it first on LD_LIBRARY_PATH, and runs with
# --features cuda, on that emulated device: the CUDA parity tests (every kernel against the
# CPU ops; device tensors, arenas, the image pool), the whole-network PyTorch goldens
# (model_golden: pix2pix, CycleGAN and 3D CycleGAN steps on the CPU and on the "GPU"), and
# the runs through the binary (runs, volumetric, torch_checkpoints: `--device auto` picks the
# emulated GPU, so training, bitwise resume, checkpoints, prediction from mrgan runs and from
# PyTorch .pth files, and eval go through the device path; the multi-minute real-data
# trainings are skipped).
# MRGAN_REQUIRE_GPU=1 makes a test fail, not skip, when the device does not open. Then a
# training on an emulated device of 1 MB must stop with a clear out-of-memory error, and a
# dry run must book the memory the full emulation does (it then prints the 3D CycleGAN's
# memory peaks at full size).
# Needs nvcc (the cuda feature's build) and a C++20 compiler ($CXX, default c++).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/target/fake-cuda"
mkdir -p "$dir"
"${CXX:-c++}" -std=c++20 -O2 -fPIC -shared -o "$dir/libcuda.so" tests/emulation/fake_libcuda.cpp
ln -sf libcuda.so "$dir/libcuda.so.1"
export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MRGAN_REQUIRE_GPU=1
# No PyTorch side in `bench volumetric --train` here (`false` as its Python: skipped, with
# the reason printed): torch would load the emulated libcuda too.
export MRGAN_PYTHON=false
cargo test --release --locked --features cuda --test cuda_parity --test model_golden \
  --test runs --test volumetric --test torch_checkpoints -- --test-threads 1 --skip real_data "$@"

# Out of device memory (the emulated device limited to 1 MB) is a clear error and exit
# code 1, not a crash.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/release/mrgan phantom --out "$tmp/data" --subjects 2 --size 32,32,16 > /dev/null
set +e
MRGAN_FAKE_CUDA_MEMORY=1000000 target/release/mrgan train --model pix2pix --data "$tmp/data" \
  --a t1 --b t2 --run "$tmp/run" --net-g unet_32 --ngf 8 --ndf 8 --min-foreground 1 --device cuda \
  > "$tmp/oom.txt" 2>&1
code=$?
set -e
if [ $code != 1 ] || ! grep -q "out of memory" "$tmp/oom.txt" || grep -q panicked "$tmp/oom.txt"; then
  echo "out-of-memory check: expected exit 1 with 'out of memory', got exit $code:" >&2
  cat "$tmp/oom.txt" >&2
  exit 1
fi
echo "out-of-memory check: exit 1, $(grep -o 'out of memory.*' "$tmp/oom.txt" | head -1)"

# A dry run (MRGAN_FAKE_CUDA_DRY=1: allocations booked, kernels and copies skipped) must
# book exactly the memory the full emulation does, here on a small 3D CycleGAN (about 50 s).
# Then the dry run gives the pool's peaks at the 3D CycleGAN's full size in seconds, where
# the full emulation would take hours and more host memory than this machine has.
small=(bench volumetric --device cuda --ngf 2 --patch 32,32,32 --train --batch 2)
target/release/mrgan "${small[@]}" 2>&1 | { grep peak || true; } > "$tmp/full.txt"
MRGAN_FAKE_CUDA_DRY=1 target/release/mrgan "${small[@]}" 2>&1 | { grep peak || true; } > "$tmp/dry.txt"
if [ ! -s "$tmp/full.txt" ] || ! diff "$tmp/full.txt" "$tmp/dry.txt" >&2; then
  echo "dry-run check: the dry run's memory peaks differ from the full emulation's (above)" >&2
  exit 1
fi
echo "dry-run check: the same memory peaks as the full emulation ($(tr '\n' ';' < "$tmp/dry.txt"))"
echo "3D CycleGAN at its defaults (ngf 64, 128x128x64), dry run standing in for a 132-multiprocessor H100 / H200:"
for batch in 1 2; do
  MRGAN_FAKE_CUDA_DRY=1 MRGAN_FAKE_CUDA_MEMORY=$((200 << 30)) MRGAN_FAKE_CUDA_MULTIPROCESSORS=132 \
    target/release/mrgan bench volumetric \
    --device cuda --train --batch $batch 2>&1 | grep peak | sed "s/^/  batch $batch: /"
done
