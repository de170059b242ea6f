// The responses, as data: OpenAI's chat.completion, chat.completion.chunk, text_completion (and
// its streamed form), the model list, and server-sent-event framing. What clients rely on: every
// chunk of a stream carries the same id, created and model; the first chunk's delta holds the
// role, the last one the finish_reason; with stream_options.include_usage a chunk with empty
// choices carries the usage; the stream ends with `data: [DONE]`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/random/os_entropy.hpp"

namespace sgt::serve {

using ResponseJson = nlohmann::ordered_json;

struct Usage {
  std::size_t prompt_tokens = 0, completion_tokens = 0;
};

// Who a response is: id ("chatcmpl-..." / "cmpl-..." + 24 hex digits from the OS), creation time
// in seconds since the epoch, and the model name the server answers as.
struct ResponseIdentity {
  std::string id;
  std::int64_t created = 0;
  std::string model;
};

inline std::string random_response_id(const char* prefix) {
  unsigned char bytes[12];
  fill_os_entropy(bytes, sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = prefix;
  for (const unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

inline ResponseJson usage_json(const Usage& u) {
  return ResponseJson{{"prompt_tokens", u.prompt_tokens},
                      {"completion_tokens", u.completion_tokens},
                      {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

inline ResponseJson chat_completion_json(const ResponseIdentity& who, const std::string& content,
                                         const std::string& finish_reason, const Usage& usage) {
  ResponseJson message{{"role", "assistant"}, {"content", content}};
  ResponseJson choice{{"index", 0},
                      {"message", message},
                      {"logprobs", nullptr},
                      {"finish_reason", finish_reason}};
  return ResponseJson{{"id", who.id},          {"object", "chat.completion"},
                      {"created", who.created}, {"model", who.model},
                      {"choices", ResponseJson::array({choice})}, {"usage", usage_json(usage)}};
}

// One chunk: `delta` ({"role": "assistant", "content": ""} first, {"content": piece} after, {}
// with the finish_reason last); with usage given, the usage chunk (choices empty).
inline ResponseJson chat_chunk_json(const ResponseIdentity& who, const ResponseJson& delta,
                                    const std::optional<std::string>& finish_reason,
                                    const std::optional<Usage>& usage = std::nullopt) {
  ResponseJson j{{"id", who.id},
                 {"object", "chat.completion.chunk"},
                 {"created", who.created},
                 {"model", who.model}};
  if (usage) {
    j["choices"] = ResponseJson::array();
    j["usage"] = usage_json(*usage);
  } else {
    // array() spelled out: a braced list of one object is an array under GCC but the object
    // itself under clang (nlohmann_json's initializer-list rule meets copy elision).
    j["choices"] = ResponseJson::array({ResponseJson{
        {"index", 0},
        {"delta", delta},
        {"logprobs", nullptr},
        {"finish_reason", finish_reason ? ResponseJson(*finish_reason) : ResponseJson(nullptr)}}});
  }
  return j;
}

inline ResponseJson text_completion_json(const ResponseIdentity& who, const std::string& text,
                                         const std::optional<std::string>& finish_reason,
                                         const std::optional<Usage>& usage) {
  ResponseJson j{{"id", who.id},
                 {"object", "text_completion"},
                 {"created", who.created},
                 {"model", who.model}};
  if (usage && !finish_reason && text.empty()) {
    j["choices"] = ResponseJson::array();  // the streamed usage chunk
  } else {
    j["choices"] = ResponseJson::array({ResponseJson{
        {"index", 0},
        {"text", text},
        {"logprobs", nullptr},
        {"finish_reason", finish_reason ? ResponseJson(*finish_reason) : ResponseJson(nullptr)}}});
  }
  j["usage"] = usage ? usage_json(*usage) : ResponseJson(nullptr);
  return j;
}

inline ResponseJson models_json(const std::vector<std::string>& names, std::int64_t created) {
  ResponseJson data = ResponseJson::array();
  for (const std::string& n : names)
    data.push_back({{"id", n}, {"object", "model"}, {"created", created}, {"owned_by", "sgt"}});
  return ResponseJson{{"object", "list"}, {"data", data}};
}

// One JSON document as compact text; invalid UTF-8 (a token boundary inside a character never
// reaches here: the decode stream emits whole characters) is replaced, never thrown.
inline std::string json_text(const ResponseJson& j) {
  return j.dump(-1, ' ', false, ResponseJson::error_handler_t::replace);
}

// A server-sent event carrying `j`, and the stream's last event.
inline std::string sse_event(const ResponseJson& j) { return "data: " + json_text(j) + "\n\n"; }
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace sgt::serve
