// Reductions of a whole tensor to one value, and their backward. Sum: one partial sum per
// 256-thread block in double (a grid-stride loop per thread, then `block_sum_double`), added
// on the host, so the result does not depend on atomics' order; mean divides on the host.
// Backward: every element receives the same gradient (`fill_f32`).
// Launched by src/device/cuda/reduce.rs; the CPU references are src/ops/reduce.rs.
#include "block_sum.cuh"

#define REDUCE_THREADS 256

extern "C" __global__ void sum_partial_f32(const float* x, long long n, double* partial) {
    __shared__ double shared[REDUCE_THREADS];
    double acc = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        acc += x[i];
    double total = block_sum_double(acc, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

extern "C" __global__ void fill_f32(float* y, long long n, float v) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = v;
}
