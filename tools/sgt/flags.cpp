#include "flags.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace sgt_cli {

std::uint64_t parse_u64(const std::string& flag, const std::string& v) {
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos)
    throw UsageError(flag + " takes a non-negative integer, got '" + v + "'");
  errno = 0;
  const unsigned long long n = std::strtoull(v.c_str(), nullptr, 10);
  if (errno == ERANGE) throw UsageError(flag + " value '" + v + "' is out of range");
  return n;
}

double parse_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(d))
    throw UsageError(flag + " needs a number, got '" + v + "'");
  return d;
}

CLI::Option* add_value_flag(CLI::App& app, const std::string& name, const std::string& value_name,
                            const std::string& help,
                            std::function<void(const std::string&)> handler) {
  return app.add_option_function<std::string>(name, std::move(handler), help)
      ->type_name(value_name);
}

namespace {

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= list.size()) {
    const std::size_t comma = std::min(list.find(',', at), list.size());
    if (comma == at) throw UsageError("--protect-roles takes a comma-separated list of role names");
    out.push_back(list.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

}  // namespace

void add_prompt_flags(CLI::App& app, PromptFlags& p) {
  add_value_flag(app, "--input", "IN.json", "the request: input_ids and noise_mask made elsewhere",
                 [&p](const std::string& v) { p.input = v; });
  add_value_flag(app, "--text", "TEXT", "plain text, through MODEL_DIR's tokenizer.json",
                 [&p](const std::string& v) { p.text = v; });
  add_value_flag(app, "--chat", "CHAT.json", "a chat, through MODEL_DIR's chat template",
                 [&p](const std::string& v) { p.chat = v; });
  app.add_flag("--no-special-tokens", p.no_special_tokens, "--text: no BOS");
  app.add_flag("--add-generation-prompt", p.add_generation_prompt,
               "--chat: the template's assistant header last");
  add_value_flag(app, "--protect-roles", "ROLE,ROLE",
                 "--chat: protect only these roles' contents (default: every role)",
                 [&p](const std::string& v) { p.protect_roles = split_commas(v); });
  app.add_flag("--no-protect-tool-schemas", p.no_protect_tool_schemas,
               "--chat: send tool schemas clean (default: protected)");
  app.add_flag("--transform-all-tokens", p.transform_all_tokens,
               "protect every token, the template's scaffolding included");
}

void check_prompt_flags(const PromptFlags& p, bool allow_input, const char* command) {
  const int sources = int(!p.input.empty()) + int(p.text.has_value()) + int(!p.chat.empty());
  const std::string choices = allow_input ? "--input IN.json, --text TEXT or --chat CHAT.json"
                                          : "--text TEXT or --chat CHAT.json";
  if (sources != 1) throw UsageError(std::string(command) + " needs exactly one of " + choices);
  if (!p.input.empty() && !allow_input)
    throw UsageError(std::string(command) + " takes no --input");
  if (!p.input.empty() &&
      (p.no_special_tokens || p.add_generation_prompt || p.transform_all_tokens))
    throw UsageError(
        "--no-special-tokens, --add-generation-prompt and --transform-all-tokens need "
        "--text or --chat");
  if (p.text && p.add_generation_prompt) throw UsageError("--add-generation-prompt needs --chat");
  if (!p.chat.empty() && p.no_special_tokens)
    throw UsageError("--no-special-tokens needs --text (a chat template writes its own)");
  if (p.chat.empty() && (!p.protect_roles.empty() || p.no_protect_tool_schemas))
    throw UsageError("--protect-roles and --no-protect-tool-schemas need --chat");
}

void add_run_flags(CLI::App& app, RunFlags& r) {
  add_value_flag(app, "--threads", "N", "threads (default: every core)",
                 [&r](const std::string& v) {
                   r.threads = static_cast<std::size_t>(parse_u64("--threads", v));
                   if (r.threads == 0 || r.threads > 1024)
                     throw UsageError("--threads must be between 1 and 1024");
                 });
  add_value_flag(app, "--precision", "auto|f32|bf16",
                 "the Linears' arithmetic (default auto: bf16 for BF16 weights)",
                 [&r](const std::string& v) {
                   r.precision = parse_enum("--precision", v, sgt::kPrecisionNames);
                 });
  add_value_flag(app, "--max-prompt-tokens", "N",
                 "refuse longer prompts before the transform runs (default " +
                     std::to_string(sgt::kDefaultMaxTransformTokens) + ")",
                 [&r](const std::string& v) {
                   r.max_prompt_tokens = static_cast<std::size_t>(parse_u64("--max-prompt-tokens", v));
                   if (r.max_prompt_tokens == 0)
                     throw UsageError("--max-prompt-tokens must be at least 1");
                 });
}

void add_model_dir(CLI::App& app, std::string& dir, const std::string& name,
                   const std::string& help) {
  app.add_option(name, dir, help);
}

std::string directory_base_name(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::size_t slash = dir.find_last_of('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

}  // namespace sgt_cli
