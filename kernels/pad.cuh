// Padding modes and the index a padded axis reads, shared by the pad kernels (pad.cu) and
// the convs that pad themselves (conv.cu). The codes match src/device/kernel_codes.rs.
#pragma once

#define PAD_ZERO 0
#define PAD_REFLECT 1
#define PAD_REPLICATE 2

// The input index padded index o reads on an axis of size n padded by `before`, or -1 (zero
// padding).
__device__ __forceinline__ int pad_source(int o, int n, int before, int mode) {
    int i = o - before;
    if (mode == PAD_REPLICATE) return min(max(i, 0), n - 1);
    if (mode == PAD_REFLECT) {
        if (i < 0) i = -i;
        if (i > n - 1) i = 2 * (n - 1) - i;
    }
    return (i >= 0 && i < n) ? i : -1;
}
