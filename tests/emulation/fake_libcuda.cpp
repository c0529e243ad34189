// A stand-in libcuda.so for machines without a GPU: the driver API calls that mrgan makes
// through cudarc, with "device" memory in host RAM and every kernel launch run at once on
// the host by the emulation of cuda_host.hpp (all of kernels/*.cu compiled in as C++20).
// Put it first on LD_LIBRARY_PATH (scripts/emulated-device-check.sh does) and the CUDA
// backend, device tensors, arenas, training and prediction run end to end, so the Rust side
// of the GPU path is tested in CI; the device's own behaviour and speed are not.
//
// One device, compute capability 8.0 (so the sm_80 cubin is "loaded": the image is ignored
// and kernels are found by name), one multiprocessor. Work runs synchronously on the
// calling thread, so streams and events have nothing to order; events only keep time.
// Launches are serialised by a mutex (the emulation's block state is global).
//
// MRGAN_FAKE_CUDA_DRY=1 makes it a dry run: allocations are only booked (addresses with no
// memory behind them), launches and copies do nothing, and copies to the host read zeros.
// The engine's pool then reports its memory peak exactly for any size, without the time and
// host memory the kernels would take: what a full-size 3D CycleGAN step needs
// (BENCHMARKS.md). Results are meaningless in that mode; only the bookkeeping holds.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "cuda_host.hpp"
#include "../../kernels/adam.cu"
#include "../../kernels/concat.cu"
#include "../../kernels/conv.cu"
#include "../../kernels/elementwise.cu"
#include "../../kernels/loss.cu"
#include "../../kernels/norm.cu"
#include "../../kernels/pad.cu"
#include "../../kernels/reduce.cu"
#include "../../kernels/window.cu"

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_NOT_FOUND = 500,
};

namespace {

// A kernel as the driver sees it: its name and how to run it from cuLaunchKernel's
// argument array.
struct Kernel {
    const char* name;
    void (*run)(dim3 grid, unsigned threads, void** params);
};

// Calls `k` with each argument read from params[i] as its declared type (cudarc passes a
// pointer to each argument; a device pointer is a 64-bit address, here a host one).
template <typename... A, size_t... I>
void call(void (*k)(A...), void** params, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(params[I])...);
}

template <typename... A>
constexpr size_t arity(void (*)(A...)) {
    return sizeof...(A);
}

template <auto K>
void run_kernel(dim3 grid, unsigned threads, void** params) {
    launch(grid, threads, [&] { call(K, params, std::make_index_sequence<arity(K)>()); });
}

#define KERNEL(name) Kernel{#name, run_kernel<name>}
const Kernel KERNELS[] = {
    KERNEL(adam_step_f32),          KERNEL(channel_slice_copy_f32), KERNEL(conv_fprop_f32),
    KERNEL(conv_dgrad_f32),         KERNEL(conv_wgrad_f32),         KERNEL(conv_fprop_tiled_f32),
    KERNEL(conv_dgrad_tiled_f32),   KERNEL(conv_wgrad_tiled_f32),   KERNEL(conv_fprop_large_f32),
    KERNEL(conv_dgrad_large_f32),   KERNEL(conv_wgrad_large_f32),   KERNEL(conv_fprop_narrow_f32),
    KERNEL(conv_dgrad_narrow_f32),  KERNEL(conv_wgrad_narrow_f32),  KERNEL(conv_split_sum_f32),
    KERNEL(gemm_f32),               KERNEL(activation_fwd_f32),     KERNEL(activation_bwd_f32),
    KERNEL(dropout_f32),            KERNEL(binary_f32),             KERNEL(scale_f32),
    KERNEL(loss_partial_sums_f32),  KERNEL(loss_backward_f32),      KERNEL(norm_stats_f32),
    KERNEL(norm_apply_f32),         KERNEL(norm_grad_sums_f32),     KERNEL(norm_backward_f32),
    KERNEL(pad_fwd_f32),            KERNEL(pad_bwd_f32),            KERNEL(sum_partial_f32),
    KERNEL(fill_f32),               KERNEL(norm_channel_sums_f32),  KERNEL(window_cut_f32),
    KERNEL(window_add_f64),         KERNEL(window_blend_f32),       KERNEL(running_stats_f32),
    KERNEL(conv_weight_panel_f32),  KERNEL(conv_fprop_large_streamk_f32), KERNEL(conv_dgrad_large_streamk_f32),
    KERNEL(conv_wgrad_large_streamk_f32), KERNEL(norm_stats_merge_f32), KERNEL(norm_sums_merge_f32),
    KERNEL(conv_thin_gather_f32),   KERNEL(gemm_square_f32),        KERNEL(conv_fold_dy_f32),
    KERNEL(conv_reverse_taps_f32),  KERNEL(winograd_wgrad_dy_f32),  KERNEL(winograd_wgrad_x_f32),
    KERNEL(winograd_wgrad_out_f32),  KERNEL(winograd_weights_f32),  KERNEL(winograd_input_f32),
    KERNEL(winograd_output_f32),
};

std::mutex launches;
int context, module_handle, stream_handle;
using Clock = std::chrono::steady_clock;

void* host(CUdeviceptr p) { return reinterpret_cast<void*>(p); }

bool dry() {
    static const bool on = [] {
        const char* v = getenv("MRGAN_FAKE_CUDA_DRY");
        return v && strcmp(v, "1") == 0;
    }();
    return on;
}

// Driver calls counted by kind; with MRGAN_FAKE_CUDA_COUNTS=1 they are printed when the
// process exits (launches, device allocations, and copies to the host, which wait for the
// device on a real GPU), e.g. to count what one training step costs.
struct Counts {
    unsigned long long launches = 0, allocations = 0, copies_to_host = 0, copies_to_device = 0;
    ~Counts() {
        const char* on = getenv("MRGAN_FAKE_CUDA_COUNTS");
        if (on && strcmp(on, "1") == 0)
            fprintf(stderr, "fake libcuda: %llu launches, %llu allocations, %llu copies to the host, %llu to the device\n",
                    launches, allocations, copies_to_host, copies_to_device);
    }
};
Counts counts;

// Every allocation is followed by a guard of GUARD bytes of CANARY; after each launch and
// copy the guards are checked, so a kernel or copy that writes past the end of a buffer
// stops the process with its name.
constexpr size_t GUARD = 1024;
constexpr unsigned char CANARY = 0xA5;
std::mutex allocations_lock;
std::map<CUdeviceptr, size_t> allocations;  // address -> bytes asked for
size_t allocated = 0;                       // bytes held, against MRGAN_FAKE_CUDA_MEMORY

// The device's memory in bytes: MRGAN_FAKE_CUDA_MEMORY, default 8 GiB (a small value makes
// allocations fail, to exercise the out-of-memory paths).
size_t memory_limit() {
    const char* v = getenv("MRGAN_FAKE_CUDA_MEMORY");
    return v ? strtoull(v, nullptr, 10) : size_t(8) << 30;
}

// The device's multiprocessors: MRGAN_FAKE_CUDA_MULTIPROCESSORS, default 1. The conv plans
// depend on it (tile shapes and K splits, so the split-K scratch a dry run books); 132 stands
// in for an H100 or H200.
int multiprocessors() {
    const char* v = getenv("MRGAN_FAKE_CUDA_MULTIPROCESSORS");
    return v ? atoi(v) : 1;
}

void check_guards(const char* after) {
    if (dry()) return;
    std::lock_guard<std::mutex> lock(allocations_lock);
    for (auto [p, bytes] : allocations) {
        const unsigned char* guard = static_cast<unsigned char*>(host(p)) + bytes;
        for (size_t i = 0; i < GUARD; ++i)
            if (guard[i] != CANARY) {
                fprintf(stderr, "fake libcuda: %s wrote past the end of a %zu-byte buffer (byte %zu after it)\n",
                        after, bytes, i);
                abort();
            }
    }
}

}  // namespace

extern "C" {

CUresult cuInit(unsigned) { return CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int* v) {
    *v = 12080;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGet(int* device, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetName(char* name, int len, int) {
    snprintf(name, len, "mrgan host emulation (tests/emulation/fake_libcuda.cpp)");
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetAttribute(int* value, int attribute, int) {
    switch (attribute) {
        case 75: *value = 8; break;  // compute capability major
        case 76: *value = 0; break;  // minor
        case 16: *value = multiprocessors(); break;
        default: *value = 0;         // memory pools and everything else: not supported
    }
    return CUDA_SUCCESS;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, int) {
    *bytes = memory_limit();
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) {
    *ctx = &context;
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease_v2(int) { return CUDA_SUCCESS; }
CUresult cuDevicePrimaryCtxRelease(int) { return CUDA_SUCCESS; }
CUresult cuCtxSetCurrent(void*) { return CUDA_SUCCESS; }
CUresult cuCtxGetCurrent(void** ctx) {
    *ctx = &context;
    return CUDA_SUCCESS;
}
CUresult cuCtxPushCurrent_v2(void*) { return CUDA_SUCCESS; }
CUresult cuCtxPopCurrent_v2(void** ctx) {
    if (ctx) *ctx = &context;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetDevice(int* device) {
    *device = 0;
    return CUDA_SUCCESS;
}
CUresult cuCtxSynchronize() { return CUDA_SUCCESS; }

CUresult cuStreamCreate(void** stream, unsigned) {
    *stream = &stream_handle;
    return CUDA_SUCCESS;
}
CUresult cuStreamDestroy_v2(void*) { return CUDA_SUCCESS; }
CUresult cuStreamSynchronize(void*) { return CUDA_SUCCESS; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return CUDA_SUCCESS; }
CUresult cuStreamQuery(void*) { return CUDA_SUCCESS; }

CUresult cuEventCreate(void** event, unsigned) {
    *event = new Clock::time_point(Clock::now());
    return CUDA_SUCCESS;
}
CUresult cuEventRecord(void* event, void*) {
    *static_cast<Clock::time_point*>(event) = Clock::now();
    return CUDA_SUCCESS;
}
CUresult cuEventRecordWithFlags(void* event, void* stream, unsigned) { return cuEventRecord(event, stream); }
CUresult cuEventSynchronize(void*) { return CUDA_SUCCESS; }
CUresult cuEventQuery(void*) { return CUDA_SUCCESS; }
CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
    auto d = *static_cast<Clock::time_point*>(end) - *static_cast<Clock::time_point*>(start);
    *ms = std::chrono::duration<float, std::milli>(d).count();
    return CUDA_SUCCESS;
}
CUresult cuEventDestroy_v2(void* event) {
    delete static_cast<Clock::time_point*>(event);
    return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(void** module, const void*) {
    *module = &module_handle;
    return CUDA_SUCCESS;
}
CUresult cuModuleUnload(void*) { return CUDA_SUCCESS; }
CUresult cuModuleGetFunction(void** function, void*, const char* name) {
    for (const Kernel& k : KERNELS)
        if (strcmp(k.name, name) == 0) {
            *function = const_cast<Kernel*>(&k);
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}
CUresult cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned, void*, void** params, void**) {
    if (by != 1 || bz != 1) return CUDA_ERROR_INVALID_VALUE;  // the emulation runs 1D blocks
    std::lock_guard<std::mutex> lock(launches);
    const Kernel* k = static_cast<Kernel*>(function);
    ++counts.launches;
    if (dry()) return CUDA_SUCCESS;
    k->run(dim3{gx, gy, gz}, bx, params);
    check_guards(k->name);
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(allocations_lock);
    if (allocated + bytes > memory_limit()) return CUDA_ERROR_OUT_OF_MEMORY;
    if (dry()) {  // a fresh 256-aligned address range, never dereferenced
        static CUdeviceptr next = CUdeviceptr(1) << 40;
        ++counts.allocations;
        *p = next;
        next += (bytes + 511) / 256 * 256;
        allocations[*p] = bytes;
        allocated += bytes;
        return CUDA_SUCCESS;
    }
    void* m = aligned_alloc(256, (bytes + GUARD + 255) / 256 * 256);
    if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
    memset(static_cast<char*>(m) + bytes, CANARY, GUARD);
    ++counts.allocations;
    *p = reinterpret_cast<CUdeviceptr>(m);
    allocations[*p] = bytes;
    allocated += bytes;
    return CUDA_SUCCESS;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    {
        std::lock_guard<std::mutex> lock(allocations_lock);
        allocated -= allocations[p];
        allocations.erase(p);
    }
    if (!dry()) free(host(p));
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
    ++counts.copies_to_device;
    if (dry()) return CUDA_SUCCESS;
    memcpy(host(dst), src, bytes);
    check_guards("a copy to the device");
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, void*) {
    return cuMemcpyHtoD_v2(dst, src, bytes);
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
    ++counts.copies_to_host;
    if (dry()) {
        memset(dst, 0, bytes);
        return CUDA_SUCCESS;
    }
    memcpy(dst, host(src), bytes);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, void*) {
    return cuMemcpyDtoH_v2(dst, src, bytes);
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
    if (dry()) return CUDA_SUCCESS;
    memmove(host(dst), host(src), bytes);
    check_guards("a device-to-device copy");
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, void*) {
    return cuMemcpyDtoD_v2(dst, src, bytes);
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) {
    if (dry()) return CUDA_SUCCESS;
    memset(host(dst), value, n);
    check_guards("a memset");
    return CUDA_SUCCESS;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, void*) {
    return cuMemsetD8_v2(dst, value, n);
}
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    std::lock_guard<std::mutex> lock(allocations_lock);
    *total = memory_limit();
    *free_bytes = *total > allocated ? *total - allocated : 0;
    return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult e, const char** text) {
    static const std::map<int, const char*> names = {
        {CUDA_SUCCESS, "no error"},
        {CUDA_ERROR_INVALID_VALUE, "invalid argument (the emulation runs 1D blocks only)"},
        {CUDA_ERROR_OUT_OF_MEMORY, "out of memory"},
        {CUDA_ERROR_INVALID_DEVICE, "invalid device ordinal (the emulation has one device)"},
        {CUDA_ERROR_NOT_FOUND, "named symbol not found"},
    };
    auto it = names.find(e);
    *text = it == names.end() ? "unknown error" : it->second;
    return CUDA_SUCCESS;
}
CUresult cuGetErrorName(CUresult e, const char** text) { return cuGetErrorString(e, text); }

}  // extern "C"
