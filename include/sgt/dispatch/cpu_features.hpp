// What the CPU this process runs on can execute, read once with CPUID (x86-64) or known from the
// architecture (AArch64 always has NEON): the instruction sets sgt::dispatch chooses between.
//
// On x86 an instruction set counts only when the CPU has it and the operating system saves its
// registers on a context switch (XGETBV): AVX needs the YMM state enabled, AVX-512 the opmask and
// ZMM states too. A CPU that reports AVX-512 under an OS or hypervisor that masks it off therefore
// gets the AVX2 kernels, not SIGILL.
#pragma once

#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace sgt::dispatch {

struct CpuFeatures {
  bool sse2 = false;
  bool avx2 = false;        // x86-64-v3: AVX2 + FMA + F16C (what the avx2 kernels are built for)
  bool avx512 = false;      // x86-64-v4: AVX-512 F, BW, DQ and VL
  bool avx512bf16 = false;  // x86-64-v4 + AVX512_BF16 (vdpbf16ps)
  bool neon64 = false;      // AArch64

  // Whether the kernels of instruction set `isa` ("sse2", "avx2", "avx512", "avx512bf16",
  // "neon64") run on this CPU.
  bool supports(const std::string& isa) const {
    if (isa == "sse2") return sse2;
    if (isa == "avx2") return avx2;
    if (isa == "avx512") return avx512;
    if (isa == "avx512bf16") return avx512bf16;
    if (isa == "neon64") return neon64;
    return false;
  }
};

namespace detail {
#if defined(__x86_64__) || defined(__i386__)
inline unsigned long long read_xcr0() noexcept {
  unsigned int eax = 0, edx = 0;
  // xgetbv with ecx = 0; the byte form needs no -mxsave.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif
}  // namespace detail

inline CpuFeatures detect_cpu_features() noexcept {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  f.sse2 = (edx >> 26) & 1;
  const bool fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1,
             f16c = (ecx >> 29) & 1;
  const unsigned long long xcr0 = osxsave ? detail::read_xcr0() : 0;
  const bool ymm_state = (xcr0 & 0x6) == 0x6;            // SSE and AVX state
  const bool zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  unsigned int max_leaf = 0;
  __get_cpuid(0, &max_leaf, &ebx, &ecx, &edx);
  if (max_leaf < 7) return f;
  unsigned int b7 = 0, c7 = 0, d7 = 0, a7 = 0;
  __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);
  const bool avx2 = (b7 >> 5) & 1, avx512f = (b7 >> 16) & 1, avx512dq = (b7 >> 17) & 1,
             avx512bw = (b7 >> 30) & 1, avx512vl = (b7 >> 31) & 1;
  unsigned int a71 = 0, b71 = 0, c71 = 0, d71 = 0;
  if (a7 >= 1) __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
  const bool bf16 = (a71 >> 5) & 1;
  f.avx2 = avx && avx2 && fma && f16c && ymm_state;
  f.avx512 = f.avx2 && avx512f && avx512dq && avx512bw && avx512vl && zmm_state;
  f.avx512bf16 = f.avx512 && bf16;
#elif defined(__aarch64__)
  f.neon64 = true;
#endif
  return f;
}

}  // namespace sgt::dispatch
