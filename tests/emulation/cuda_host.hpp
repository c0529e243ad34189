// Runs CUDA kernels written with plain indexing, __shared__ memory and __syncthreads() on
// the host, so their logic is checked on machines without a GPU. A block's threads are
// fibers on the calling thread: each runs until its next __syncthreads(), then the next one
// runs; when all have arrived, the next round starts. Rounds alternate the threads' order
// (0..n-1, then n-1..0), so a read that a missing barrier leaves unordered against a write
// sees the wrong value in one of them. __shared__ arrays are statics (one block runs at a
// time). Not for kernels that use warp intrinsics or atomics.
//
// A fiber switch saves the callee-saved registers and the stack pointer: a dozen
// instructions on x86-64 (below); elsewhere ucontext, whose switches also make a signal-mask
// system call (about 3x slower overall).
#pragma once
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emulation {
inline void fiber_entry();

#if defined(__x86_64__)
// mrgan_fiber_switch(from, to): saves rbp, rbx, r12-r15, MXCSR and the x87 control word on
// the current stack, stores the stack pointer in *from, and resumes the fiber whose stack
// pointer is `to` (the System V ABI's callee-saved state; everything else the caller saves).
asm(R"(
    .text
    .p2align 4
    .hidden mrgan_fiber_switch
    .globl mrgan_fiber_switch
    .type mrgan_fiber_switch, @function
mrgan_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size mrgan_fiber_switch, .-mrgan_fiber_switch
)");
extern "C" void mrgan_fiber_switch(void** from, void* to);

struct Context {
    void* sp = nullptr;
};
inline void switch_context(Context& from, Context& to) { mrgan_fiber_switch(&from.sp, to.sp); }
// A context that starts fiber_entry on the stack [base, base + size): the frame
// mrgan_fiber_switch pops (control words, six registers) below fiber_entry's address, placed
// so that fiber_entry starts with the stack aligned as after a call.
inline void make_context(Context& c, char* base, size_t size) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(base) + size) & ~uintptr_t(15);
    auto* frame = reinterpret_cast<uint64_t*>(top - 72);
    uint32_t control[2] = {0x1F80, 0x037F};  // MXCSR and x87 control word at reset
    std::memcpy(frame, control, 8);
    for (int i = 1; i <= 6; ++i) frame[i] = 0;
    frame[7] = reinterpret_cast<uint64_t>(&fiber_entry);
    c.sp = frame;
}
#else
struct Context {
    ucontext_t uc;
};
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, char* base, size_t size) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = base;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, fiber_entry, 0);
}
#endif

// The fibers of the block that is running.
struct Block {
    static constexpr size_t STACK = 64 * 1024;
    std::vector<Context> fiber;
    std::vector<std::unique_ptr<char[]>> stack;
    std::vector<char> done;
    Context scheduler;
    unsigned current = 0;
    const std::function<void()>* kernel = nullptr;
};
inline Block block;

// A fiber's whole life: the kernel, then back to the scheduler for good.
inline void fiber_entry() {
    (*block.kernel)();
    block.done[block.current] = 1;
    for (;;) switch_context(block.fiber[block.current], block.scheduler);
}

inline void sync_threads() { switch_context(block.fiber[block.current], block.scheduler); }
}  // namespace emulation

#define __syncthreads() emulation::sync_threads()
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// CUDA's device math that the kernels use and C++ lacks.
using std::max;
using std::min;
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
// Separately rounded products and sums (host C++ in ISO mode contracts nothing either).
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }

// Runs `kernel` for every thread of every block of a launch with 1D blocks and a grid of up
// to three dimensions, block after block.
inline void launch(dim3 grid, unsigned threads, const std::function<void()>& kernel) {
    using emulation::block;
    gridDim = grid;
    blockDim = {threads, 1, 1};
    block.kernel = &kernel;
    block.fiber.resize(threads);
    block.done.assign(threads, 0);
    while (block.stack.size() < threads) block.stack.emplace_back(new char[emulation::Block::STACK]);
    for (unsigned b = 0; b < grid.x * grid.y * grid.z; ++b) {
        blockIdx = {b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y)};
        for (unsigned t = 0; t < threads; ++t) {
            emulation::make_context(block.fiber[t], block.stack[t].get(), emulation::Block::STACK);
            block.done[t] = 0;
        }
        for (bool forward = true, running = true; running; forward = !forward) {
            running = false;
            for (unsigned i = 0; i < threads; ++i) {
                unsigned t = forward ? i : threads - 1 - i;
                if (block.done[t]) continue;
                block.current = t;
                threadIdx = {t, 0, 0};
                emulation::switch_context(block.scheduler, block.fiber[t]);
                running |= !block.done[t];
            }
        }
    }
}

// The drivers' file I/O: reads or writes exactly `bytes`, false otherwise.
inline bool io(FILE* f, void* p, size_t bytes, bool write) {
    return (write ? fwrite(p, 1, bytes, f) : fread(p, 1, bytes, f)) == bytes;
}
