// Emulated element-wise binary ops, reductions and channel concat for
// tests/kernel_emulation.rs (kernels/elementwise.cu, reduce.cu, concat.cu). argv[1]: uint32 n,
// float32 scale factor and fill value, a and b (n floats each), then int32 images, spatial,
// part count P, P channel counts and the parts' data. argv[2] gets a + b, a * b, factor * a,
// the sum of a (float64), n copies of the fill value, the concatenation of the parts and
// each part split back out of it. Four 256-thread blocks, so grid-stride loops wrap (the
// channel copies: 2 x 3 blocks over planes and their elements).
#include <cmath>
#include <cstdint>
#include "cuda_host.hpp"
#include "../../kernels/elementwise.cu"
#include "../../kernels/reduce.cu"
#include "../../kernels/concat.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    uint32_t n;
    float factor, value;
    if (!in || !io(in, &n, 4, false) || !io(in, &factor, 4, false) || !io(in, &value, 4, false)) return 3;
    std::vector<float> a(n), b(n), add(n, NAN), mul(n, NAN), scaled(n, NAN), filled(n, NAN);
    if (!io(in, a.data(), n * 4, false) || !io(in, b.data(), n * 4, false)) return 3;
    int32_t images, spatial, parts;
    if (!io(in, &images, 4, false) || !io(in, &spatial, 4, false) || !io(in, &parts, 4, false) || parts < 1)
        return 3;
    std::vector<int32_t> channels(parts);
    if (!io(in, channels.data(), parts * 4, false)) return 3;
    int total = 0;
    std::vector<std::vector<float>> part(parts);
    for (int p = 0; p < parts; ++p) {
        part[p].resize((size_t)images * channels[p] * spatial);
        if (!io(in, part[p].data(), part[p].size() * 4, false)) return 3;
        total += channels[p];
    }
    fclose(in);

    dim3 grid{4, 1, 1};
    launch(grid, 256, [&] { binary_f32(a.data(), b.data(), add.data(), n, BINARY_ADD); });
    launch(grid, 256, [&] { binary_f32(a.data(), b.data(), mul.data(), n, BINARY_MUL); });
    launch(grid, 256, [&] { scale_f32(a.data(), scaled.data(), n, factor); });
    std::vector<double> partial(grid.x, NAN);
    launch(grid, 256, [&] { sum_partial_f32(a.data(), n, partial.data()); });
    double sum = 0.0;
    for (double p : partial) sum += p;
    launch(grid, 256, [&] { fill_f32(filled.data(), n, value); });
    std::vector<float> whole((size_t)images * total * spatial, NAN);
    std::vector<std::vector<float>> back(parts);
    // Planes along y, three at a time, so that both of the copy's loops wrap.
    dim3 planes{2, 3, 1};
    for (int p = 0, c0 = 0; p < parts; c0 += channels[p], ++p)
        launch(planes, 256, [&] {
            channel_slice_copy_f32(part[p].data(), whole.data(), images, channels[p], c0, total, spatial, 1);
        });
    for (int p = 0, c0 = 0; p < parts; c0 += channels[p], ++p) {
        back[p].assign(part[p].size(), NAN);
        launch(planes, 256, [&] {
            channel_slice_copy_f32(whole.data(), back[p].data(), images, channels[p], c0, total, spatial, 0);
        });
    }

    FILE* out = fopen(argv[2], "wb");
    if (!out) return 4;
    for (auto* v : {&add, &mul, &scaled})
        if (!io(out, v->data(), n * 4, true)) return 4;
    if (!io(out, &sum, 8, true) || !io(out, filled.data(), n * 4, true) ||
        !io(out, whole.data(), whole.size() * 4, true))
        return 4;
    for (auto& v : back)
        if (!io(out, v.data(), v.size() * 4, true)) return 4;
    return fclose(out) == 0 ? 0 : 4;
}
