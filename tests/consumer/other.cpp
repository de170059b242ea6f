#include <sgt/sgt.hpp>

int other_translation_unit() {
  return sgt::to_float(sgt::to_float16(2.0f)) == 2.0f ? 0 : 1;
}
