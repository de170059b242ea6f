// libFuzzer: a GGUF file. Opening parses the header, the metadata and the tensor infos against the
// file's size; every tensor that opens is then dequantized in full, and the file is imported into a
// scratch folder as `sgt import-gguf` does (config, tokenizer and weights rebuilt from it). Any
// sgt::Error is a correct answer; anything else (a crash, another exception, a sanitizer report)
// is a finding.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "fuzz_support.hpp"
#include "sgt/convert/gguf_import.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/gguf.hpp"

namespace fuzz_gguf {

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::string path = sgt_fuzz::write_scratch_file("input.gguf", data, size);
  try {
    const sgt::GgufFile file(path);
    volatile float sink = 0;
    for (const sgt::GgufTensorInfo& t : file.tensors()) {
      const std::vector<float> v = file.dequantize(t);
      if (!v.empty()) sink = sink + v[0] + v.back();
    }
    (void)file.metadata();
  } catch (const sgt::Error&) {
  }
  const std::filesystem::path out = sgt_fuzz::scratch_dir() / "imported";
  std::error_code ec;
  std::filesystem::remove_all(out, ec);
  try {
    sgt::GgufImportOptions options;
    options.dtype = sgt::DType::F32;
    sgt::import_gguf(path, out.string(), options);
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_gguf", one_input);

}  // namespace fuzz_gguf
