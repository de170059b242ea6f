// libFuzzer: an sgt4t config.json, read as the model loader reads it (size limit, strict JSON,
// every key checked, every size product checked for overflow).
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/model/config_json.hpp"

namespace fuzz_config {

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::string path = sgt_fuzz::write_scratch_file("config.json", data, size);
  try {
    (void)sgt::load_model_config(path);
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_config", one_input);

}  // namespace fuzz_config
