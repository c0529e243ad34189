// Batch and instance normalisation, forward and backward, for N, C, spatial float32 tensors.
// Statistics are per group: per channel over batch and space (batch norm, `per_sample` 0)
// or per sample and channel over space (instance norm, `per_sample` 1). One 256-thread block
// per group reduces in shared memory (two passes for the variance, as the CPU does); the
// element-wise kernels use grid-stride loops. Outputs are overwritten. The activation that
// follows a norm in the networks is fused (`act`, ACT_NONE for none): apply writes act(norm),
// and the backward kernels take that output y and fold act'(y) into dy.
// Launched by src/device/cuda/norm.rs; the CPU references are src/ops/norm/cpu.rs.

#include "activation.cuh"

#define NORM_THREADS 256

// The gradient reaching the norm's output: dy through the fused activation (from its output).
__device__ __forceinline__ float norm_output_grad(const float* dy, const float* y, long long e, int act, float slope) {
    return act == ACT_NONE ? dy[e] : dy[e] * activation_grad(y[e], y[e], act, slope);
}

// Element `j` of group `g`: its offset in the N, C, S tensor.
__device__ __forceinline__ long long group_elem(int g, long long j, int n, int c, int s, int per_sample) {
    if (per_sample) return (long long)g * s + j;
    long long b = j / s;
    return (b * c + g) * s + (j % s);
}

__device__ float block_sum(float v, float* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int stride = NORM_THREADS / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    float total = shared[0];
    __syncthreads();
    return total;
}

// mean[g] and invstd[g] = 1 / sqrt(biased var + eps), also the biased variance in var[g].
extern "C" __global__ void norm_stats_f32(const float* x, float* mean, float* var, float* invstd,
                                          int n, int c, int s, int per_sample, float eps) {
    __shared__ float shared[NORM_THREADS];
    int g = blockIdx.x;
    long long len = per_sample ? s : (long long)n * s;
    float sum = 0.0f;
    for (long long j = threadIdx.x; j < len; j += NORM_THREADS) sum += x[group_elem(g, j, n, c, s, per_sample)];
    float m = block_sum(sum, shared) / (float)len;
    float sq = 0.0f;
    for (long long j = threadIdx.x; j < len; j += NORM_THREADS) {
        float d = x[group_elem(g, j, n, c, s, per_sample)] - m;
        sq += d * d;
    }
    float v = block_sum(sq, shared) / (float)len;
    if (threadIdx.x == 0) {
        mean[g] = m;
        var[g] = v;
        invstd[g] = rsqrtf(v + eps);
    }
}

// y = act((x - mean) * invstd * gamma + beta). Null pointers stand for identity values: mean
// 0, invstd 1, gamma 1, beta 0 (with all four null, y = act(x); a conv bias is beta alone).
extern "C" __global__ void norm_apply_f32(const float* x, const float* mean, const float* invstd, const float* gamma,
                                          const float* beta, float* y, int n, int c, int s, int per_sample, int act,
                                          float slope) {
    long long total = (long long)n * c * s;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long plane = i / s;
        int ch = plane % c;
        int g = per_sample ? (int)plane : ch;
        float scale = (invstd ? invstd[g] : 1.0f) * (gamma ? gamma[ch] : 1.0f);
        y[i] = activate((x[i] - (mean ? mean[g] : 0.0f)) * scale + (beta ? beta[ch] : 0.0f), act, slope);
    }
}

// Per group: sums[2g] = sum(dz), sums[2g + 1] = sum(dz * xhat), dz the gradient at the norm's
// output (`norm_output_grad`; y is only read with a fused activation). Null mean / invstd
// stand for 0 / 1, as in norm_apply_f32 (a conv bias's gradient is sums[2g] alone).
extern "C" __global__ void norm_grad_sums_f32(const float* dy, const float* y, const float* x, const float* mean,
                                              const float* invstd, float* sums, int n, int c, int s, int per_sample,
                                              int act, float slope) {
    __shared__ float shared[NORM_THREADS];
    int g = blockIdx.x;
    long long len = per_sample ? s : (long long)n * s;
    float a = 0.0f, b = 0.0f;
    for (long long j = threadIdx.x; j < len; j += NORM_THREADS) {
        long long e = group_elem(g, j, n, c, s, per_sample);
        float dz = norm_output_grad(dy, y, e, act, slope);
        a += dz;
        b += dz * (x[e] - (mean ? mean[g] : 0.0f)) * (invstd ? invstd[g] : 1.0f);
    }
    float sa = block_sum(a, shared);
    float sb = block_sum(b, shared);
    if (threadIdx.x == 0) {
        sums[2 * g] = sa;
        sums[2 * g + 1] = sb;
    }
}

// Per channel: dbeta[ch] = the sum of sums[2g] and dgamma[ch] = the sum of sums[2g + 1] over
// the channel's groups (itself for batch norm; g = sample * c + ch for instance norm, summed
// in sample order). One thread per channel.
extern "C" __global__ void norm_channel_sums_f32(const float* sums, float* dgamma, float* dbeta, int n, int c,
                                                 int per_sample) {
    for (int ch = blockIdx.x * blockDim.x + threadIdx.x; ch < c; ch += gridDim.x * blockDim.x) {
        float g = 0.0f, b = 0.0f;
        for (int sample = 0; sample < (per_sample ? n : 1); ++sample) {
            int group = sample * c + ch;
            b += sums[2 * group];
            g += sums[2 * group + 1];
        }
        dgamma[ch] = g;
        dbeta[ch] = b;
    }
}

// dx = scale * (dz - mean(dz) - xhat * mean(dz * xhat)) with batch statistics, or scale * dz
// with fixed (running) statistics; scale = invstd * gamma, dz as in norm_grad_sums_f32.
extern "C" __global__ void norm_backward_f32(const float* dy, const float* y, const float* x, const float* mean,
                                             const float* invstd, const float* gamma, const float* sums, float* dx,
                                             int n, int c, int s, int per_sample, int batch_stats, int act,
                                             float slope) {
    long long total = (long long)n * c * s;
    float count = per_sample ? (float)s : (float)n * s;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long plane = i / s;
        int ch = plane % c;
        int g = per_sample ? (int)plane : ch;
        float scale = invstd[g] * (gamma ? gamma[ch] : 1.0f);
        float dz = norm_output_grad(dy, y, i, act, slope);
        if (batch_stats) {
            float xhat = (x[i] - mean[g]) * invstd[g];
            dx[i] = scale * (dz - sums[2 * g] / count - xhat * sums[2 * g + 1] / count);
        } else {
            dx[i] = scale * dz;
        }
    }
}

// Batch norm's running statistics, one launch per call: running = (1 - m) running + m batch
// for the mean, and with the batch variance unbiased, (1 - m) running + (m batch) unbias.
// Each product and sum is rounded on its own (__fmul_rn, __fadd_rn), as the CPU's separate
// scale and add do, so both devices keep the same bits. Writes new arrays; one thread per
// channel.
extern "C" __global__ void running_stats_f32(const float* mean, const float* var, const float* batch_mean,
                                             const float* batch_var, float* new_mean, float* new_var, int c,
                                             float momentum, float unbias) {
    float keep = 1.0f - momentum;
    for (int ch = blockIdx.x * blockDim.x + threadIdx.x; ch < c; ch += gridDim.x * blockDim.x) {
        new_mean[ch] = __fadd_rn(__fmul_rn(mean[ch], keep), __fmul_rn(batch_mean[ch], momentum));
        new_var[ch] = __fadd_rn(__fmul_rn(var[ch], keep), __fmul_rn(__fmul_rn(batch_var[ch], momentum), unbias));
    }
}
