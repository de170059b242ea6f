// The flags more than one command takes, declared once each (name, value name, help, handler),
// and the parsers every handler uses. A command's own flags are declared in its cmd_*.cpp; CLI11
// generates the usage text from the declarations (`sgt --help`, `sgt COMMAND --help`).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <sgt/core/enum_names.hpp>
#include <sgt/core/precision.hpp>
#include <sgt/model/transform.hpp>

namespace sgt_cli {

// A bad command line: exit status 2 (other errors exit 1).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::uint64_t parse_u64(const std::string& flag, const std::string& value);
double parse_double(const std::string& flag, const std::string& value);

template <class Enum, std::size_t N>
Enum parse_enum(const std::string& flag, const std::string& value,
                const sgt::EnumName<Enum> (&table)[N]) {
  if (const std::optional<Enum> e = sgt::enum_from_name(table, value)) return *e;
  throw UsageError(flag + " must be " + sgt::enum_names_list(table, "or") + ", got '" + value +
                   "'");
}

// A flag with a value, handled by `handler` (which throws UsageError on a bad value).
CLI::Option* add_value_flag(CLI::App& app, const std::string& name, const std::string& value_name,
                            const std::string& help,
                            std::function<void(const std::string&)> handler);

// Where a command's prompt comes from (--input / --text / --chat) and how it is encoded.
struct PromptFlags {
  std::string input, chat;
  std::optional<std::string> text;
  bool no_special_tokens = false, add_generation_prompt = false, transform_all_tokens = false,
       no_protect_tool_schemas = false;
  std::vector<std::string> protect_roles;  // empty: every role

  bool given() const { return !input.empty() || text || !chat.empty(); }
};
void add_prompt_flags(CLI::App& app, PromptFlags& p);
// Exactly one source, and the encoding flags only where they apply. `allow_input`: IN.json is
// accepted (the transform's commands), not only text and chats.
void check_prompt_flags(const PromptFlags& p, bool allow_input, const char* command);

// --threads N (0, the default: every core), --precision and --max-prompt-tokens.
struct RunFlags {
  std::size_t threads = 0;
  sgt::Precision precision = sgt::Precision::Auto;
  std::size_t max_prompt_tokens = sgt::kDefaultMaxTransformTokens;  // RunOptions::max_tokens
};
void add_run_flags(CLI::App& app, RunFlags& r);

// The one positional argument of a command (MODEL_DIR, BASE_DIR).
void add_model_dir(CLI::App& app, std::string& dir, const std::string& name,
                   const std::string& help);

// MODEL_DIR's last path component ("models/demo/" -> "demo").
std::string directory_base_name(std::string dir);

}  // namespace sgt_cli
