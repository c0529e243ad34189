// One block's sum in double, shared by the loss and reduction kernels: each thread's value
// goes into `shared` (blockDim.x doubles, a power of two), a tree adds them, and every thread
// gets the total. Deterministic: the tree's order depends only on the block size.
#pragma once

__device__ __forceinline__ double block_sum_double(double v, double* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads();
    return total;
}
