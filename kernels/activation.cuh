// Activations and their derivatives, shared by the element-wise kernels and the norm kernels
// (which fuse the activation that follows a norm in the networks).
#pragma once

// Activation kinds, as CudaBackend passes them; ACT_NONE: the identity (no fused activation).
#define ACT_NONE -1
#define ACT_RELU 0
#define ACT_LEAKY_RELU 1
#define ACT_TANH 2
#define ACT_SIGMOID 3

__device__ __forceinline__ float activate(float v, int kind, float slope) {
    switch (kind) {
        case ACT_NONE: return v;
        case ACT_RELU: return v > 0.0f ? v : 0.0f;
        case ACT_LEAKY_RELU: return v > 0.0f ? v : v * slope;
        case ACT_TANH: return tanhf(v);
        default: return 1.0f / (1.0f + expf(-v));
    }
}

// d act / d input, from the input x for the ReLU family (left derivative at 0) and from the
// output y for tanh (1 - y^2) and sigmoid (y (1 - y)), as PyTorch. With a slope >= 0 the
// ReLU family's y > 0 exactly where x > 0, so y may stand in for x (the fused norm backward
// keeps only y).
__device__ __forceinline__ float activation_grad(float x, float y, int kind, float slope) {
    switch (kind) {
        case ACT_NONE: return 1.0f;
        case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case ACT_LEAKY_RELU: return x > 0.0f ? 1.0f : slope;
        case ACT_TANH: return 1.0f - y * y;
        default: return y * (1.0f - y);
    }
}
