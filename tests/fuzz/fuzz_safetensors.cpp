// libFuzzer: a safetensors file. Opening validates the header (JSON, dtypes, shapes, offsets);
// every tensor that opens is then read in full through the widening loads, as the model loader
// does. Any sgt::Error is a correct answer; anything else is a finding.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/safetensors.hpp"

namespace fuzz_safetensors {

namespace {

float sum_of(const sgt::AnyTensorView& t) {
  float sum = 0;
  const std::size_t n = t.size();
  switch (t.dtype()) {
    case sgt::DType::F32:
      for (std::size_t i = 0; i < n; ++i) sum += static_cast<const float*>(t.data())[i];
      break;
    case sgt::DType::BF16:
      for (std::size_t i = 0; i < n; ++i)
        sum += sgt::to_float(static_cast<const sgt::bfloat16*>(t.data())[i]);
      break;
    case sgt::DType::F16:
      for (std::size_t i = 0; i < n; ++i)
        sum += sgt::to_float(static_cast<const sgt::float16*>(t.data())[i]);
      break;
  }
  return sum;
}

}  // namespace

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::string path = sgt_fuzz::write_scratch_file("input.safetensors", data, size);
  try {
    sgt::SafetensorsFile file(path);
    volatile float sink = 0;
    for (const std::string& name : file.names()) {
      try {
        sink = sink + sum_of(file.tensor(name));
      } catch (const sgt::Error&) {
      }
      (void)file.info(name);
    }
    (void)file.metadata();
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_safetensors", one_input);

}  // namespace fuzz_safetensors
