// `sgt make-transform BASE_DIR OUT_DIR --layers K [--init-std S] [--dtype keep|f32|bf16|f16]`: an
// untrained transform for a Hugging Face base model, as tools/convert_hf.py makes it
// (convert/make_transform.hpp).
#include <cstdio>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <sgt/convert/make_transform.hpp>

#include "commands.hpp"
#include "flags.hpp"

namespace sgt_cli {

// Named, not anonymous: the tool builds as one translation unit (tools/CMakeLists.txt).
namespace cmd_make_transform {

struct MakeTransformArgs {
  std::string base, out;
  std::optional<std::uint64_t> layers;
  sgt::MakeTransformOptions options;
};

void declare(CLI::App& app, MakeTransformArgs& a) {
  app.add_option("BASE_DIR", a.base, "the base model: config.json and model.safetensors");
  app.add_option("OUT_DIR", a.out, "the directory to create (absent, or an empty directory)");
  add_value_flag(app, "--layers", "K",
                 "the base model's first K decoder layers make each estimator's trunk (required)",
                 [&a](const std::string& v) { a.layers = parse_u64("--layers", v); });
  add_value_flag(
      app, "--init-std", "S",
      "the noise's standard deviation before training, in (0.0001, 2) (default 0.1)",
      [&a](const std::string& v) {
        const double s = parse_double("--init-std", v);
        if (!(s > sgt::kMakeTransformStdMin && s < sgt::kMakeTransformStdMax))
          throw UsageError("--init-std must be between 0.0001 and 2 (exclusive), got " + v);
        a.options.init_std = s;
      });
  add_value_flag(app, "--dtype", "keep|f32|bf16|f16",
                 "model.safetensors' dtype (default keep: as the base stores each tensor)",
                 [&a](const std::string& v) {
                   a.options.dtype = parse_enum("--dtype", v, sgt::kTransformStorageNames);
                 });
}

void check(MakeTransformArgs& a) {
  if (a.base.empty() || a.out.empty())
    throw UsageError("make-transform needs BASE_DIR and OUT_DIR");
  if (!a.layers) throw UsageError("make-transform needs --layers K");
  if (*a.layers == 0) throw UsageError("--layers must be at least 1");
  a.options.layers = *a.layers;
}

int run(const MakeTransformArgs& a) {
  const sgt::MakeTransformSummary s = sgt::make_transform(a.base, a.out, a.options);
  const nlohmann::ordered_json j = {
      {"model_dir", a.out},
      {"model_type", s.model_type},
      {"layers", s.layers},
      {"base_layers", s.base_layers},
      {"vocab_size", s.vocab_size},
      {"hidden_size", s.hidden_size},
      {"tensors", s.tensors},
      {"parameters", s.parameters},
      {"dtype", sgt::enum_name(sgt::kTransformStorageNames, a.options.dtype)},
      {"init_std", a.options.init_std},
      {"initial_std", s.initial_std},
      {"copied", s.copied_files}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace cmd_make_transform

Command add_make_transform_command(CLI::App& sgt) {
  return make_command<cmd_make_transform::MakeTransformArgs>(
      sgt, "make-transform", "an untrained transform for a Hugging Face base model",
      cmd_make_transform::declare, cmd_make_transform::check, cmd_make_transform::run);
}

}  // namespace sgt_cli
