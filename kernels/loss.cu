// Losses (L1, MSE, BCE-with-logits), mean-reduced, against a target tensor or a constant
// label. Forward: one partial sum per 256-thread block in double (a grid-stride loop per
// thread, then a shared-memory tree), summed on the host so the result does not depend on
// atomics' order. Backward: element-wise, outputs overwritten.
// Launched by src/device/cuda/loss.rs; the CPU references are src/ops/loss/cpu.rs.

#include "block_sum.cuh"

#define LOSS_L1 0
#define LOSS_MSE 1
#define LOSS_BCE 2
#define LOSS_THREADS 256

// The target of element i: the tensor's value, or the constant when `target` is null-sized.
__device__ __forceinline__ float target_at(const float* target, int has_target, float constant, long long i) {
    return has_target ? target[i] : constant;
}

__device__ __forceinline__ float element_loss(int kind, float p, float t) {
    float d = p - t;
    switch (kind) {
        case LOSS_L1: return fabsf(d);
        case LOSS_MSE: return d * d;
        default: return fmaxf(p, 0.0f) - p * t + log1pf(expf(-fabsf(p)));
    }
}

extern "C" __global__ void loss_partial_sums_f32(int kind, const float* pred, const float* target, int has_target,
                                                 float constant, long long n, double* partial) {
    __shared__ double shared[LOSS_THREADS];
    double acc = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        acc += element_loss(kind, pred[i], target_at(target, has_target, constant, i));
    }
    double total = block_sum_double(acc, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// dpred = scale * dloss/dpred and, when has_target and dtarget is not null (the target wants
// its gradient), dtarget = scale * dloss/dtarget, with scale = upstream gradient / n.
extern "C" __global__ void loss_backward_f32(int kind, const float* pred, const float* target, int has_target,
                                             float constant, long long n, float scale, float* dpred, float* dtarget) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float p = pred[i], t = target_at(target, has_target, constant, i), dp, dt;
        float d = p - t;
        switch (kind) {
            case LOSS_L1: dp = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f); dt = -dp; break;
            case LOSS_MSE: dp = 2.0f * d; dt = -2.0f * d; break;
            default: dp = 1.0f / (1.0f + expf(-p)) - t; dt = -p; break;
        }
        dpred[i] = dp * scale;
        if (has_target && dtarget) dtarget[i] = dt * scale;
    }
}
