// The instruction-set namespace: every function whose machine code depends on the instruction set
// the translation unit is compiled for (core/simd.hpp, the kernels, the ChaCha20 noise source)
// lives in an inline namespace named after that instruction set, `isa_avx2` say. Callers never
// write it (`sgt::kernels::matmul` finds it), but the linker sees `sgt::kernels::isa_avx2::matmul`.
//
// Why: an inline function is compiled into every object that uses it and the linker keeps one copy
// of each name. Two objects of one program built for different instruction sets -- the usual way to
// ship a binary that runs anywhere and uses AVX-512 where it can (sgt::dispatch, and PyTorch's
// `CPU_CAPABILITY` namespaces the same way) -- would otherwise hand the AVX-512 copy of a kernel to
// the baseline caller, which then dies with SIGILL on an older CPU. Distinct names make each
// object keep its own kernels.
//
// One name per level of x86-64 psABI (x86-64, -v2 = sse4_2, -v3 = avx2, -v4 = avx512) plus
// AVX512-BF16, and one per ARM profile: the macros below are exactly those core/simd.hpp and xsimd
// choose code paths by. Unusual mixes of -m flags map to the nearest level below; do not link two
// such mixes of one level into one program.
//
// The rule for headers: `SGT_ISA_BEGIN` / `SGT_ISA_END` are opened innermost, inside whatever
// namespace (`sgt::kernels`, `sgt::kernels::detail`, ...) the code is in, and never around a
// namespace declaration. A `detail` namespace inside the ISA namespace would make
// `sgt::kernels::detail` ambiguous wherever a neutral header also has one.
#pragma once

#if defined(__aarch64__)
#define SGT_ISA_LEVEL neon64
#elif defined(__ARM_NEON)
#define SGT_ISA_LEVEL neon
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__AVX512BF16__)
#define SGT_ISA_LEVEL avx512bf16
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__)
#define SGT_ISA_LEVEL avx512
#elif defined(__AVX512F__)
#define SGT_ISA_LEVEL avx512f
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define SGT_ISA_LEVEL avx2
#elif defined(__AVX__)
#define SGT_ISA_LEVEL avx
#elif defined(__SSE4_2__)
#define SGT_ISA_LEVEL sse4_2
#elif defined(__SSE2__)
#define SGT_ISA_LEVEL sse2
#else
#define SGT_ISA_LEVEL scalar
#endif

#define SGT_ISA_CAT_(a, b) a##b
#define SGT_ISA_CAT(a, b) SGT_ISA_CAT_(a, b)
// A program that links sgt::dispatch compiles its own code with SGT_DISPATCH defined: its model
// layer calls the dispatched kernel table instead of the kernels of its own instruction set, so it
// gets names of its own (isa_dispatched_sse2, ...), distinct from those of the dispatch library's
// kernel objects and of any header-only object linked beside it.
#if defined(SGT_DISPATCH)
#define SGT_ISA SGT_ISA_CAT(isa_dispatched_, SGT_ISA_LEVEL)
#else
#define SGT_ISA SGT_ISA_CAT(isa_, SGT_ISA_LEVEL)
#endif

#define SGT_ISA_BEGIN inline namespace SGT_ISA {
#define SGT_ISA_END }

#define SGT_ISA_STRINGIFY_(x) #x
#define SGT_ISA_STRINGIFY(x) SGT_ISA_STRINGIFY_(x)
// "avx2", ...: the instruction set this translation unit's kernels are compiled for.
#define SGT_ISA_LEVEL_NAME SGT_ISA_STRINGIFY(SGT_ISA_LEVEL)
