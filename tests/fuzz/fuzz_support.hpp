// Shared by the libFuzzer harnesses: how a harness joins its fuzz program (one program holds every
// harness of a library, tests/fuzz/CMakeLists.txt), a private scratch folder, and writing the
// input to a file there for the readers that take paths (safetensors is memory-mapped,
// config.json and the shard index are read by path).
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sgt_fuzz {

// One harness: the name it is run by (a link to its program, or $SGT_FUZZ_TARGET;
// fuzzers_main.cpp), what libFuzzer calls with each input, and what runs once before the first
// input (or nothing).
struct Harness {
  const char* name;
  int (*one_input)(const std::uint8_t* data, std::size_t size);
  void (*initialize)();
};

// The harnesses of this program, in the order they registered.
inline std::vector<Harness>& harnesses() {
  static std::vector<Harness> all;
  return all;
}

// A harness file ends with one of these, at namespace scope: it registers the harness before
// main().
struct Register {
  Register(const char* name, int (*one_input)(const std::uint8_t*, std::size_t),
           void (*initialize)() = nullptr) {
    harnesses().push_back({name, one_input, initialize});
  }
};

// A folder of this process's own under $TMPDIR (or /tmp), made once.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::filesystem::path d = std::filesystem::path(tmp && *tmp ? tmp : "/tmp") /
                              ("sgt_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Writes data to scratch_dir()/name and returns its path.
inline std::string write_scratch_file(const std::string& name, const std::uint8_t* data,
                                      std::size_t size) {
  const std::filesystem::path p = scratch_dir() / name;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) std::abort();  // the harness itself failed, not the code under test
  return p.string();
}

}  // namespace sgt_fuzz
