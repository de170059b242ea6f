// libFuzzer: a Hugging Face causal LM's config.json (sgt::CausalLM, docs/format.md section 9), read
// as CausalLM::load reads it: size limit, strict JSON, the family row's keys and defaults, every
// size product checked for overflow.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/log.hpp"
#include "sgt/lm/config_json.hpp"

namespace fuzz_causal_lm_config {

// Unknown keys are warnings (transformers ignores them too); fuzzed configs are full of them, and
// printing each one would make stderr the bottleneck. The messages are still built.
void initialize() {
  sgt::set_log_handler([](const std::string& message) {
    volatile std::size_t n = message.size();
    (void)n;
  });
}

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::string path = sgt_fuzz::write_scratch_file("config.json", data, size);
  try {
    (void)sgt::load_causal_lm_config(path);
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_causal_lm_config", one_input, initialize);

}  // namespace fuzz_causal_lm_config
