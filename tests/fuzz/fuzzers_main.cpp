// libFuzzer's entry points for a program of several harnesses (tests/fuzz/CMakeLists.txt builds one
// per library, so that the library is compiled once instead of once per harness). The harness is
// the one named by $SGT_FUZZ_TARGET or, without it, by the name the program was started as: the
// build makes a link named after each harness (fuzz_config -> fuzzers_sgt), so
// `build/fuzz/tests/fuzz/fuzz_config CORPUS` runs that harness alone, with libFuzzer's own flags.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz_support.hpp"

namespace {
const sgt_fuzz::Harness* chosen = nullptr;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const char* env = std::getenv("SGT_FUZZ_TARGET");
  const std::string name = env && *env ? std::string(env)
                           : *argc > 0  ? std::filesystem::path((*argv)[0]).filename().string()
                                        : std::string();
  for (const sgt_fuzz::Harness& h : sgt_fuzz::harnesses()) {
    if (name == h.name) chosen = &h;
  }
  if (chosen == nullptr) {
    std::string names;
    for (const sgt_fuzz::Harness& h : sgt_fuzz::harnesses()) names += std::string(" ") + h.name;
    std::fprintf(stderr,
                 "no fuzz harness named '%s' in this program: run it through a link named after "
                 "one, or set SGT_FUZZ_TARGET to one of:%s\n",
                 name.c_str(), names.c_str());
    std::exit(2);
  }
  if (chosen->initialize != nullptr) chosen->initialize();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return chosen->one_input(data, size);
}
