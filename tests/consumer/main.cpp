// Two translation units include the umbrella header: the library must link without duplicate
// symbols (every non-template function is inline).
#include <sgt/sgt.hpp>

#include <cstdio>

int other_translation_unit();

int main() {
  const float back = sgt::to_float(sgt::to_bfloat16(1.5f));
  if (back != 1.5f) return 1;
  std::printf("consumer ok (%s)\n", sgt::kernels::default_kernel_table().isa);
  return other_translation_unit();
}
