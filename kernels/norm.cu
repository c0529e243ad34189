// Batch and instance normalisation, forward and backward, for N, C, spatial float32 tensors.
// Statistics are per group: per channel over batch and space (batch norm, `per_sample` 0)
// or per sample and channel over space (instance norm, `per_sample` 1). Outputs are
// overwritten. The activation that follows a norm in the networks is fused (`act`,
// ACT_NONE for none): apply writes act(norm), and the backward kernels take that output y
// and fold act'(y) into dy.
// Reductions (statistics, gradient sums): a group's elements, in its order (batch norm:
// sample by sample), are cut into parts of `part` elements, one 256-thread block per
// (group, part), grid (groups, parts). So a batch-1 instance norm of 64 channels fills the
// GPU with blocks instead of leaving it to 64 serial loops. Each part reduces in shared
// memory, two passes for the variance (as the CPU does; the second reads the part back
// from cache); with several parts a merge kernel combines them per group in part order, so
// results do not depend on scheduling. The element-wise kernels run a 2D grid-stride loop,
// planes along y, so a plane's statistics are read once per thread and nothing divides.
// Launched by src/device/cuda/norm.rs; the CPU references are src/ops/norm/cpu.rs.

#include "activation.cuh"

#define NORM_THREADS 256

// The gradient reaching the norm's output: dy through the fused activation (from its output).
__device__ __forceinline__ float norm_output_grad(const float* dy, const float* y, long long e, int act, float slope) {
    return act == ACT_NONE ? dy[e] : dy[e] * activation_grad(y[e], y[e], act, slope);
}

// Part blockIdx.y of group blockIdx.x: elements [begin, end) of the group's order, element
// j = sample * s + r at offset base + sample * sample_stride + r. A group is one run of s
// (instance norm) or n runs a plane of channels apart (batch norm); base is g * s either way.
// `pair`: the part's slot in an array of two floats per (group, part).
struct GroupPart {
    long long base, sample_stride;
    int s, begin, end, count, pair;
    __device__ GroupPart(int n, int c, int s_, int per_sample, int part)
        : base((long long)blockIdx.x * s_),
          sample_stride((long long)c * s_),
          s(s_),
          begin((int)blockIdx.y * part),
          end(min(begin + part, per_sample ? s_ : n * s_)),
          count(end - begin),
          pair(2 * (int)(blockIdx.x * gridDim.y + blockIdx.y)) {}
    // f(offset) for this thread's elements of the part, a run at a time.
    template <class F>
    __device__ void for_each(F f) const {
        for (int sample = begin / s; sample * s < end; ++sample) {
            const int r_end = min(end - sample * s, s);
            const long long at = base + sample * sample_stride;
            for (int r = max(begin - sample * s, 0) + (int)threadIdx.x; r < r_end; r += NORM_THREADS) f(at + r);
        }
    }
};

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

// A group's statistics from its mean and biased variance.
__device__ __forceinline__ void store_stats(int g, float m, float v, float eps, float* mean, float* var, float* invstd) {
    mean[g] = m;
    var[g] = v;
    invstd[g] = rsqrtf(v + eps);
}

// mean[g] and invstd[g] = 1 / sqrt(biased var + eps), also the biased variance in var[g].
// With one part the block stores them; with several it stores its part's mean and sum of
// squared deviations as the pair `parts[pair]` for norm_stats_merge_f32.
extern "C" __global__ void norm_stats_f32(const float* x, float* mean, float* var, float* invstd, float* parts,
                                          int n, int c, int s, int per_sample, int part, float eps) {
    __shared__ float shared[NORM_THREADS];
    const GroupPart gp(n, c, s, per_sample, part);
    float sum = 0.0f;
    gp.for_each([&](long long e) { sum += x[e]; });
    const float m = block_sum(sum, shared) / (float)gp.count;
    float sq = 0.0f;
    gp.for_each([&](long long e) {
        const float d = x[e] - m;
        sq += d * d;
    });
    const float m2 = block_sum(sq, shared);
    if (threadIdx.x != 0) return;
    if (gridDim.y == 1) {
        store_stats(blockIdx.x, m, m2 / (float)gp.count, eps, mean, var, invstd);
    } else {
        parts[gp.pair] = m;
        parts[gp.pair + 1] = m2;
    }
}

// Per group (one thread each, any 1D launch): the parts' means and sums of squared
// deviations merged in part order (Chan et al.'s pairwise update, in double), then stored as
// norm_stats_f32 stores one part's. Parts hold `part` elements but the last, of a group of len.
extern "C" __global__ void norm_stats_merge_f32(const float* parts, float* mean, float* var, float* invstd,
                                                int groups, int len, int part, int count, float eps) {
    for (int g = blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += gridDim.x * blockDim.x) {
        double n_a = 0.0, mean_a = 0.0, m2_a = 0.0;
        for (int p = 0; p < count; ++p) {
            const double n_b = min(part, len - p * part), mean_b = parts[2 * (g * count + p)];
            const double m2_b = parts[2 * (g * count + p) + 1], n = n_a + n_b, delta = mean_b - mean_a;
            mean_a += delta * n_b / n;
            m2_a += m2_b + delta * delta * n_a * n_b / n;
            n_a = n;
        }
        store_stats(g, (float)mean_a, (float)(m2_a / n_a), eps, mean, var, invstd);
    }
}

// y = act((x - mean) * invstd * gamma + beta). Null pointers stand for identity values: mean
// 0, invstd 1, gamma 1, beta 0 (with all four null, y = act(x); a conv bias is beta alone).
extern "C" __global__ void norm_apply_f32(const float* x, const float* mean, const float* invstd, const float* gamma,
                                          const float* beta, float* y, int n, int c, int s, int per_sample, int act,
                                          float slope) {
    for (int plane = blockIdx.y; plane < n * c; plane += gridDim.y) {
        const int ch = plane % c, g = per_sample ? plane : ch;
        const float m = mean ? mean[g] : 0.0f, shift = beta ? beta[ch] : 0.0f;
        const float scale = (invstd ? invstd[g] : 1.0f) * (gamma ? gamma[ch] : 1.0f);
        const long long at = (long long)plane * s;
        for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < s; r += gridDim.x * blockDim.x)
            y[at + r] = activate((x[at + r] - m) * scale + shift, act, slope);
    }
}

// Per group: sum(dz) and sum(dz * xhat), dz the gradient at the norm's output
// (`norm_output_grad`; y is only read with a fused activation), as the pair `sums[pair]`:
// the group's sums[2g], sums[2g + 1] with one part, else its part's, which
// norm_sums_merge_f32 adds. Null mean / invstd stand for 0 / 1, as in norm_apply_f32 (a conv
// bias's gradient is the first sum alone).
extern "C" __global__ void norm_grad_sums_f32(const float* dy, const float* y, const float* x, const float* mean,
                                              const float* invstd, float* sums, int n, int c, int s, int per_sample,
                                              int part, int act, float slope) {
    __shared__ float shared[NORM_THREADS];
    const GroupPart gp(n, c, s, per_sample, part);
    const int g = blockIdx.x;
    const float m = mean ? mean[g] : 0.0f, scale = invstd ? invstd[g] : 1.0f;
    float a = 0.0f, b = 0.0f;
    gp.for_each([&](long long e) {
        const float dz = norm_output_grad(dy, y, e, act, slope);
        a += dz;
        b += dz * (x[e] - m) * scale;
    });
    const float sa = block_sum(a, shared);
    const float sb = block_sum(b, shared);
    if (threadIdx.x == 0) {
        sums[gp.pair] = sa;
        sums[gp.pair + 1] = sb;
    }
}

// Per group (one thread each, any 1D launch): sums[2g + i] = the sum over its `count` parts,
// in part order, of the parts' pairs' element i.
extern "C" __global__ void norm_sums_merge_f32(const float* parts, float* sums, int groups, int count) {
    for (int g = blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += gridDim.x * blockDim.x) {
        float a = 0.0f, b = 0.0f;
        for (int p = 0; p < count; ++p) {
            a += parts[2 * (g * count + p)];
            b += parts[2 * (g * count + p) + 1];
        }
        sums[2 * g] = a;
        sums[2 * g + 1] = b;
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
// Planes along y as norm_apply_f32.
extern "C" __global__ void norm_backward_f32(const float* dy, const float* y, const float* x, const float* mean,
                                             const float* invstd, const float* gamma, const float* sums, float* dx,
                                             int n, int c, int s, int per_sample, int batch_stats, int act,
                                             float slope) {
    const float count = per_sample ? (float)s : (float)n * s;
    for (int plane = blockIdx.y; plane < n * c; plane += gridDim.y) {
        const int ch = plane % c, g = per_sample ? plane : ch;
        const float scale = invstd[g] * (gamma ? gamma[ch] : 1.0f);
        // The group's values, read and divided once a plane rather than per element (the
        // compiler cannot hoist them past the stores to dx), rounded as the CPU reference.
        const float mu = batch_stats ? mean[g] : 0.0f, inv = invstd[g];
        const float mean_dz = batch_stats ? sums[2 * g] / count : 0.0f,
                    mean_dz_xhat = batch_stats ? sums[2 * g + 1] / count : 0.0f;
        const long long at = (long long)plane * s;
        for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < s; r += gridDim.x * blockDim.x) {
            const long long i = at + r;
            const float dz = norm_output_grad(dy, y, i, act, slope);
            if (batch_stats) {
                const float xhat = (x[i] - mu) * inv;
                dx[i] = scale * (dz - mean_dz - xhat * mean_dz_xhat);
            } else {
                dx[i] = scale * dz;
            }
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
