// Element-wise kernels: activations (forward and backward), dropout, add / mul / scale.
// Layout: flat float32 arrays of n elements. Launch: 1D grid of 256-thread blocks with a
// grid-stride loop, so any grid size is correct. Outputs are overwritten.
// Launched by src/device/cuda/elementwise.rs; the CPU references are src/ops/elementwise/cpu.rs.

#include "activation.cuh"

extern "C" __global__ void activation_fwd_f32(const float* x, float* y, unsigned int n, int kind, float slope) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        y[i] = activate(x[i], kind, slope);
    }
}

// dx = dy * act'(x) (`activation_grad`: from x or y per activation, as PyTorch).
extern "C" __global__ void activation_bwd_f32(const float* dy, const float* x, const float* y, float* dx,
                                              unsigned int n, int kind, float slope) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        dx[i] = dy[i] * activation_grad(x[i], y[i], kind, slope);
    }
}

// SplitMix64's finaliser: the same counter-based draw as ops::elementwise::cpu::uniform_at.
__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ float uniform_at(unsigned long long seed, unsigned long long index) {
    unsigned long long z = mix64(seed + mix64(index + 0x9e3779b97f4a7c15ULL));
    return (float)(z >> 40) / (float)(1ULL << 24);
}

// Training-mode dropout: element i is dropped when uniform_at(seed, i) < p, the rest are
// scaled by 1 / (1 - p) (passed as `scale`). Applied to a gradient it is the backward pass.
extern "C" __global__ void dropout_f32(const float* x, float* y, unsigned int n, double p, float scale,
                                       unsigned long long seed) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        y[i] = ((double)uniform_at(seed, i) < p) ? 0.0f : x[i] * scale;
    }
}

// y = a + b (kind 0) or a * b (1), same length. Add's backward passes the gradient on
// unchanged; mul's is two muls.
#define BINARY_ADD 0
#define BINARY_MUL 1
extern "C" __global__ void binary_f32(const float* a, const float* b, float* y, unsigned int n, int kind) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = kind == BINARY_ADD ? a[i] + b[i] : a[i] * b[i];
}

// y = s * x (also scale's backward).
extern "C" __global__ void scale_f32(const float* x, float* y, unsigned int n, float s) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = s * x[i];
}
