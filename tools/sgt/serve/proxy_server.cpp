// `sgt serve SGT_DIR --upstream URL`: the OpenAI-compatible privacy proxy. Each handler parses
// (serve/chat_request.hpp), runs the library pipeline (serve/chat_protection.hpp), relays the
// upstream's answer and serializes (serve/openai_responses.hpp).
#include "servers.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>

#include <sgt/core/secure_memory.hpp>
#include <sgt/serve/chat_protection.hpp>
#include <sgt/serve/chat_request.hpp>
#include <sgt/serve/openai_responses.hpp>
#include <sgt/serve/stop_strings.hpp>

#include "upstream.hpp"

namespace sgt_cli::serve {

using sgt::serve::ApiError;
using sgt::serve::ResponseJson;

namespace proxy_detail {

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

// The rendered chat, its ids and mask are the clean prompt: wiped before they are released.
struct PromptWiper {
  sgt::text::EncodedPrompt& p;
  ~PromptWiper() {
    sgt::secure_wipe(p.text.data(), p.text.size());
    sgt::secure_wipe(p.input.input_ids.data(), p.input.input_ids.size() * sizeof(std::int64_t));
    sgt::secure_wipe(p.offsets.data(), p.offsets.size() * sizeof(p.offsets[0]));
  }
};

class Proxy {
 public:
  Proxy(Service& service, const std::string& sgt_dir)
      : service_(service),
        options_(service.options()),
        url_(UpstreamUrl::parse(options_.upstream)),
        protection_(sgt_dir) {}

  // The upstream's model name: --upstream-model, else the first model it lists (asked once).
  std::string upstream_model() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!model_.empty()) return model_;
    if (!options_.upstream_model.empty()) return model_ = options_.upstream_model;
    const auto m = upstream_first_model(url_, std::min(options_.upstream_timeout_s, 5.0));
    if (!m) throw sgt::serve::upstream_unreachable("GET /v1/models failed (give --upstream-model)");
    return model_ = *m;
  }

  sgt::RunOptions run_options(const Slots::Slot& slot) const {
    sgt::RunOptions run;
    run.pool = &slot.pool();
    if (options_.noise_seed) {
      run.noise = sgt::NoiseSource::Torch;
      run.seed = *options_.noise_seed;
    }
    return run;
  }

  void chat(const httplib::Request& req, httplib::Response& res, RequestBody& body,
            RequestStats& stats) {
    const sgt::serve::ChatCompletionRequest r = sgt::serve::parse_chat_request(body.text());
    const std::string model = upstream_model();
    auto slot = service_.slots().acquire();
    sgt::text::EncodedPrompt prompt = protection_.encode(r.chat);
    PromptWiper wipe{prompt};
    if (options_.no_protection)
      std::fill(prompt.input.noise_mask.begin(), prompt.input.noise_mask.end(), std::uint8_t{0});
    const sgt::serve::ProtectedChat sent =
        protection_.protect(prompt, run_options(*slot), options_.output_dtype);
    stats.prompt_tokens = sent.prompt_tokens;
    stats.protected_tokens = sent.protected_tokens;
    stats.transform_ms = sent.transform_ms;

    sgt::VllmCompletionsRequest up;
    up.model = model;
    up.max_tokens = r.max_tokens;
    up.temperature = r.sampling.temperature;
    up.top_p = r.sampling.top_p;
    up.seed = r.sampling.seed;
    up.stream = true;  // always: pieces relay as they come, and stop strings can cut it short
    up.include_usage = true;
    auto upstream = std::make_shared<UpstreamStream>(
        url_, sgt::serve::ChatProtection::upstream_body(sent, up), options_.upstream_timeout_s);
    upstream->wait_started();  // 502 / 504 before any status is sent

    const sgt::serve::ResponseIdentity who{sgt::serve::random_response_id("chatcmpl-"),
                                           now_seconds(), model};
    auto stops = std::make_shared<sgt::serve::StopStrings>(r.stop);
    const std::size_t prompt_tokens = sent.prompt_tokens;
    if (!r.stream.stream) {
      std::string text, finish = "length";
      std::size_t completion_tokens = 0;
      while (const auto piece = upstream->next()) {
        text += stops->feed(piece->text);
        if (piece->finish_reason) finish = *piece->finish_reason;
        if (piece->usage) completion_tokens = piece->usage->completion_tokens;
        if (stops->stopped()) {
          upstream->cancel();
          finish = "stop";
          break;
        }
      }
      text += stops->finish();
      stats.completion_tokens = completion_tokens;
      res.set_content(sgt::serve::json_text(sgt::serve::chat_completion_json(
                          who, text, finish, {prompt_tokens, completion_tokens})),
                      "application/json");
      return;
    }

    stats.streamed = true;
    const bool include_usage = r.stream.include_usage;
    const auto t0 = std::chrono::steady_clock::now();
    auto shared_stats = std::make_shared<RequestStats>(stats);
    auto request = std::make_shared<httplib::Request>(req);
    const std::uint64_t id = std::stoull(res.get_header_value("X-Request-Id"));
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [upstream, stops, who, include_usage, prompt_tokens, slot, shared_stats](
            std::size_t, httplib::DataSink& sink) {
          auto send = [&](const ResponseJson& j) {
            const std::string e = sgt::serve::sse_event(j);
            return sink.write(e.data(), e.size());
          };
          std::string finish = "length";
          std::size_t completion_tokens = 0;
          try {
            if (!send(sgt::serve::chat_chunk_json(who, {{"role", "assistant"}, {"content", ""}},
                                                  std::nullopt))) {
              upstream->cancel();
              return false;
            }
            while (const auto piece = upstream->next()) {
              const std::string shown = stops->feed(piece->text);
              if (piece->finish_reason) finish = *piece->finish_reason;
              if (piece->usage) completion_tokens = piece->usage->completion_tokens;
              if (stops->stopped()) {
                upstream->cancel();
                finish = "stop";
              }
              if (!shown.empty() &&
                  !send(sgt::serve::chat_chunk_json(who, {{"content", shown}}, std::nullopt))) {
                upstream->cancel();  // the client went away: so does the upstream request
                return false;
              }
              if (stops->stopped()) break;
            }
            const std::string rest = stops->finish();
            if (!rest.empty()) send(sgt::serve::chat_chunk_json(who, {{"content", rest}}, std::nullopt));
            send(sgt::serve::chat_chunk_json(who, ResponseJson::object(), finish));
            if (include_usage)
              send(sgt::serve::chat_chunk_json(who, ResponseJson::object(), std::nullopt,
                                               sgt::serve::Usage{prompt_tokens, completion_tokens}));
          } catch (const ApiError& e) {
            // The status is sent: the failure travels as an error event, then the stream ends.
            const std::string ev = "data: " + sgt::serve::error_body(e) + "\n\n";
            sink.write(ev.data(), ev.size());
            finish = "error";
          }
          shared_stats->completion_tokens = completion_tokens;
          sink.write(sgt::serve::kSseDone, std::strlen(sgt::serve::kSseDone));
          sink.done();
          return true;
        },
        service_.stream_end_logger(id, request, shared_stats, t0));
  }

  void verify(const httplib::Request&, httplib::Response& res, RequestBody& body,
              RequestStats& stats) {
    const sgt::serve::VerificationRequest r = sgt::serve::parse_verification_request(body.text());
    auto slot = service_.slots().acquire();
    sgt::text::EncodedPrompt prompt = protection_.encode(r.chat);
    PromptWiper wipe{prompt};
    if (options_.no_protection)  // what a chat completion would send
      std::fill(prompt.input.noise_mask.begin(), prompt.input.noise_mask.end(), std::uint8_t{0});
    stats.prompt_tokens = prompt.input.seq_len;
    sgt::serve::VerificationFlags flags;
    flags.plain_text_embeddings = r.plain_text_embeddings;
    flags.transformed_embeddings = r.transformed_embeddings;
    flags.reconstructed_prompt = r.reconstructed_prompt;
    flags.obfuscation_score = r.obfuscation_score;
    res.set_content(sgt::serve::json_text(protection_.verify(prompt, run_options(*slot), flags)),
                    "application/json");
  }

  void models(httplib::Response& res) {
    res.set_content(sgt::serve::json_text(sgt::serve::models_json({upstream_model()}, now_seconds())),
                    "application/json");
  }

  // Ready: the transform is loaded (it is, once listening) and the upstream answers.
  void ready(httplib::Response& res) {
    if (!upstream_first_model(url_, std::min(options_.upstream_timeout_s, 2.0)))
      throw ApiError(503, "server_error", "the upstream does not answer GET /v1/models",
                     std::nullopt, "upstream_not_ready");
    res.set_content("{\"status\":\"ready\"}", "application/json");
  }

 private:
  Service& service_;
  const ServeOptions& options_;
  UpstreamUrl url_;
  sgt::serve::ChatProtection protection_;
  std::mutex mutex_;
  std::string model_;
};

}  // namespace proxy_detail

using namespace proxy_detail;

int run_proxy(const std::string& sgt_dir, ServeOptions options) {
  Service service(std::move(options));
  Proxy proxy(service, sgt_dir);
  service.post("/v1/chat/completions",
               [&](const httplib::Request& q, httplib::Response& s, RequestBody& b,
                   RequestStats& st) { proxy.chat(q, s, b, st); });
  service.post("/v1/stainedglass", [&](const httplib::Request& q, httplib::Response& s,
                                       RequestBody& b, RequestStats& st) { proxy.verify(q, s, b, st); });
  service.get("/v1/models", [&](const httplib::Request&, httplib::Response& s, RequestBody&,
                                RequestStats&) { proxy.models(s); });
  service.get("/livez", [](const httplib::Request&, httplib::Response& s, RequestBody&,
                           RequestStats&) { s.set_content("{\"status\":\"alive\"}", "application/json"); });
  service.get("/readyz", [&](const httplib::Request&, httplib::Response& s, RequestBody&,
                             RequestStats&) { proxy.ready(s); });
  if (service.options().no_protection)
    std::fprintf(stderr, "sgt serve: --no-protection: chats go upstream as clean embeddings "
                         "(checks against the upstream's own answer only)\n");
  return service.run("proxy for " + service.options().upstream);
}

}  // namespace sgt_cli::serve
