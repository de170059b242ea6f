// TensorStore: all the tensors of a model, whether they sit in one safetensors file or in shards.
//
// The path may be
//   (a) a directory holding `model.safetensors`,
//   (b) a directory holding `model.safetensors.index.json` (the Hugging Face index:
//       {"metadata": {...}, "weight_map": {tensor: shard file name}}) and its shards,
//   (c) a safetensors file, or an index file (name ending in `.index.json`) directly.
// A directory holding both files is read through `model.safetensors`, as transformers does.
//
// Every shard is opened and validated at construction (SafetensorsFile checks its own header), and
// the index must describe the shards exactly: each tensor in exactly one shard, the one the index
// names, and no tensor in a shard that the index does not list. A shard name must be a plain file
// name in the index's directory: a path separator or `..` could point the loader anywhere on the
// machine. Symbolic links are followed (the Hugging Face cache is made of them). Shards the index
// does not mention are not opened.
//
// Every error is an sgt::Error naming the file (index or shard) and, where one is involved, the
// tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/json.hpp"
#include "sgt/io/mapped_file.hpp"
#include "sgt/io/safetensors.hpp"

namespace sgt {

inline constexpr const char* kSafetensorsSingleFile = "model.safetensors";
inline constexpr const char* kSafetensorsIndexFile = "model.safetensors.index.json";

class TensorStore {
 public:
  explicit TensorStore(const std::string& path) : path_(path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw Error("no such file or directory").at_file(path);
    if (fs::is_directory(st)) {
      const fs::path single = fs::path(path) / kSafetensorsSingleFile;
      const fs::path index = fs::path(path) / kSafetensorsIndexFile;
      if (fs::exists(single, ec)) {
        open_single(single.string());
      } else if (fs::exists(index, ec)) {
        open_sharded(index.string());
      } else {
        throw Error(std::string("directory holds neither ") + kSafetensorsSingleFile + " nor " +
                    kSafetensorsIndexFile)
            .at_file(path);
      }
    } else if (ends_with(path, ".index.json")) {
      open_sharded(path);
    } else {
      open_single(path);
    }
  }

  const std::string& path() const noexcept { return path_; }
  std::size_t size() const noexcept { return where_.size(); }
  // Sum of the tensors' stored bytes (their data_offsets spans).
  std::uint64_t total_bytes() const noexcept { return total_bytes_; }
  // 1 unless sharded.
  std::size_t file_count() const noexcept { return files_.size(); }

  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // Sorted by name.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(where_.size());
    for (const auto& kv : where_) out.push_back(kv.first);
    return out;
  }
  const TensorInfo& info(const std::string& name) const { return file(name).info(name); }
  // A view into the mapped file, valid as long as this store lives (moving the store keeps it
  // valid: the files are held by pointer).
  AnyTensorView tensor(const std::string& name) const { return file(name).tensor(name); }
  // The path of the safetensors file that holds `name` (index directory / shard name if sharded).
  const std::string& file_of(const std::string& name) const { return file(name).path(); }

 private:
  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }

  const SafetensorsFile& file(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end()) throw Error("no such tensor").at_tensor(name).at_file(path_);
    return *it->second;
  }

  void open_single(const std::string& file_path) {
    files_.push_back(std::make_unique<SafetensorsFile>(file_path));
    const SafetensorsFile& f = *files_.back();
    for (const std::string& name : f.names()) add(name, f);
  }

  void add(const std::string& name, const SafetensorsFile& f) {
    where_.emplace(name, &f);
    total_bytes_ += f.info(name).byte_size();
  }

  static Error repeated_index_key(const std::vector<std::string>& path) {
    if (path.size() == 2 && path[0] == "weight_map")
      return Error("weight_map lists the tensor twice").at_tensor(path[1]);
    return Error("key '" + path.back() + "' appears twice")
        .at_key(detail::abbreviate(detail::join_keys(path)));
  }

  // The index must be a JSON object with an object "weight_map" of strings; duplicate keys are
  // refused (a tensor listed twice could name two shards, and nlohmann would keep only the last).
  static std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
    const MappedFile text(index_path);
    const char* begin = reinterpret_cast<const char*>(text.data());
    JsonReadOptions options;
    options.what = "index";
    // root -> weight_map / metadata -> values: 2 levels; the metadata's content is not ours to
    // judge, so allow some nesting there.
    options.max_depth = 16;
    options.describe_repeated_key = repeated_index_key;
    nlohmann::json index;
    try {
      index = parse_json_checked(begin, begin + text.size(), options);
    } catch (Error& e) {
      e.at_file(index_path);
      throw;
    }
    if (index.contains("metadata") && !index["metadata"].is_object())
      throw Error("index metadata is " + detail::describe_json(index["metadata"]) +
                  ", not an object")
          .at_key("metadata")
          .at_file(index_path);
    if (!index.contains("weight_map"))
      throw Error("index has no weight_map").at_key("weight_map").at_file(index_path);
    const nlohmann::json& map = index["weight_map"];
    if (!map.is_object())
      throw Error("weight_map is " + detail::describe_json(map) +
                  ", not an object of tensor names to shard file names")
          .at_key("weight_map")
          .at_file(index_path);
    std::map<std::string, std::string> out;
    for (const auto& [name, shard] : map.items()) {
      if (!shard.is_string())
        throw Error("weight_map value " + detail::describe_json(shard) +
                    " is not a string (a shard file name)")
            .at_tensor(name)
            .at_file(index_path);
      out.emplace(name, shard.get<std::string>());
    }
    return out;
  }

  static bool is_plain_file_name(const std::string& name) {
    return !name.empty() && name.find('/') == std::string::npos &&
           name.find('\\') == std::string::npos && name.find('\0') == std::string::npos &&
           name.find("..") == std::string::npos && name != ".";
  }

  void open_sharded(const std::string& index_path) {
    namespace fs = std::filesystem;
    const std::map<std::string, std::string> weight_map = read_weight_map(index_path);
    const fs::path dir = fs::path(index_path).parent_path();

    // Shard name -> one tensor that lists it (for messages), in name order: opening order and the
    // first error reported do not depend on hashing.
    std::map<std::string, std::string> shards;
    for (const auto& [name, shard] : weight_map) {
      if (!is_plain_file_name(shard))
        throw Error("shard file name '" + detail::abbreviate(shard) +
                    "' is not a plain file name in the index's directory (path separators and "
                    "'..' are refused)")
            .at_tensor(name)
            .at_file(index_path);
      shards.emplace(shard, name);
    }

    std::map<std::string, const SafetensorsFile*> by_shard;
    for (const auto& [shard, example] : shards) {
      const fs::path shard_path = dir / shard;
      std::error_code ec;
      if (!fs::exists(shard_path, ec))
        throw Error("shard '" + shard + "' (named in " + index_path + ") does not exist")
            .at_tensor(example)
            .at_file(shard_path.string());
      files_.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
      by_shard.emplace(shard, files_.back().get());
    }

    // Where each tensor really is.
    std::map<std::string, std::vector<const std::string*>> holders;
    for (const auto& [shard, f] : by_shard)
      for (const std::string& name : f->names()) holders[name].push_back(&shard);

    for (const auto& [name, in] : holders) {
      if (in.size() > 1)
        throw Error("the same tensor is stored in two shards, '" + *in[0] + "' and '" + *in[1] +
                    "'")
            .at_tensor(name)
            .at_file(by_shard.at(*in[1])->path());
      auto listed = weight_map.find(name);
      if (listed == weight_map.end())
        throw Error("tensor is in this shard but not listed in the index " + index_path)
            .at_tensor(name)
            .at_file(by_shard.at(*in[0])->path());
    }
    for (const auto& [name, shard] : weight_map) {
      const SafetensorsFile& f = *by_shard.at(shard);
      auto it = holders.find(name);
      if (it == holders.end())
        throw Error("tensor is listed in the index for shard '" + shard + "' but absent from it")
            .at_tensor(name)
            .at_file(f.path());
      if (*it->second[0] != shard)
        throw Error("tensor is listed in the index for shard '" + shard +
                    "' but absent from it (it is in '" + *it->second[0] + "')")
            .at_tensor(name)
            .at_file(f.path());
      add(name, f);
    }
  }

  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
  std::uint64_t total_bytes_ = 0;
};

}  // namespace sgt
