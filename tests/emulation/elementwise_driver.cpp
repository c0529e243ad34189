// Emulated kernels/elementwise.cu for tests/kernel_emulation.rs. argv[1]: int32 kind;
// float32 slope, dropout scale; float64 dropout p; uint64 seed; uint32 n; then x and dy
// (n each). argv[2] gets the activation y, its backward dx and the dropout output. Four
// 256-thread blocks, so the grid-stride loops wrap when n > 1024.
#include <cmath>
#include <cstdint>
#include "cuda_host.hpp"
#include "../../kernels/elementwise.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    int32_t kind;
    float slope, scale;
    double p;
    uint64_t seed;
    uint32_t n;
    if (!in || !io(in, &kind, 4, false) || !io(in, &slope, 4, false) ||
        !io(in, &scale, 4, false) || !io(in, &p, 8, false) || !io(in, &seed, 8, false) ||
        !io(in, &n, 4, false))
        return 3;
    std::vector<float> x(n), dy(n), y(n, NAN), dx(n, NAN), dropped(n, NAN);
    if (!io(in, x.data(), n * 4, false) || !io(in, dy.data(), n * 4, false)) return 3;
    fclose(in);
    dim3 grid{4, 1, 1};
    launch(grid, 256, [&] { activation_fwd_f32(x.data(), y.data(), n, kind, slope); });
    launch(grid, 256, [&] {
        activation_bwd_f32(dy.data(), x.data(), y.data(), dx.data(), n, kind, slope);
    });
    launch(grid, 256, [&] { dropout_f32(x.data(), dropped.data(), n, p, scale, seed); });
    FILE* out = fopen(argv[2], "wb");
    for (auto* v : {&y, &dx, &dropped})
        if (!out || !io(out, v->data(), n * 4, true)) return 4;
    return fclose(out) == 0 ? 0 : 4;
}
