// Zero, reflection and replication padding of the last three axes of [planes, d, h, w]
// float32 tensors (2D uses d = 1 with no depth padding). Forward: one thread per output
// element gathers its source. Backward: one thread per input element gathers every output
// element that read it (no atomics, deterministic). Outputs are overwritten. Planes along
// the grid's y, a plane's elements along x (any grid: both loop), so that the index
// arithmetic within a plane is 32-bit.
// Launched by src/device/cuda/pad.rs; the CPU references are src/ops/pad/cpu.rs.

#include "pad.cuh"

struct PadParams {
    int planes;
    int in[3];
    int before[3];
    int after[3];
    int mode;
};
static_assert(sizeof(PadParams) == 44, "PadParams must match the Rust struct");

extern "C" __global__ void pad_fwd_f32(PadParams g, const float* x, float* y) {
    const int od = g.in[0] + g.before[0] + g.after[0], oh = g.in[1] + g.before[1] + g.after[1],
              ow = g.in[2] + g.before[2] + g.after[2];
    const int in_sp = g.in[0] * g.in[1] * g.in[2], out_sp = od * oh * ow;
    for (int p = blockIdx.y; p < g.planes; p += gridDim.y) {
        const float* src = x + (long long)p * in_sp;
        float* dst = y + (long long)p * out_sp;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < out_sp; i += gridDim.x * blockDim.x) {
            const int sz = pad_source(i / (ow * oh), g.in[0], g.before[0], g.mode),
                      sy = pad_source(i / ow % oh, g.in[1], g.before[1], g.mode),
                      sx = pad_source(i % ow, g.in[2], g.before[2], g.mode);
            dst[i] = (sz < 0 || sy < 0 || sx < 0) ? 0.0f : src[(sz * g.in[1] + sy) * g.in[2] + sx];
        }
    }
}

extern "C" __global__ void pad_bwd_f32(PadParams g, const float* dy, float* dx) {
    const int od = g.in[0] + g.before[0] + g.after[0], oh = g.in[1] + g.before[1] + g.after[1],
              ow = g.in[2] + g.before[2] + g.after[2];
    const int in_sp = g.in[0] * g.in[1] * g.in[2], out_sp = od * oh * ow;
    // Outputs that read input index i lie within 2 * max(before, after) of i + before
    // (mirror images of i are 2i or 2(n - 1 - i) away, edge copies at most a pad away).
    const int span_z = 2 * max(g.before[0], g.after[0]), span_y = 2 * max(g.before[1], g.after[1]),
              span_x = 2 * max(g.before[2], g.after[2]);
    for (int p = blockIdx.y; p < g.planes; p += gridDim.y) {
        const float* src = dy + (long long)p * out_sp;
        float* dst = dx + (long long)p * in_sp;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < in_sp; i += gridDim.x * blockDim.x) {
            const int ix = i % g.in[2], iy = i / g.in[2] % g.in[1], iz = i / (g.in[2] * g.in[1]);
            float acc = 0.0f;
            for (int z = max(0, iz + g.before[0] - span_z); z <= min(od - 1, iz + g.before[0] + span_z); ++z) {
                if (pad_source(z, g.in[0], g.before[0], g.mode) != iz) continue;
                for (int y_ = max(0, iy + g.before[1] - span_y); y_ <= min(oh - 1, iy + g.before[1] + span_y); ++y_) {
                    if (pad_source(y_, g.in[1], g.before[1], g.mode) != iy) continue;
                    for (int x_ = max(0, ix + g.before[2] - span_x); x_ <= min(ow - 1, ix + g.before[2] + span_x); ++x_) {
                        if (pad_source(x_, g.in[2], g.before[2], g.mode) != ix) continue;
                        acc += src[(z * oh + y_) * ow + x_];
                    }
                }
            }
            dst[i] = acc;
        }
    }
}
