// Emulated gemm_f32 (kernels/conv.cu) for tests/kernel_emulation.rs. argv[1]: int32 M, N, K,
// then A (M*K) and B (K*N) float32, row-major. argv[2] gets C (M*N), launched with the
// backend's grid: ceil(N / 128) x ceil(M / 128) blocks of 256 threads.
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
    launch({(unsigned)(N + 127) / 128, (unsigned)(M + 127) / 128, 1}, 256,
           [&] { gemm_f32(M, N, K, a.data(), b.data(), c.data(), N, N, 0, 0); });
    FILE* out = fopen(argv[2], "wb");
    if (!out || !io(out, c.data(), c.size() * 4, true)) return 4;
    return fclose(out) == 0 ? 0 : 4;
}
