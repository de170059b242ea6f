// The selector of sgt::dispatch: the definitions of dispatch/dispatch.hpp. Include this in exactly
// one translation unit, compiled for the baseline, after defining SGT_DISPATCH_VARIANTS(X) as the
// list of compiled variants, best first: X(avx512bf16) X(avx512) X(avx2) X(sse2).
// cmake/sgtDispatch.cmake generates that translation unit.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/dispatch/cpu_features.hpp"
#include "sgt/dispatch/dispatch.hpp"
#include "sgt/kernels/kernel_table.hpp"

#if !defined(SGT_DISPATCH_VARIANTS)
#error "define SGT_DISPATCH_VARIANTS(X) as the compiled variants, best first: X(avx2) X(sse2)"
#endif

namespace sgt::dispatch {

#define SGT_DISPATCH_DECLARE_VARIANT_(isa) const kernels::KernelTable& variant_kernel_table_##isa();
SGT_DISPATCH_VARIANTS(SGT_DISPATCH_DECLARE_VARIANT_)
#undef SGT_DISPATCH_DECLARE_VARIANT_

namespace detail {

struct Variant {
  const char* isa;
  const kernels::KernelTable& (*table)();
};

#define SGT_DISPATCH_VARIANT_ENTRY_(isa) Variant{#isa, &variant_kernel_table_##isa},
inline constexpr Variant kVariants[] = {SGT_DISPATCH_VARIANTS(SGT_DISPATCH_VARIANT_ENTRY_)};
#undef SGT_DISPATCH_VARIANT_ENTRY_

inline std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "none" : s;
}

inline const kernels::KernelTable& choose_kernel_table() {
  const CpuFeatures cpu = detect_cpu_features();
  const char* env = std::getenv("SGT_ISA");
  const std::string wanted = env ? env : "";
  if (wanted.empty() || wanted == "auto") {
    for (const Variant& v : kVariants)
      if (cpu.supports(v.isa)) return v.table();
    throw Error("sgt::dispatch: this CPU runs none of the instruction sets compiled in (" +
                join(compiled_isas()) + ")");
  }
  for (const Variant& v : kVariants) {
    if (wanted != v.isa) continue;
    if (!cpu.supports(v.isa))
      throw Error("SGT_ISA=" + wanted + ": this CPU cannot run it (it runs: " +
                  join(runnable_isas()) + ")");
    return v.table();
  }
  throw Error("SGT_ISA=" + wanted + ": not an instruction set of this build (compiled: " +
              join(compiled_isas()) + "; or auto)");
}

}  // namespace detail

const kernels::KernelTable& kernel_table() {
  // Chosen once; a throw leaves it unchosen, so every later call reports the same error.
  static const kernels::KernelTable& table = detail::choose_kernel_table();
  return table;
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> names;
  for (const detail::Variant& v : detail::kVariants) names.emplace_back(v.isa);
  return names;
}

std::vector<std::string> runnable_isas() {
  const CpuFeatures cpu = detect_cpu_features();
  std::vector<std::string> names;
  for (const detail::Variant& v : detail::kVariants)
    if (cpu.supports(v.isa)) names.emplace_back(v.isa);
  return names;
}

}  // namespace sgt::dispatch
