// libFuzzer: model.safetensors.index.json, the Hugging Face shard index, beside two real shards
// (copied once from tests/data/safetensors/sharded). Opening checks that the index describes the
// shards exactly and that shard names are plain file names; every listed tensor is then looked up.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/tensor_store.hpp"

namespace fuzz_shard_index {

namespace {

const std::filesystem::path& model_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d = sgt_fuzz::scratch_dir() / "sharded";
    std::filesystem::create_directories(d);
    const std::filesystem::path from =
        std::filesystem::path(SGT_TEST_DATA_DIR) / "safetensors/sharded";
    for (const char* shard :
         {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
      std::filesystem::copy_file(from / shard, d / shard,
                                 std::filesystem::copy_options::overwrite_existing);
    return d;
  }();
  return dir;
}

}  // namespace

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path dir = model_dir();
  sgt_fuzz::write_scratch_file("sharded/model.safetensors.index.json", data, size);
  try {
    sgt::TensorStore store(dir.string());
    for (const std::string& name : store.names()) (void)store.tensor(name).byte_size();
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_shard_index", one_input);

}  // namespace fuzz_shard_index
