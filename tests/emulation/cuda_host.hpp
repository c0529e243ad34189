// Runs CUDA kernels written with plain indexing, __shared__ memory and __syncthreads() on
// the host, so their logic is checked on machines without a GPU: one std::thread per CUDA
// thread, a block's __shared__ arrays as statics (one block runs at a time), __syncthreads()
// as a std::barrier. Not for kernels that use warp intrinsics or atomics.
#pragma once
#include <algorithm>
#include <barrier>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;

#define __syncthreads() block_barrier->arrive_and_wait()
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

using std::min;

// Runs `kernel` for every thread of every block of a launch with 1D blocks and a grid of up
// to three dimensions, block after block.
inline void launch(dim3 grid, unsigned threads, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = {threads, 1, 1};
    for (unsigned b = 0; b < grid.x * grid.y * grid.z; ++b) {
        blockIdx = {b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y)};
        std::barrier<> barrier(threads);
        block_barrier = &barrier;
        std::vector<std::thread> block;
        for (unsigned t = 0; t < threads; ++t)
            block.emplace_back([t, &kernel] {
                threadIdx = {t, 0, 0};
                kernel();
            });
        for (auto& thread : block) thread.join();
    }
}

// The drivers' file I/O: reads or writes exactly `bytes`, false otherwise.
inline bool io(FILE* f, void* p, size_t bytes, bool write) {
    return (write ? fwrite(p, 1, bytes, f) : fread(p, 1, bytes, f)) == bytes;
}
