// Concatenation along the channel axis (the U-Net skips, pix2pix's D input) and its adjoint.
// A part of `c` channels occupies channels [c0, c0 + c) of a tensor of `total` channels; one
// launch per part copies it into its slice (forward, `into_whole` 1) or its slice of the
// gradient back out (backward, 0). Layout N, C, spatial float32: the part's plane (image,
// channel) is the whole's plane (image, c0 + channel). Planes along the grid's y, a plane's
// elements along x (any grid: both loop), so that no element needs a 64-bit division.
// Launched by src/device/cuda/concat.rs; the CPU references are src/ops/concat.rs.

extern "C" __global__ void channel_slice_copy_f32(const float* src, float* dst, int n, int c, int c0, int total,
                                                  int spatial, int into_whole) {
    for (int p = blockIdx.y; p < n * c; p += gridDim.y) {
        const long long part = (long long)p * spatial, whole = ((long long)(p / c) * total + c0 + p % c) * spatial;
        const float* from = src + (into_whole ? part : whole);
        float* to = dst + (into_whole ? whole : part);
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < spatial; i += gridDim.x * blockDim.x) to[i] = from[i];
    }
}
