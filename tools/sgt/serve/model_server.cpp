// `sgt serve --model BASE_DIR`: the server side on a CPU, a Completions endpoint over
// sgt::ProtectedGeneration (without a transform: the prompt arrives protected, as prompt_embeds,
// or clean as text or ids). Each request runs on a slot's threads with a KV cache of its own,
// sized for its prompt and max_tokens; --max-concurrent bounds how many exist at once.
#include "servers.hpp"

#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>

#include <sgt/pipeline/protected_generation.hpp>
#include <sgt/serve/completion_request.hpp>
#include <sgt/serve/openai_responses.hpp>
#include <sgt/text/chat/prompt_encoder.hpp>

namespace sgt_cli::serve {

using sgt::serve::ApiError;

namespace model_server_detail {

// Thrown from the text callback when the client is gone: it unwinds the generation (its cache
// and workspace are released on the way) and no more tokens are computed for nobody.
struct ClientGone {};

const char* finish_reason(sgt::StopReason r) {
  return r == sgt::StopReason::StopToken ? "stop" : "length";
}

// The request's prompt in the form ProtectedGeneration takes.
struct Prompt {
  std::optional<sgt::text::EncodedPrompt> tokens;
  std::optional<sgt::StoredEmbeddings> embeds;
  ~Prompt() {
    if (tokens)
      sgt::secure_wipe(tokens->input.input_ids.data(),
                       tokens->input.input_ids.size() * sizeof(std::int64_t));
  }
};

class ModelServer {
 public:
  ModelServer(Service& service, const std::string& base_dir, std::string name)
      : service_(service), session_(base_dir), name_(std::move(name)) {}

  void complete(const httplib::Request& req, httplib::Response& res, RequestBody& body,
                RequestStats& stats) {
    sgt::serve::CompletionRequestLimits limits;
    const sgt::serve::CompletionRequest r = sgt::serve::parse_completion_request(body.text(), limits);
    auto slot = service_.slots().acquire();
    auto prompt = std::make_shared<Prompt>();
    if (r.prompt_text) {
      prompt->tokens = sgt::text::encode_text(session_.tokenizer(), *r.prompt_text, true);
    } else if (r.prompt_ids) {
      sgt::text::EncodedPrompt p;
      p.input = sgt::TransformInput::single(*r.prompt_ids);
      prompt->tokens = std::move(p);
    } else {
      const std::size_t hidden = session_.lm().hidden_size();
      sgt::serve::PromptEmbeddings e =
          sgt::serve::decode_prompt_embeds(*r.prompt_embeds, hidden, limits.max_prompt_tokens);
      prompt->embeds.emplace();
      prompt->embeds->seq_len = e.seq_len;
      prompt->embeds->values = std::move(e.values);
    }
    stats.prompt_tokens = prompt->tokens ? prompt->tokens->input.seq_len : prompt->embeds->seq_len;
    sgt::ProtectedGenerationOptions options;
    options.pool = &slot->pool();
    options.max_new_tokens = static_cast<std::size_t>(r.max_tokens);
    options.sampling.temperature = r.sampling.temperature.value_or(1.0);  // OpenAI's default
    options.sampling.top_p = r.sampling.top_p.value_or(1.0);
    options.sampling_seed = r.sampling.seed;
    const sgt::serve::ResponseIdentity who{sgt::serve::random_response_id("cmpl-"),
                                           static_cast<std::int64_t>(std::time(nullptr)), name_};
    auto generate = [this, prompt, options](const sgt::OnText& on_text) {
      return prompt->tokens ? session_.generate(*prompt->tokens, options, on_text)
                            : session_.generate(*prompt->embeds, options, on_text);
    };

    if (!r.stream.stream) {
      const sgt::ProtectedGenerationResult g = generate({});
      stats.completion_tokens = g.ids.size();
      res.set_content(sgt::serve::json_text(sgt::serve::text_completion_json(
                          who, g.text, finish_reason(g.stop_reason),
                          sgt::serve::Usage{g.prompt_tokens, g.ids.size()})),
                      "application/json");
      return;
    }
    stats.streamed = true;
    const bool include_usage = r.stream.include_usage;
    auto shared_stats = std::make_shared<RequestStats>(stats);
    auto request = std::make_shared<httplib::Request>(req);
    const std::uint64_t id = std::stoull(res.get_header_value("X-Request-Id"));
    const auto t0 = std::chrono::steady_clock::now();
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [generate, who, include_usage, slot, shared_stats](std::size_t, httplib::DataSink& sink) {
          auto send = [&](const sgt::serve::ResponseJson& j) {
            const std::string e = sgt::serve::sse_event(j);
            if (!sink.write(e.data(), e.size())) throw ClientGone{};
          };
          try {
            const sgt::ProtectedGenerationResult g = generate([&](std::string_view piece) {
              send(sgt::serve::text_completion_json(who, std::string(piece), std::nullopt,
                                                    std::nullopt));
            });
            shared_stats->completion_tokens = g.ids.size();
            send(sgt::serve::text_completion_json(who, "", finish_reason(g.stop_reason),
                                                  std::nullopt));
            if (include_usage)
              send(sgt::serve::text_completion_json(
                  who, "", std::nullopt, sgt::serve::Usage{g.prompt_tokens, g.ids.size()}));
          } catch (const ClientGone&) {
            return false;
          } catch (const std::exception& e) {
            const std::string ev =
                "data: " + sgt::serve::error_body(ApiError(400, "invalid_request_error", e.what())) +
                "\n\n";
            sink.write(ev.data(), ev.size());
          }
          sink.write(sgt::serve::kSseDone, std::strlen(sgt::serve::kSseDone));
          sink.done();
          return true;
        },
        service_.stream_end_logger(id, request, shared_stats, t0));
  }

  void models(httplib::Response& res) {
    res.set_content(sgt::serve::json_text(sgt::serve::models_json(
                        {name_}, static_cast<std::int64_t>(std::time(nullptr)))),
                    "application/json");
  }

 private:
  Service& service_;
  sgt::ProtectedGeneration session_;
  std::string name_;
};

}  // namespace model_server_detail

using namespace model_server_detail;

int run_model_server(const std::string& base_dir, const std::string& name, ServeOptions options) {
  Service service(std::move(options));
  ModelServer server(service, base_dir, name);
  service.post("/v1/completions", [&](const httplib::Request& q, httplib::Response& s,
                                      RequestBody& b, RequestStats& st) { server.complete(q, s, b, st); });
  service.get("/v1/models", [&](const httplib::Request&, httplib::Response& s, RequestBody&,
                                RequestStats&) { server.models(s); });
  for (const char* path : {"/livez", "/readyz"})
    service.get(path, [](const httplib::Request&, httplib::Response& s, RequestBody&,
                         RequestStats&) { s.set_content("{\"status\":\"ok\"}", "application/json"); });
  return service.run("model " + name);
}

}  // namespace sgt_cli::serve
