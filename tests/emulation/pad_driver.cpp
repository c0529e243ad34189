// Emulated kernels/pad.cu for tests/kernel_emulation.rs. argv[1]: PadParams (11 int32), then
// x (planes * input) and dy (planes * output). argv[2] gets y and dx. One 256-thread block
// (grid-stride loops cover any grid).
#include <algorithm>
#include <cmath>
#include "cuda_host.hpp"

#include "../../kernels/pad.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    PadParams g;
    if (!in || !io(in, &g, sizeof g, false)) return 3;
    size_t in_len = (size_t)g.planes * g.in[0] * g.in[1] * g.in[2], out_len = g.planes;
    for (int a = 0; a < 3; ++a) out_len *= g.in[a] + g.before[a] + g.after[a];
    std::vector<float> x(in_len), dy(out_len), y(out_len, NAN), dx(in_len, NAN);
    if (!io(in, x.data(), in_len * 4, false) || !io(in, dy.data(), out_len * 4, false)) return 3;
    fclose(in);
    launch({1, 1, 1}, 256, [&] { pad_fwd_f32(g, x.data(), y.data()); });
    launch({1, 1, 1}, 256, [&] { pad_bwd_f32(g, dy.data(), dx.data()); });
    FILE* out = fopen(argv[2], "wb");
    if (!out || !io(out, y.data(), out_len * 4, true) || !io(out, dx.data(), in_len * 4, true))
        return 4;
    return fclose(out) == 0 ? 0 : 4;
}
