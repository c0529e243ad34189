// Sliding-window inference with the volume on the device (src/infer/sliding.rs): windows
// are cut out of the volume into a batch of patches, and the generator's output patches are
// added, weighted, into f64 sums of the outputs and of the weights, which are divided at the
// end. The sums are f64 as on the host, and products and sums are rounded separately
// (__dmul_rn, __dadd_rn: no fused multiply-add), so the device blends bit for bit as the host
// does. f64 arrays travel in the engine's f32 buffers of twice the length (pool buffers are
// whole allocations, aligned for doubles).
// Layouts: volumes and patches are x fastest, then y, then z; a batch of patches is
// [slot][z][y][x]. One launch per window, so overlapping windows add in a fixed order.
// Launched by src/device/cuda/window.rs; the CPU reference is src/infer/sliding.rs.

struct WindowParams {
    int volume[3];  // x, y, z sizes of the volume (the sums)
    int origin[3];  // the window's first voxel in the volume
    int patch[3];   // x, y, z sizes of a patch
    int slot;       // the patch's place in the batch
};
static_assert(sizeof(WindowParams) == 40, "WindowParams must match the Rust struct");

// Patch element i of window g: its index in the volume.
__device__ __forceinline__ long long window_voxel(const WindowParams& g, long long i) {
    long long x = i % g.patch[0], y = i / g.patch[0] % g.patch[1], z = i / ((long long)g.patch[0] * g.patch[1]);
    return (g.origin[0] + x) + (long long)g.volume[0] * ((g.origin[1] + y) + (long long)g.volume[1] * (g.origin[2] + z));
}

// patches[slot] = the window of `volume` at `origin`.
extern "C" __global__ void window_cut_f32(WindowParams g, const float* volume, float* patches) {
    long long n = (long long)g.patch[0] * g.patch[1] * g.patch[2];
    float* out = patches + g.slot * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = volume[window_voxel(g, i)];
}

// sum[v] += weight * patches[slot], weight_sum[v] += weight, over the window's voxels v.
extern "C" __global__ void window_add_f64(WindowParams g, const float* patches, const double* weights, double* sum,
                                          double* weight_sum) {
    long long n = (long long)g.patch[0] * g.patch[1] * g.patch[2];
    const float* in = patches + g.slot * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long v = window_voxel(g, i);
        sum[v] = __dadd_rn(sum[v], __dmul_rn(weights[i], (double)in[i]));
        weight_sum[v] = __dadd_rn(weight_sum[v], weights[i]);
    }
}

// out = sum / weight_sum over the window of `g.patch` size at `g.origin` (the volume's own
// extent inside the padded one), as float32.
extern "C" __global__ void window_blend_f32(WindowParams g, const double* sum, const double* weight_sum, float* out) {
    long long n = (long long)g.patch[0] * g.patch[1] * g.patch[2];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long v = window_voxel(g, i);
        out[i] = (float)(sum[v] / weight_sum[v]);
    }
}
