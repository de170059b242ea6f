// The kernels of the test programs, compiled once. The test programs are built with SGT_DISPATCH
// (core/isa.hpp), so their model layer (model/ops.hpp) runs every kernel through
// sgt::dispatch::kernel_table(), which this file defines as the kernel table of the instruction
// set the tests are compiled for -- the same -march and -O as theirs, hence the same kernels a
// header-only build of theirs would run. Without it every test program that runs a Transform or a
// CausalLM compiles all the kernels again: about 20 s of CPU each at -O3 (docs/architecture.md,
// "Build time"). A test that calls a kernel by name still compiles that kernel itself.
#if defined(SGT_DISPATCH)
#error "compile the tests' kernels without SGT_DISPATCH: they are the real kernels"
#endif

#include <sgt/dispatch/dispatch.hpp>
#include <sgt/kernels/isa_kernel_table.hpp>

namespace sgt::dispatch {

const kernels::KernelTable& kernel_table() {
  return kernels::kernel_table();
}

}  // namespace sgt::dispatch
