// Emulated gemm_f32 and gemm_square_f32 (kernels/conv.cu) for tests/kernel_emulation.rs.
// argv[1]: int32 M, N, K, then A (M*K) and B (K*N) float32, row-major. argv[2] gets C (M*N)
// from each, launched with the backend's grids: ceil(N / T) x ceil(M / T) blocks of 256
// threads for T = 128, then 64.
#include <cmath>
#include <cstdio>
#include "cuda_host.hpp"
#include "../../kernels/conv.cu"

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    int size[3];
    if (!in || !io(in, size, sizeof size, false)) return 3;
    int M = size[0], N = size[1], K = size[2];
    std::vector<float> a((size_t)M * K), b((size_t)K * N), c((size_t)M * N, NAN);
    if (!io(in, a.data(), a.size() * 4, false) || !io(in, b.data(), b.size() * 4, false)) return 3;
    fclose(in);
    FILE* out = fopen(argv[2], "wb");
    if (!out) return 4;
    using Gemm = void (*)(int, int, int, const float*, const float*, float*, int, int, long long, long long, long long, int,
                          int);
    const std::pair<Gemm, unsigned> kernels[2] = {{gemm_f32, 128}, {gemm_square_f32, 64}};
    for (auto [kernel, tile] : kernels) {
        c.assign(c.size(), NAN);
        launch({(N + tile - 1) / tile, (M + tile - 1) / tile, 1}, 256,
               [&] { kernel(M, N, K, a.data(), b.data(), c.data(), N, N, 0, 0, 0, 1, K); });
        if (!io(out, c.data(), c.size() * 4, true)) return 4;
    }
    return fclose(out) == 0 ? 0 : 4;
}
