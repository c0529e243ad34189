// Concatenation along the channel axis (the U-Net skips, pix2pix's D input) and its adjoint.
// A part of `c` channels occupies channels [c0, c0 + c) of a tensor of `total` channels; one
// launch per part copies it into its slice (forward, `into_whole` 1) or its slice of the
// gradient back out (backward, 0). Layout N, C, spatial float32; grid-stride loop.
// Launched by src/device/cuda/concat.rs; the CPU references are src/ops/concat.rs.

extern "C" __global__ void channel_slice_copy_f32(const float* src, float* dst, long long part_len, int c, int c0,
                                                  int total, int spatial, int into_whole) {
    long long image_len = (long long)c * spatial;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < part_len; i += (long long)gridDim.x * blockDim.x) {
        long long whole = (i / image_len * total + c0) * spatial + i % image_len;
        if (into_whole) dst[whole] = src[i];
        else dst[i] = src[whole];
    }
}
