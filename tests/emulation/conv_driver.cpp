// Emulated kernels/conv.cu for tests/kernel_emulation.rs: reads ConvParams (18 int32) and
// x, w, dy (float32) from argv[1], writes y, dx and dw, each from the direct and then the
// tiled kernel, to argv[2].
// Direct kernels run as one 256-thread block (their grid-stride loops cover any grid); the
// tiled kernel runs with the grid src/device/cuda.rs launches.
#include <cmath>
#include <cstdio>
#include "cuda_host.hpp"
#include "../../kernels/conv.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    ConvParams g;
    if (!in || !io(in, &g, sizeof g, false)) return 3;
    size_t nx = (size_t)g.n * g.c_in * g.in_d * g.in_h * g.in_w;
    size_t nw = (size_t)g.c_out * g.c_in * g.k_d * g.k_h * g.k_w;
    size_t ny = (size_t)g.n * g.c_out * g.out_d * g.out_h * g.out_w;
    std::vector<float> x(nx), w(nw), dy(ny);
    // Outputs start as NaN, so an element a kernel does not write fails the test.
    std::vector<float> y(ny, NAN), y_tiled(ny, NAN), dx(nx, NAN), dx_tiled(nx, NAN),
        dw(nw, NAN), dw_tiled(nw, NAN);
    if (!io(in, x.data(), nx * 4, false) || !io(in, w.data(), nw * 4, false) ||
        !io(in, dy.data(), ny * 4, false))
        return 3;
    fclose(in);
    // The tiled kernels' grid: ceil(columns / 64) x ceil(rows / 64), as the backend's.
    auto tiles = [](size_t rows, size_t columns) {
        return dim3{(unsigned)((columns + 63) / 64), (unsigned)((rows + 63) / 64), 1};
    };
    size_t kvol = (size_t)g.k_d * g.k_h * g.k_w;
    launch({1, 1, 1}, 256, [&] { conv_fprop_f32(g, x.data(), w.data(), y.data()); });
    launch(tiles(g.c_out, ny / g.c_out), 256,
           [&] { conv_fprop_tiled_f32(g, x.data(), w.data(), y_tiled.data()); });
    launch({1, 1, 1}, 256, [&] { conv_dgrad_f32(g, dy.data(), w.data(), dx.data()); });
    launch(tiles(g.c_in, nx / g.c_in), 256,
           [&] { conv_dgrad_tiled_f32(g, dy.data(), w.data(), dx_tiled.data()); });
    launch({1, 1, 1}, 256, [&] { conv_wgrad_f32(g, x.data(), dy.data(), dw.data()); });
    launch(tiles(g.c_out, g.c_in * kvol), 256,
           [&] { conv_wgrad_tiled_f32(g, x.data(), dy.data(), dw_tiled.data()); });
    FILE* out = fopen(argv[2], "wb");
    for (auto* v : {&y, &y_tiled, &dx, &dx_tiled, &dw, &dw_tiled})
        if (!out || !io(out, v->data(), v->size() * 4, true)) return 4;
    return fclose(out) == 0 ? 0 : 4;
}
