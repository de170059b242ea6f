// libFuzzer: IN.json, the request (input_ids, noise_mask, attention_mask; one row or a batch).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/transform_input.hpp"

namespace fuzz_transform_input {

int one_input(const std::uint8_t* data, std::size_t size) {
  try {
    (void)sgt::parse_transform_input_text(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_transform_input", one_input);

}  // namespace fuzz_transform_input
