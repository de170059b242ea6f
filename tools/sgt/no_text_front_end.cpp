// The tool built without the text front end (SGT_TEXT=OFF): IN.json only.
#include <filesystem>

#include <sgt/core/error.hpp>
#include <sgt/io/transform_input.hpp>

#include "commands.hpp"
#include "text_front_end.hpp"

namespace sgt_cli {

namespace {
constexpr const char* kNoText = "this sgt was built without the text front end (SGT_TEXT=OFF)";
}

sgt::TransformInput load_request(const std::string&, const PromptFlags& p) {
  if (!p.input.empty()) return sgt::load_transform_input(p.input);
  throw sgt::Error(std::string(kNoText) + ": use --input");
}

sgt::TokenText token_text(const std::string&) {
  return {};
}

nlohmann::ordered_json tokenizer_info(const std::string& model_dir) {
  if (!std::filesystem::exists(model_dir + "/tokenizer.json")) return nullptr;
  return "present (this sgt was built without the text front end)";
}

// The text-only commands exist, to say why they cannot run.
Command add_tokenize_command(CLI::App& sgt) {
  CLI::App* app = sgt.add_subcommand("tokenize", "(needs the text front end)")->allow_extras();
  return {app, []() -> int { throw sgt::Error(kNoText); }};
}

Command add_generate_command(CLI::App& sgt) {
  CLI::App* app = sgt.add_subcommand("generate", "(needs the text front end)")->allow_extras();
  return {app, []() -> int { throw sgt::Error(kNoText); }};
}

}  // namespace sgt_cli
