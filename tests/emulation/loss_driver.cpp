// Emulated kernels/loss.cu for tests/kernel_emulation.rs. argv[1]: int32 kind, has_target;
// int64 n; float32 constant, scale; then pred and target (n each). argv[2] gets the mean
// loss (float64: the blocks' double partial sums added on the host, as src/device/cuda/loss.rs
// does), dpred and dtarget. Four 256-thread blocks, so grid-stride loops and several
// partial sums are exercised.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include "cuda_host.hpp"
#include "../../kernels/loss.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    int32_t h[2];
    int64_t n;
    float constant, scale;
    if (!in || !io(in, h, sizeof h, false) || !io(in, &n, 8, false) ||
        !io(in, &constant, 4, false) || !io(in, &scale, 4, false))
        return 3;
    int kind = h[0], has_target = h[1];
    std::vector<float> pred(n), target(n);
    if (!io(in, pred.data(), n * 4, false) || !io(in, target.data(), n * 4, false)) return 3;
    fclose(in);
    const unsigned blocks = 4;
    std::vector<double> partial(blocks, NAN);
    launch({blocks, 1, 1}, LOSS_THREADS, [&] {
        loss_partial_sums_f32(kind, pred.data(), target.data(), has_target, constant, n,
                              partial.data());
    });
    double mean = 0.0;
    for (double p : partial) mean += p;
    mean /= (double)(n > 0 ? n : 1);
    std::vector<float> dpred(n, NAN), dtarget(n, NAN);
    launch({blocks, 1, 1}, 256, [&] {
        loss_backward_f32(kind, pred.data(), target.data(), has_target, constant, n, scale,
                          dpred.data(), dtarget.data());
    });
    FILE* out = fopen(argv[2], "wb");
    if (!out || !io(out, &mean, 8, true) || !io(out, dpred.data(), n * 4, true) ||
        !io(out, dtarget.data(), n * 4, true))
        return 4;
    return fclose(out) == 0 ? 0 : 4;
}
