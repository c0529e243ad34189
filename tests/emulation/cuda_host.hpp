// Runs CUDA kernels written with plain indexing, __shared__ memory and __syncthreads() on
// the host, so their logic is checked on machines without a GPU. A block's threads are
// fibers (ucontext) on the calling thread: each runs until its next __syncthreads(), then
// the next one runs; when all have arrived, the next round starts. Rounds alternate the
// threads' order (0..n-1, then n-1..0), so a read that a missing barrier leaves unordered
// against a write sees the wrong value in one of them. __shared__ arrays are statics (one
// block runs at a time). Not for kernels that use warp intrinsics or atomics.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emulation {
// The fibers of the block that is running.
struct Block {
    static constexpr size_t STACK = 64 * 1024;
    std::vector<ucontext_t> fiber;
    std::vector<std::unique_ptr<char[]>> stack;
    std::vector<char> done;
    ucontext_t scheduler;
    unsigned current = 0;
    const std::function<void()>* kernel = nullptr;
};
inline Block block;

inline void fiber_main() {
    (*block.kernel)();
    block.done[block.current] = 1;  // returning resumes the scheduler (uc_link)
}

inline void sync_threads() { swapcontext(&block.fiber[block.current], &block.scheduler); }
}  // namespace emulation

#define __syncthreads() emulation::sync_threads()
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

using std::min;

// Runs `kernel` for every thread of every block of a launch with 1D blocks and a grid of up
// to three dimensions, block after block.
inline void launch(dim3 grid, unsigned threads, const std::function<void()>& kernel) {
    using emulation::block;
    gridDim = grid;
    blockDim = {threads, 1, 1};
    block.kernel = &kernel;
    block.fiber.resize(threads);
    block.done.assign(threads, 0);
    while (block.stack.size() < threads) block.stack.emplace_back(new char[emulation::Block::STACK]);
    for (unsigned b = 0; b < grid.x * grid.y * grid.z; ++b) {
        blockIdx = {b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y)};
        for (unsigned t = 0; t < threads; ++t) {
            ucontext_t& f = block.fiber[t];
            getcontext(&f);
            f.uc_stack.ss_sp = block.stack[t].get();
            f.uc_stack.ss_size = emulation::Block::STACK;
            f.uc_link = &block.scheduler;
            makecontext(&f, emulation::fiber_main, 0);
            block.done[t] = 0;
        }
        for (bool forward = true, running = true; running; forward = !forward) {
            running = false;
            for (unsigned i = 0; i < threads; ++i) {
                unsigned t = forward ? i : threads - 1 - i;
                if (block.done[t]) continue;
                block.current = t;
                threadIdx = {t, 0, 0};
                swapcontext(&block.scheduler, &block.fiber[t]);
                running |= !block.done[t];
            }
        }
    }
}

// The drivers' file I/O: reads or writes exactly `bytes`, false otherwise.
inline bool io(FILE* f, void* p, size_t bytes, bool write) {
    return (write ? fwrite(p, 1, bytes, f) : fread(p, 1, bytes, f)) == bytes;
}
