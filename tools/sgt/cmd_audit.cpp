// `sgt audit MODEL_DIR (--input IN.json | --text T | --chat CHAT.json)`: nearest-neighbour
// recovery of the protected tokens over N draws (audit/recovery_audit.hpp), and with --base what
// the noise costs the base model (audit/utility_audit.hpp). The JSON report goes to stdout
// (audit/report_json.hpp); a table for people to stderr, so stdout stays one JSON document.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <sgt/audit/heat_map.hpp>
#include <sgt/audit/recovery_audit.hpp>
#include <sgt/audit/report_json.hpp>
#include <sgt/audit/utility_audit.hpp>
#include <sgt/core/thread_pool.hpp>
#include <sgt/io/png_writer.hpp>
#include <sgt/io/stored_tensors.hpp>
#include <sgt/io/transform_output.hpp>
#include <sgt/lm/causal_lm.hpp>
#include <sgt/lm/config_json.hpp>
#include <sgt/model/transform.hpp>

#include "commands.hpp"
#include "flags.hpp"
#include "text_front_end.hpp"

namespace sgt_cli {

// Named, not anonymous: the tool builds as one translation unit (tools/CMakeLists.txt).
namespace cmd_audit {

struct AuditArgs {
  std::string dir, noise_draws, plot, base;
  PromptFlags prompt;
  RunFlags run;
  std::optional<std::uint64_t> draws, base_new_tokens;
  bool json_only = false;
};

void declare(CLI::App& app, AuditArgs& t) {
  add_model_dir(app, t.dir, "MODEL_DIR", "the SGT model's directory");
  add_prompt_flags(app, t.prompt);
  add_run_flags(app, t.run);
  add_value_flag(app, "--draws", "N", "transforms of the prompt (default 16)", [&t](auto& v) {
    t.draws = parse_u64("--draws", v);
    if (*t.draws == 0 || *t.draws > 100000)
      throw UsageError("--draws must be between 1 and 100000");
  });
  add_value_flag(app, "--noise-draws", "DRAWS.safetensors",
                 "stored eps: F32 tensor 'noise' [N, S, H] (reproducible, not secure draws)",
                 [&t](auto& v) { t.noise_draws = v; });
  app.add_flag("--json-only", t.json_only, "no table on stderr");
  add_value_flag(app, "--plot", "HEAT.png", "a heat map of protected tokens x draws",
                 [&t](auto& v) {
                   if (v.empty()) throw UsageError("--plot needs a file name");
                   t.plot = v;
                 });
  add_value_flag(app, "--base", "BASE_DIR",
                 "the base model: KL, top-1 agreement and rank per position, and both answers",
                 [&t](auto& v) {
                   if (v.empty()) throw UsageError("--base needs a directory");
                   t.base = v;
                 });
  add_value_flag(app, "--base-new-tokens", "N", "greedy tokens of each answer (default 16)",
                 [&t](auto& v) {
                   t.base_new_tokens = parse_u64("--base-new-tokens", v);
                   if (*t.base_new_tokens > 4096)
                     throw UsageError("--base-new-tokens must be at most 4096");
                 });
}

void check(const AuditArgs& t) {
  if (t.dir.empty()) throw UsageError("audit needs MODEL_DIR");
  check_prompt_flags(t.prompt, true, "audit");
  if (t.draws && !t.noise_draws.empty())
    throw UsageError("--noise-draws gives the draws itself: it cannot be combined with --draws");
  if (t.base_new_tokens && t.base.empty())
    throw UsageError("--base-new-tokens needs --base BASE_DIR");
}

int run(const AuditArgs& t) {
  if (!t.plot.empty()) sgt::check_output_folder(t.plot);
  const sgt::Transform model(t.dir);
  const sgt::TransformInput in = load_request(t.dir, t.prompt);
  const sgt::AuditDescription description{
      sgt::precision_name(model.resolve_precision(t.run.precision)),
      t.noise_draws.empty() ? "secure" : "injected", token_text(t.dir)};

  sgt::ThreadPool pool(t.run.threads);
  sgt::AuditOptions options;
  options.pool = &pool;
  options.draws = static_cast<std::size_t>(t.draws.value_or(16));
  options.precision = t.run.precision;
  options.max_tokens = t.run.max_prompt_tokens;
  std::optional<sgt::CausalLM> base;
  if (!t.base.empty()) base.emplace(sgt::CausalLM::load(t.base));
  std::optional<sgt::StoredF32Tensor> stored;
  sgt::AuditReport report;
  std::optional<sgt::UtilityReport> utility;
  if (!t.noise_draws.empty()) {
    stored = sgt::open_f32_tensor(t.noise_draws, "noise");
    options.injected_draws = stored->view;
  }
  sgt::naming_stored_tensor(stored, [&] {
    if (!base) return void(report = sgt::audit_transform(model, in, options));
    sgt::UtilityOptions u;
    u.new_tokens = static_cast<std::size_t>(t.base_new_tokens.value_or(16));
    u.stop_tokens = sgt::load_eos_token_ids(t.base);
    u.run.pool = &pool;
    u.run.precision = t.run.precision;
    utility = sgt::audit_with_utility(model, *base, in, report, options, u);
  });

  nlohmann::ordered_json j = sgt::to_json(report, in, description);
  sgt::UtilityDescription utility_description;
  if (utility) {
    utility_description = {t.base, sgt::precision_name(base->resolve_precision(t.run.precision)),
                           static_cast<std::size_t>(t.base_new_tokens.value_or(16)),
                           token_text(t.base)};
    j["utility"] = sgt::to_json(*utility, utility_description);
  }
  if (!t.plot.empty()) sgt::write_heat_map(t.plot, report);  // before stdout: all or nothing
  std::printf("%s\n",
              j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  if (!t.json_only)
    std::fputs(
        sgt::audit_table(report, description, utility ? &*utility : nullptr, utility_description)
            .c_str(),
        stderr);
  return 0;
}

}  // namespace cmd_audit

Command add_audit_command(CLI::App& sgt) {
  return make_command<cmd_audit::AuditArgs>(sgt, "audit",
                                            "how well a transform hides a prompt, and its cost",
                                            cmd_audit::declare, cmd_audit::check, cmd_audit::run);
}

}  // namespace sgt_cli
