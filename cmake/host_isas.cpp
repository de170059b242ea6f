// Prints the instruction sets of sgt::dispatch that this machine runs, as a CMake list
// ("sse2;avx2;"): cmake/sgtHostIsas.cmake runs it at configure time.
#include <cstdio>

#include <sgt/dispatch/cpu_features.hpp>

int main() {
  const sgt::dispatch::CpuFeatures cpu = sgt::dispatch::detect_cpu_features();
  for (const char* isa : {"sse2", "avx2", "avx512", "avx512bf16", "neon64"})
    if (cpu.supports(isa)) std::printf("%s;", isa);
  return 0;
}
