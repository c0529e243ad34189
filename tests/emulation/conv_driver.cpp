// Emulated kernels/conv.cu for tests/kernel_emulation.rs. argv[1] holds ConvParams (196 bytes),
// a plan count P (int32), P tiled launches for each of fprop, dgrad and wgrad (kernel 0
// square / 1 large / 2 narrow / 3 large stream K, grid x, y, z and k_chunk (stream K: the
// slots): 5 int32 each, as src/device/tiled_conv.rs plans them), then x, w, dy
// (float32); fprop and dgrad get w as their panels (conv_weight_panel_f32), and dgrad with a
// reflection or replication padding gets dy folded (conv_fold_dy_f32). argv[2] gets, for fprop, dgrad and wgrad in turn, the direct kernel's result
// and then each planned tiled launch's (with split K: the partial sums added by
// conv_split_sum_f32, as the backend does).
// Direct kernels run as one 256-thread block (their grid-stride loops cover any grid).
#include <cmath>
#include <cstdio>
#include "cuda_host.hpp"
#include "../../kernels/conv.cu"

using Tiled = void (*)(ConvParams, const float*, const float*, float*, float*, int);
using Direct = void (*)(ConvParams, const float*, const float*, float*);

struct Plan {
    int shape, x, y, z, k_chunk;
};

// Outputs start as NaN, so an element a kernel does not write fails the test.
static std::vector<float> run_direct(Direct kernel, const ConvParams& g, const std::vector<float>& a,
                                     const std::vector<float>& b, size_t len) {
    std::vector<float> out(len, NAN);
    launch({1, 1, 1}, 256, [&] { kernel(g, a.data(), b.data(), out.data()); });
    return out;
}

// Stream K (kernel 3) launches a grid of (x, 1, 1) and sums p.z slots after.
static std::vector<float> run_tiled(Tiled kernel, const ConvParams& g, const Plan& p, const std::vector<float>& a,
                                    const std::vector<float>& b, size_t len) {
    std::vector<float> out(len, NAN), partial(p.z > 1 ? p.z * len : 1, NAN);
    const unsigned grid_z = p.shape == 3 ? 1 : (unsigned)p.z;
    launch({(unsigned)p.x, (unsigned)p.y, grid_z}, 256,
           [&] { kernel(g, a.data(), b.data(), out.data(), partial.data(), p.k_chunk); });
    if (p.z > 1)
        launch({4, 1, 1}, 256, [&] { conv_split_sum_f32(partial.data(), out.data(), (int)len, p.z); });
    return out;
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    ConvParams g;
    int plans = 0;
    if (!in || !io(in, &g, sizeof g, false) || !io(in, &plans, 4, false) || plans < 0) return 3;
    std::vector<Plan> plan(3 * plans);
    if (!io(in, plan.data(), plan.size() * sizeof(Plan), false)) return 3;
    size_t nx = (size_t)g.n * g.c_in * g.in_d * g.in_h * g.in_w;
    size_t nw = (size_t)g.c_out * g.c_in * g.k_d * g.k_h * g.k_w;
    size_t ny = (size_t)g.n * g.c_out * g.out_d * g.out_h * g.out_w;
    std::vector<float> x(nx), w(nw), dy(ny);
    if (!io(in, x.data(), nx * 4, false) || !io(in, w.data(), nw * 4, false) ||
        !io(in, dy.data(), ny * 4, false))
        return 3;
    fclose(in);
    // fprop and dgrad read the weights as their K-major panels, as the backend launches them.
    std::vector<float> fprop_panel(nw, NAN), dgrad_panel(nw, NAN);
    launch({4, 1, 1}, 256, [&] { conv_weight_panel_f32(g, w.data(), fprop_panel.data(), 0); });
    launch({4, 1, 1}, 256, [&] { conv_weight_panel_f32(g, w.data(), dgrad_panel.data(), 1); });
    // Folded extents per axis: the output's plus fold_extra (kernels/conv.cu, "Padding").
    const size_t folded_len = (size_t)g.n * g.c_out * (g.out_d + fold_extra(g.p_d, g.pad_mode)) *
                              (g.out_h + fold_extra(g.p_h, g.pad_mode)) * (g.out_w + fold_extra(g.p_w, g.pad_mode));
    std::vector<float> dgrad_dy = dy;
    if (g.pad_mode != PAD_ZERO) {
        dgrad_dy.assign(folded_len, NAN);
        launch({4, 1, 1}, 256, [&] { conv_fold_dy_f32(g, dy.data(), dgrad_dy.data()); });
    }
    struct Pass {
        Direct direct;
        Tiled tiled[4];  // square, large, narrow, large stream K
        const std::vector<float>&a, &b;
        size_t len;
    };
    const Pass passes[3] = {
        {conv_fprop_f32,
         {conv_fprop_tiled_f32, conv_fprop_large_f32, conv_fprop_narrow_f32, conv_fprop_large_streamk_f32},
         x, fprop_panel, ny},
        {conv_dgrad_f32,
         {conv_dgrad_tiled_f32, conv_dgrad_large_f32, conv_dgrad_narrow_f32, conv_dgrad_large_streamk_f32},
         dgrad_dy, dgrad_panel, nx},
        {conv_wgrad_f32,
         {conv_wgrad_tiled_f32, conv_wgrad_large_f32, conv_wgrad_narrow_f32, conv_wgrad_large_streamk_f32},
         x, dy, nw}};
    FILE* out = fopen(argv[2], "wb");
    if (!out) return 4;
    for (int p = 0; p < 3; ++p) {
        const Pass& pass = passes[p];
        std::vector<float> result = run_direct(pass.direct, g, pass.a, pass.b, pass.len);
        if (!io(out, result.data(), result.size() * 4, true)) return 4;
        for (int i = 0; i < plans; ++i) {
            const Plan& launch = plan[p * plans + i];
            result = run_tiled(pass.tiled[launch.shape], g, launch, pass.a, pass.b, pass.len);
            if (!io(out, result.data(), result.size() * 4, true)) return 4;
        }
    }
    return fclose(out) == 0 ? 0 : 4;
}
