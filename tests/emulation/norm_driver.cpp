// Emulated kernels/norm.cu for tests/kernel_emulation.rs, in the order src/device/cuda/norm.rs
// launches them. argv[1]: int32 n, c, s, per_sample, batch_stats, part (elements a reduction
// block takes); float32 eps; int32 fused activation kind (-1: none) and float32 slope; then
// x and dy (n*c*s each), gamma, beta (c each). argv[2] gets mean, var, invstd (one per
// group), y, sums (two per group) and dx. Reductions run as one 256-thread block per group
// and part, merged per group where there are several parts, as on the device; element-wise
// kernels on a 2 x 3 grid, so that their loops stride in both directions.
#include <cmath>
#include <cstdio>
#include "cuda_host.hpp"

#include "../../kernels/norm.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    int h[6], act;
    float eps, slope;
    if (!in || !io(in, h, sizeof h, false) || !io(in, &eps, 4, false) || !io(in, &act, 4, false) ||
        !io(in, &slope, 4, false))
        return 3;
    int n = h[0], c = h[1], s = h[2], per_sample = h[3], batch_stats = h[4], part = h[5];
    size_t len = (size_t)n * c * s, groups = per_sample ? (size_t)n * c : c;
    int group_len = per_sample ? s : n * s, parts = (group_len + part - 1) / part;
    std::vector<float> x(len), dy(len), gamma(c), beta(c);
    if (!io(in, x.data(), len * 4, false) || !io(in, dy.data(), len * 4, false) ||
        !io(in, gamma.data(), c * 4, false) || !io(in, beta.data(), c * 4, false))
        return 3;
    fclose(in);
    std::vector<float> mean(groups, NAN), var(groups, NAN), invstd(groups, NAN), y(len, NAN),
        sums(2 * groups, NAN), dx(len, NAN), pairs(2 * groups * parts, NAN);
    const dim3 reduction{(unsigned)groups, (unsigned)parts, 1}, elementwise{2, 3, 1};
    launch(reduction, NORM_THREADS, [&] {
        norm_stats_f32(x.data(), mean.data(), var.data(), invstd.data(), pairs.data(), n, c, s, per_sample,
                       part, eps);
    });
    if (parts > 1)
        launch({1, 1, 1}, 32, [&] {
            norm_stats_merge_f32(pairs.data(), mean.data(), var.data(), invstd.data(), (int)groups, group_len,
                                 part, parts, eps);
        });
    launch(elementwise, 256, [&] {
        norm_apply_f32(x.data(), mean.data(), invstd.data(), gamma.data(), beta.data(), y.data(),
                       n, c, s, per_sample, act, slope);
    });
    float* grad_sums = parts > 1 ? pairs.data() : sums.data();
    launch(reduction, NORM_THREADS, [&] {
        norm_grad_sums_f32(dy.data(), y.data(), x.data(), mean.data(), invstd.data(), grad_sums, n, c, s,
                           per_sample, part, act, slope);
    });
    if (parts > 1)
        launch({1, 1, 1}, 32, [&] { norm_sums_merge_f32(pairs.data(), sums.data(), (int)groups, parts); });
    launch(elementwise, 256, [&] {
        norm_backward_f32(dy.data(), y.data(), x.data(), mean.data(), invstd.data(), gamma.data(),
                          sums.data(), dx.data(), n, c, s, per_sample, batch_stats, act, slope);
    });
    FILE* out = fopen(argv[2], "wb");
    for (auto* v : {&mean, &var, &invstd, &y, &sums, &dx})
        if (!out || !io(out, v->data(), v->size() * 4, true)) return 4;
    return fclose(out) == 0 ? 0 : 4;
}
