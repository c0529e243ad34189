// Emulated kernels/adam.cu for tests/kernel_emulation.rs: one Adam step. argv[1]: uint32 n;
// float32 beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt; then p, g, m, v
// (n each). argv[2] gets p, m and v after the step. Four 256-thread blocks.
#include <cmath>
#include <cstdint>
#include "cuda_host.hpp"

inline float sqrtf(float v) { return std::sqrt(v); }

#include "../../kernels/adam.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    uint32_t n;
    float h[6];
    if (!in || !io(in, &n, 4, false) || !io(in, h, sizeof h, false)) return 3;
    std::vector<float> p(n), g(n), m(n), v(n);
    for (auto* a : {&p, &g, &m, &v})
        if (!io(in, a->data(), n * 4, false)) return 3;
    fclose(in);
    launch({4, 1, 1}, 256, [&] {
        adam_step_f32(p.data(), g.data(), m.data(), v.data(), n, h[0], h[1], h[2], h[3], h[4], h[5]);
    });
    FILE* out = fopen(argv[2], "wb");
    for (auto* a : {&p, &m, &v})
        if (!out || !io(out, a->data(), n * 4, true)) return 4;
    return fclose(out) == 0 ? 0 : 4;
}
