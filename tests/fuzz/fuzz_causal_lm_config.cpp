// libFuzzer: a Hugging Face causal LM's config.json (sgt::CausalLM, docs/format.md section 9), read
// as CausalLM::load reads it: size limit, strict JSON, the family row's keys and defaults, every
// size product checked for overflow.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/log.hpp"
#include "sgt/lm/config_json.hpp"

// Unknown keys are warnings (transformers ignores them too); fuzzed configs are full of them, and
// printing each one would make stderr the bottleneck. The messages are still built.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sgt::set_log_handler([](const std::string& message) {
    volatile std::size_t n = message.size();
    (void)n;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = sgt_fuzz::write_scratch_file("config.json", data, size);
  try {
    (void)sgt::load_causal_lm_config(path);
  } catch (const sgt::Error&) {
  }
  return 0;
}
