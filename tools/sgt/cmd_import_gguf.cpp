// `sgt import-gguf MODEL.gguf OUT_DIR [--dtype bf16|f32]`: a GGUF model as a Hugging Face directory
// that `sgt generate`, `sgt audit --base` and sgt::CausalLM load (convert/gguf_import.hpp).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>
#include <sgt/convert/gguf_import.hpp>

#include "commands.hpp"
#include "flags.hpp"

namespace sgt_cli {

// Named, not anonymous: the tool builds as one translation unit (tools/CMakeLists.txt).
namespace cmd_import_gguf {

struct ImportGgufArgs {
  std::string gguf, out;
  sgt::DType dtype = sgt::DType::BF16;
};

void declare(CLI::App& app, ImportGgufArgs& a) {
  app.add_option("MODEL.gguf", a.gguf, "the GGUF file (a Llama model; a gpt2 or llama vocabulary)");
  app.add_option("OUT_DIR", a.out, "the directory to create (absent, or an empty directory)");
  add_value_flag(app, "--dtype", "bf16|f32",
                 "model.safetensors' dtype (default bf16; f32 keeps every dequantized value)",
                 [&a](const std::string& v) {
                   a.dtype = parse_enum("--dtype", v, sgt::kGgufImportDTypeNames);
                 });
}

void check(const ImportGgufArgs& a) {
  if (a.gguf.empty() || a.out.empty()) throw UsageError("import-gguf needs MODEL.gguf and OUT_DIR");
}

int run(const ImportGgufArgs& a) {
  sgt::GgufImportOptions options;
  options.dtype = a.dtype;
  const sgt::GgufImportSummary s = sgt::import_gguf(a.gguf, a.out, options);
  const nlohmann::ordered_json j = {{"model_dir", a.out},
                                    {"architecture", s.architecture},
                                    {"tokenizer", s.tokenizer},
                                    {"pre_tokenizer", s.pre_tokenizer},
                                    {"tensors", s.tensors},
                                    {"parameters", s.parameters},
                                    {"dtype", sgt::enum_name(sgt::kGgufImportDTypeNames, a.dtype)}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace cmd_import_gguf

Command add_import_gguf_command(CLI::App& sgt) {
  return make_command<cmd_import_gguf::ImportGgufArgs>(
      sgt, "import-gguf", "a GGUF model as a Hugging Face directory", cmd_import_gguf::declare,
      cmd_import_gguf::check, cmd_import_gguf::run);
}

}  // namespace sgt_cli
