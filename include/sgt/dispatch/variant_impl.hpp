// One instruction set's kernels for sgt::dispatch. Include this in exactly one translation unit
// per instruction set, compiled for that instruction set (the -march of the variant) and without
// SGT_DISPATCH, with SGT_DISPATCH_VARIANT_ISA defined to the variant's name ("avx2"): it defines
// sgt::dispatch::variant_kernel_table_<isa>(), which the selector (dispatch_impl.hpp) calls.
// cmake/sgtDispatch.cmake generates these translation units.
#pragma once

#include <string_view>

#include "sgt/core/isa.hpp"
#include "sgt/kernels/isa_kernel_table.hpp"
#include "sgt/kernels/kernel_table.hpp"

#if defined(SGT_DISPATCH)
#error "a dispatch variant holds real kernels: compile it without SGT_DISPATCH"
#endif
#if !defined(SGT_DISPATCH_VARIANT_ISA)
#error "define SGT_DISPATCH_VARIANT_ISA to the variant's instruction set (\"avx2\", ...)"
#endif

// The flags the variant was compiled with must give the instruction set it is named after; a
// mismatch would put, say, AVX-512 code behind the name "avx2".
static_assert(std::string_view(SGT_ISA_LEVEL_NAME) == std::string_view(SGT_DISPATCH_VARIANT_ISA),
              "the -march of this dispatch variant does not match its name");

namespace sgt::dispatch {

const kernels::KernelTable& SGT_ISA_CAT(variant_kernel_table_, SGT_ISA_LEVEL)() {
  return kernels::kernel_table();
}

}  // namespace sgt::dispatch
