// `sgt serve SGT_DIR --upstream URL`: the OpenAI-compatible privacy proxy; `sgt serve --model
// BASE_DIR`: a Completions server over a base model (docs/format.md, "Serve"). This file parses
// the flags; tools/sgt/serve/ holds the HTTP shell, include/sgt/serve/ the protocol.
#include <optional>
#include <string>

#include <sgt/io/json.hpp>
#include <sgt/io/transform_output.hpp>

#include "commands.hpp"
#include "flags.hpp"
#include "serve/servers.hpp"

namespace sgt_cli {

namespace cmd_serve {

struct ServeArgs {
  std::string dir, model_dir, api_key_file;
  serve::ServeOptions options;
  std::optional<double> upstream_timeout;
};

void declare(CLI::App& app, ServeArgs& s) {
  add_model_dir(app, s.dir, "SGT_DIR", "the SGT model the proxy protects prompts with");
  auto& o = s.options;
  add_value_flag(app, "--upstream", "URL", "the Completions server with prompt embeds (vLLM)",
                 [&o](auto& v) { o.upstream = v; });
  add_value_flag(app, "--model", "BASE_DIR", "serve BASE_DIR's causal LM instead of proxying",
                 [&s](auto& v) { s.model_dir = v; });
  add_value_flag(app, "--upstream-model", "NAME",
                 "the upstream's model name (default: the first it lists)",
                 [&o](auto& v) { o.upstream_model = v; });
  add_value_flag(app, "--host", "ADDR", "the address to listen on (default 127.0.0.1)",
                 [&o](auto& v) { o.host = v; });
  add_value_flag(app, "--port", "N", "the port (default 8600; 0: any free port)", [&o](auto& v) {
    const std::uint64_t p = parse_u64("--port", v);
    if (p > 65535) throw UsageError("--port must be at most 65535");
    o.port = static_cast<int>(p);
  });
  add_value_flag(app, "--api-key-file", "FILE", "accepted Bearer keys, one per line",
                 [&s](auto& v) { s.api_key_file = v; });
  add_value_flag(app, "--threads", "N", "compute threads in all (default 0: every core)",
                 [&o](auto& v) { o.threads = static_cast<std::size_t>(parse_u64("--threads", v)); });
  add_value_flag(app, "--max-concurrent", "N", "requests in flight at most; more get 429 (default 4)",
                 [&o](auto& v) {
                   const std::uint64_t n = parse_u64("--max-concurrent", v);
                   if (n == 0 || n > 1024) throw UsageError("--max-concurrent must be 1 to 1024");
                   o.max_concurrent = static_cast<std::size_t>(n);
                 });
  add_value_flag(app, "--max-body-bytes", "N", "the largest request body (default 8 MiB)",
                 [&o](auto& v) {
                   o.max_body_bytes = static_cast<std::size_t>(parse_u64("--max-body-bytes", v));
                   if (o.max_body_bytes == 0) throw UsageError("--max-body-bytes must be at least 1");
                 });
  add_value_flag(app, "--upstream-timeout", "SECONDS",
                 "504 when the upstream sends nothing this long (default 60)", [&s](auto& v) {
                   s.upstream_timeout = parse_double("--upstream-timeout", v);
                   if (!(*s.upstream_timeout > 0 && *s.upstream_timeout <= 3600))
                     throw UsageError("--upstream-timeout must be in (0, 3600]");
                 });
  add_value_flag(app, "--request-read-timeout", "SECONDS",
                 "408 when a request's line, headers and body take longer than this from its "
                 "first byte (default 30)",
                 [&o](auto& v) {
                   o.request_read_timeout_s = parse_double("--request-read-timeout", v);
                   if (!(o.request_read_timeout_s >= 1 && o.request_read_timeout_s <= 3600))
                     throw UsageError("--request-read-timeout must be in [1, 3600]");
                 });
  add_value_flag(app, "--output-dtype", "f32|bf16|f16", "the embeddings sent upstream (default bf16)",
                 [&o](auto& v) {
                   o.output_dtype = parse_enum("--output-dtype", v, sgt::kOutputDTypeNames);
                 });
  add_value_flag(app, "--seed", "N", "torch-seeded protection noise (tests only, never production)",
                 [&o](auto& v) { o.noise_seed = parse_u64("--seed", v); });
  app.add_flag("--no-protection", o.no_protection,
               "send chats upstream unprotected (noise mask all 0): checks against the upstream's "
               "own answer only, never production");
}

void check(ServeArgs& s) {
  const bool proxy = !s.dir.empty();
  if (proxy == !s.model_dir.empty())
    throw UsageError("serve needs SGT_DIR --upstream URL (the proxy) or --model BASE_DIR");
  if (proxy && s.options.upstream.empty()) throw UsageError("the proxy needs --upstream URL");
  if (!proxy && (!s.options.upstream.empty() || !s.options.upstream_model.empty() ||
                 s.upstream_timeout || s.options.noise_seed || s.options.no_protection))
    throw UsageError(
        "--upstream, --upstream-model, --upstream-timeout, --seed and --no-protection are the "
        "proxy's");
  if (s.upstream_timeout) s.options.upstream_timeout_s = *s.upstream_timeout;
}

int run(ServeArgs& s) {
  serve::block_termination_signals();
  if (!s.api_key_file.empty()) {
    try {
      s.options.keys = sgt::serve::ApiKeys::parse(sgt::read_text_file(s.api_key_file, 1 << 20));
    } catch (sgt::Error& e) {
      e.at_file(s.api_key_file);
      throw;
    }
  }
  if (!s.model_dir.empty())
    return serve::run_model_server(s.model_dir, directory_base_name(s.model_dir), s.options);
  return serve::run_proxy(s.dir, s.options);
}

}  // namespace cmd_serve

Command add_serve_command(CLI::App& sgt) {
  return make_command<cmd_serve::ServeArgs>(sgt, "serve",
                                            "an OpenAI-compatible privacy proxy, or a model server",
                                            cmd_serve::declare, cmd_serve::check, cmd_serve::run);
}

}  // namespace sgt_cli
