// Adam fused over a whole parameter arena (PyTorch semantics, no amsgrad): one launch per
// network per step. Layout: four flat float32 arrays of n elements (parameters, gradients,
// first and second moments). Launch: 1D grid-stride loop, 256 threads per block.
// Parameters and moments are updated in place; gradients are read only.
// Launched by src/device/cuda/adam.rs; the CPU reference is src/optim/adam.rs.
extern "C" __global__ void adam_step_f32(float* p, const float* g, float* m, float* v, unsigned int n,
                                         float beta1, float beta2, float eps, float weight_decay,
                                         float step_size, float bias_correction2_sqrt) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float grad = weight_decay != 0.0f ? g[i] + weight_decay * p[i] : g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * grad;
        float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) / bias_correction2_sqrt + eps);
    }
}
