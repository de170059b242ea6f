// Tensors a caller hands the library in a safetensors file of its own: stored noise (eps for a
// reproducible transform or audit) and stored prompt embeddings (what `sgt transform` wrote, fed
// to a base model). Errors name the file and the tensor.
#pragma once

#include <cmath>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/safetensors.hpp"

namespace sgt {

// An F32 tensor of a mapped file: `view` points into `file`, so it lives as long as this does.
struct StoredF32Tensor {
  std::string path, name;
  std::unique_ptr<SafetensorsFile> file;
  TensorView<const float> view;
};

inline StoredF32Tensor open_f32_tensor(const std::string& path, const std::string& name) {
  StoredF32Tensor t;
  t.path = path;
  t.name = name;
  t.file = std::make_unique<SafetensorsFile>(path);
  try {
    if (!t.file->contains(name)) throw Error("has no tensor '" + name + "'");
    const AnyTensorView v = t.file->tensor(name);
    if (v.dtype() != DType::F32)
      throw Error("must be F32, is " + std::string(dtype_name(v.dtype()))).at_tensor(name);
    t.view = v.as<float>();
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
  return t;
}

// Runs f(); an error f raises about the stored tensor (a shape the model refuses, say) gains the
// name of the file it came from.
template <class F>
decltype(auto) naming_stored_tensor(const std::optional<StoredF32Tensor>& stored, F&& f) {
  try {
    return f();
  } catch (Error& e) {
    if (stored && e.tensor() == stored->name) e.at_file(stored->path);
    throw;
  }
}

// Prompt embeddings [S, H] read from tensor `name` of `path`, stored as [1, S, H] or [S, H] in F32,
// BF16 or F16, widened to f32 exactly; H must be `hidden` and every value finite.
struct StoredEmbeddings {
  std::size_t seq_len = 0;
  WipedVector<float> values;  // [seq_len, hidden]
};

inline StoredEmbeddings read_stored_embeddings(const std::string& path, const std::string& name,
                                               std::size_t hidden) {
  try {
    const SafetensorsFile file(path);
    if (!file.contains(name)) throw Error("has no tensor '" + name + "'");
    const AnyTensorView t = file.tensor(name);
    const bool shape_ok = (t.rank() == 3 && t.dim(0) == 1) || t.rank() == 2;
    if (!shape_ok || t.dim(t.rank() - 1) != hidden || t.size() == 0)
      throw Error("must be [1, S, " + std::to_string(hidden) + "] or [S, " +
                  std::to_string(hidden) + "] (the base model's hidden size), is " +
                  t.shape_string())
          .at_tensor(name);
    StoredEmbeddings out;
    out.seq_len = t.size() / hidden;
    out.values.resize(t.size());
    visit_dtype(t.dtype(), [&](auto tag) {
      const auto typed = t.as<typename decltype(tag)::type>();
      for (std::size_t i = 0; i < out.values.size(); ++i) out.values[i] = to_float(typed.data()[i]);
    });
    for (std::size_t i = 0; i < out.values.size(); ++i)
      if (!std::isfinite(out.values[i]))
        throw Error("holds a non-finite value at element " + std::to_string(i)).at_tensor(name);
    return out;
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
}

}  // namespace sgt
