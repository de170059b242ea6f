// A program linked with sgt::dispatch: its own code built for the baseline, the kernels chosen at
// run time. It runs one kernel through the model layer's default table and says which ran.
#include <sgt/dispatch/dispatch.hpp>
#include <sgt/sgt.hpp>

#include <cstdio>

int main() {
  const sgt::kernels::KernelTable& kernels = sgt::kernels::default_kernel_table();
  float a[3] = {1, 2, 3};
  const float b[3] = {10, 20, 30};
  sgt::kernels::KernelContext context;
  kernels.add(context, sgt::TensorView<float>(a, {1, 3}), sgt::TensorView<const float>(b, {1, 3}));
  if (a[0] != 11 || a[2] != 33) return 1;
  std::printf("consumer dispatch ok (%s of %zu compiled)\n", kernels.isa,
              sgt::dispatch::compiled_isas().size());
  return 0;
}
