// sgt::dispatch: one program, the kernels of several instruction sets, the best one this CPU runs
// chosen at run time -- for binaries that are distributed (what llama.cpp's CPU variants and
// gemma.cpp's Highway targets offer), where a -march=native build dies with SIGILL on an older
// CPU and a baseline build runs at SSE2 speed.
//
// How: the CMake target sgt::dispatch (cmake/sgtDispatch.cmake) compiles the kernels once per
// instruction set -- sse2, avx2 (x86-64-v3), avx512 (x86-64-v4) and avx512bf16 on x86-64; neon64
// on AArch64 -- each in its own objects with its own -march, each behind the KernelTable of its
// instruction-set namespace (core/isa.hpp keeps their names apart). A program that links it
// compiles its own code for the baseline with SGT_DISPATCH defined (the target adds it); its
// model layer then runs every kernel through kernel_table() below. Nothing else changes: the same
// headers, the same sgt::Transform.
//
// The choice, made once, at the first kernel_table() call: the environment variable SGT_ISA if it
// is set (an instruction set of this build, or "auto"), else the best compiled instruction set the
// CPU runs (dispatch/cpu_features.hpp). An SGT_ISA this build or this CPU cannot run is an
// sgt::Error naming what it can run, never a fallback and never SIGILL.
//
// Results: each instruction set gives exactly the bits of a header-only build for that
// instruction set, and results do not depend on the thread count. Across instruction sets they
// may differ in the last bits where docs/reliability.md says so (summation order of reductions,
// FMA contraction without FMA hardware).
#pragma once

#include <string>
#include <vector>

#include "sgt/dispatch/cpu_features.hpp"
#include "sgt/kernels/kernel_table.hpp"

namespace sgt::dispatch {

// The kernels chosen for this process (see above). Throws sgt::Error for an SGT_ISA that this
// build or this CPU cannot run; thread-safe.
const kernels::KernelTable& kernel_table();

// The instruction sets compiled into this program, best first.
std::vector<std::string> compiled_isas();

// Those of compiled_isas() this CPU runs, best first.
std::vector<std::string> runnable_isas();

}  // namespace sgt::dispatch
