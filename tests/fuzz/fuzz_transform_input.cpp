// libFuzzer: IN.json, the request (input_ids, noise_mask, attention_mask; one row or a batch).
#include <cstddef>
#include <cstdint>
#include <string>

#include "sgt/core/error.hpp"
#include "sgt/io/transform_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)sgt::parse_transform_input_text(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const sgt::Error&) {
  }
  return 0;
}
