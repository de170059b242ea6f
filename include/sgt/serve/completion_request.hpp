// POST /v1/completions, as data: the request `sgt serve --model` answers, which is the request
// the proxy sends upstream (and what vLLM takes with --enable-prompt-embeds). Exactly one of
//
//   prompt         a string, a list of token ids, or a list holding one of those
//   prompt_embeds  base64 of the bytes of torch.save of a (T, H) tensor, F32/BF16/F16 (or a list
//                  holding one such string); io/torch_pt_reader.hpp reads it, bounded
//
// with max_tokens (default 16, as OpenAI and vLLM), temperature (default 1), top_p, seed,
// stream, stream_options.include_usage. A batch of prompts, stop strings, echo, suffix, best_of,
// logprobs, n > 1 and penalties are refused with a 400 naming the field.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/core/dtype.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/io/base64.hpp"
#include "sgt/io/torch_pt_reader.hpp"
#include "sgt/serve/api_error.hpp"
#include "sgt/serve/request_fields.hpp"
#include "sgt/serve/wiped_json.hpp"

namespace sgt::serve {

struct CompletionRequestLimits {
  std::uint64_t max_tokens = 1u << 20;
  std::size_t max_prompt_tokens = 32768;
};

struct CompletionRequest {
  std::string model;
  std::optional<std::string> prompt_text;
  std::optional<std::vector<std::int64_t>> prompt_ids;
  std::optional<std::string> prompt_embeds;  // base64, decoded by decode_prompt_embeds
  std::uint64_t max_tokens = 16;
  SamplingFields sampling;
  StreamFields stream;

  // A text or id prompt is a clean prompt (the plain model server's input): wiped with the request.
  CompletionRequest() = default;
  CompletionRequest(const CompletionRequest&) = default;
  CompletionRequest(CompletionRequest&&) = default;
  CompletionRequest& operator=(const CompletionRequest&) = default;
  CompletionRequest& operator=(CompletionRequest&&) = default;
  ~CompletionRequest() {
    if (prompt_text) wipe_string(*prompt_text);
    if (prompt_ids) secure_wipe(prompt_ids->data(), prompt_ids->capacity() * sizeof(std::int64_t));
  }
};

inline CompletionRequest parse_completion_request(std::string_view body,
                                                  const CompletionRequestLimits& limits = {}) {
  const WipedJson root = parse_request_body(body);
  const RequestFields f(root.get());
  refuse_unneutral_fields(f, /*chat=*/false);
  if (f.has("stop")) throw unsupported_field("stop", "stop strings are not applied by this server");
  CompletionRequest r;
  r.model = f.string("model").value_or("");
  const ChatJson* prompt = f.find("prompt");
  const ChatJson* embeds = f.find("prompt_embeds");
  if (!prompt == !embeds)
    throw invalid_request(prompt ? "prompt_embeds" : "prompt",
                          "give exactly one of prompt and prompt_embeds");
  // A list of one prompt is that prompt; more is a batch.
  auto single = [](const ChatJson* v, const char* key) -> const ChatJson* {
    if (!v->is_array() || v->empty() || !((*v)[0].is_array() || (*v)[0].is_string())) return v;
    if (v->size() != 1) throw unsupported_field(key, "one prompt per request");
    return &(*v)[0];
  };
  if (prompt) {
    prompt = single(prompt, "prompt");
    if (prompt->is_string()) {
      r.prompt_text = prompt->get<std::string>();
      if (r.prompt_text->empty()) throw invalid_request("prompt", "prompt must not be empty");
    } else if (prompt->is_array() && !prompt->empty()) {
      if (prompt->size() > limits.max_prompt_tokens)
        throw invalid_request("prompt", "more than " + std::to_string(limits.max_prompt_tokens) +
                                            " prompt tokens");
      std::vector<std::int64_t> ids;
      ids.reserve(prompt->size());
      for (const ChatJson& id : *prompt) {
        if (!id.is_number_integer() || id.get<std::int64_t>() < 0)
          throw invalid_request("prompt", "prompt ids must be non-negative integers");
        ids.push_back(id.get<std::int64_t>());
      }
      r.prompt_ids = std::move(ids);
    } else {
      throw invalid_request("prompt", "prompt must be a string or a non-empty list of token ids");
    }
  } else {
    embeds = single(embeds, "prompt_embeds");
    if (!embeds->is_string())
      throw invalid_request("prompt_embeds", "prompt_embeds must be a base64 string");
    r.prompt_embeds = embeds->get<std::string>();
  }
  r.max_tokens = f.integer("max_tokens", 1, limits.max_tokens).value_or(16);
  r.sampling = read_sampling_fields(f);
  r.stream = read_stream_fields(f);
  return r;
}

// prompt_embeds -> [T, hidden] f32 values (widened exactly), refusing a tensor of another rank or
// width, more than max_tokens rows, or a non-finite value; every error a 400 on prompt_embeds.
struct PromptEmbeddings {
  std::size_t seq_len = 0;
  WipedVector<float> values;
};

inline PromptEmbeddings decode_prompt_embeds(std::string_view base64, std::size_t hidden,
                                             std::size_t max_tokens) {
  try {
    // The archive holds T * H values and a few KiB of records around them.
    const std::size_t max_bytes = max_tokens * hidden * 4 + 65536;
    const std::vector<unsigned char> bytes = base64_decode(base64, max_bytes);
    TorchReadLimits limits;
    limits.max_elements = max_tokens * hidden;
    limits.max_rank = 2;
    const EncodedTensor t = read_torch_tensor(bytes.data(), bytes.size(), limits);
    if (t.shape.size() != 2 || t.shape[1] != hidden || t.shape[0] == 0)
      throw Error("must be a (T, " + std::to_string(hidden) +
                  ") tensor (the model's hidden size) with T >= 1");
    PromptEmbeddings out;
    out.seq_len = static_cast<std::size_t>(t.shape[0]);
    out.values.resize(out.seq_len * hidden);
    visit_dtype(t.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      for (std::size_t i = 0; i < out.values.size(); ++i) {
        T v;
        std::memcpy(&v, t.bytes.data() + i * sizeof(T), sizeof(T));
        out.values[i] = to_float(v);
        if (!std::isfinite(out.values[i]))
          throw Error("holds a non-finite value at element " + std::to_string(i));
      }
    });
    return out;
  } catch (const Error& e) {
    throw invalid_request("prompt_embeds", "prompt_embeds: " + e.message());
  }
}

}  // namespace sgt::serve
