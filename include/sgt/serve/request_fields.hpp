// Reading an OpenAI request body: the JSON front door (io/json.hpp's checks, keys in document
// order) and typed field readers whose errors are ApiErrors naming the field. Shared by the
// chat and completions parsers.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"
#include "sgt/serve/api_error.hpp"
#include "sgt/serve/wiped_json.hpp"
#include "sgt/text/chat/chat_input.hpp"

namespace sgt::serve {

using text::ChatJson;

// Nesting a request may have: a chat's messages with content parts and tool schemas fit in 32
// (the library's default for every JSON it reads).
inline constexpr std::size_t kMaxRequestDepth = 32;

// The body as an ordered JSON object (tool schemas are rendered in the order the client wrote
// them), wiped when the caller is done with it (the body copy it parses is wiped on return). A
// syntax error, a repeated key, NUL bytes or excessive nesting is a 400 without a param.
inline WipedJson parse_request_body(std::string_view body) {
  JsonReadOptions options;
  options.what = "the request body";
  options.max_depth = kMaxRequestDepth;
  std::string text(body);
  struct TextWiper {
    std::string& s;
    ~TextWiper() { wipe_string(s); }
  } wipe_text{text};
  try {
    return WipedJson(text::parse_ordered_json_checked(text, options));
  } catch (const Error& e) {
    throw ApiError(400, "invalid_request_error", e.what(), std::nullopt, "invalid_json");
  }
}

// One field of the request object, typed.
class RequestFields {
 public:
  explicit RequestFields(const ChatJson& root) : root_(root) {}

  // The value, or null when absent or JSON null (OpenAI treats the two alike).
  const ChatJson* find(const char* key) const {
    const auto it = root_.find(key);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const char* key) const { return find(key) != nullptr; }

  std::optional<std::string> string(const char* key) const {
    const ChatJson* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw invalid_request(key, std::string(key) + " must be a string");
    return v->get<std::string>();
  }
  std::optional<bool> boolean(const char* key) const {
    const ChatJson* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) throw invalid_request(key, std::string(key) + " must be a boolean");
    return v->get<bool>();
  }
  // A finite number in [lo, hi] (integers are numbers too).
  std::optional<double> number(const char* key, double lo, double hi) const {
    const ChatJson* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) throw invalid_request(key, std::string(key) + " must be a number");
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi)
      throw invalid_request(key, std::string(key) + " must be between " + format(lo) + " and " +
                                     format(hi));
    return x;
  }
  // An integer in [lo, hi].
  std::optional<std::uint64_t> integer(const char* key, std::uint64_t lo, std::uint64_t hi) const {
    const ChatJson* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer())
      throw invalid_request(key, std::string(key) + " must be an integer");
    if (v->is_number_unsigned() || v->get<std::int64_t>() >= 0) {
      const std::uint64_t x = v->get<std::uint64_t>();
      if (x >= lo && x <= hi) return x;
    }
    throw invalid_request(key, std::string(key) + " must be an integer between " +
                                   std::to_string(lo) + " and " + std::to_string(hi));
  }

 private:
  static std::string format(double x) {
    std::string s = std::to_string(x);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
  const ChatJson& root_;
};

// Sampling fields both endpoints share, as the client gave them (absent: the server's default).
struct SamplingFields {
  std::optional<double> temperature;      // [0, 2]
  std::optional<double> top_p;            // (0, 1]
  std::optional<std::uint64_t> seed;      // [0, 2^63)
};

inline SamplingFields read_sampling_fields(const RequestFields& f) {
  SamplingFields s;
  s.temperature = f.number("temperature", 0.0, 2.0);
  s.top_p = f.number("top_p", 0.0, 1.0);
  if (s.top_p && *s.top_p == 0.0)
    throw invalid_request("top_p", "top_p must be greater than 0 and at most 1");
  s.seed = f.integer("seed", 0, std::uint64_t{1} << 63);
  return s;
}

// Fields the protocol has and we refuse unless they hold their neutral value: n (1), logprobs
// (false), penalties (0), logit_bias (empty) -- honouring them needs what neither server does.
inline void refuse_unneutral_fields(const RequestFields& f, bool chat) {
  if (const auto n = f.find("n"); n && !(n->is_number_integer() && *n == 1))
    throw unsupported_field("n", "one choice per request (n = 1)");
  if (const auto lp = f.find("logprobs"); lp && !(lp->is_boolean() && !lp->get<bool>()))
    throw unsupported_field("logprobs", "log-probabilities are not returned");
  if (f.has("top_logprobs")) throw unsupported_field("top_logprobs", "log-probabilities are not returned");
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (const auto p = f.find(key); p && !(p->is_number() && p->get<double>() == 0.0))
      throw unsupported_field(key, "penalties are not applied");
  if (const auto b = f.find("logit_bias"); b && !(b->is_object() && b->empty()))
    throw unsupported_field("logit_bias", "logit biases are not applied");
  if (chat) {
    for (const char* key : {"audio", "modalities", "prediction", "web_search_options",
                            "functions", "function_call"})
      if (f.has(key)) throw unsupported_field(key, "not available through this proxy");
    if (const auto rf = f.find("response_format");
        rf && !(rf->is_object() && rf->value("type", "") == "text"))
      throw unsupported_field("response_format", "only {\"type\": \"text\"}");
  } else {
    for (const char* key : {"suffix", "best_of"})
      if (const auto v = f.find(key); v && !(key[0] == 'b' && v->is_number_integer() && *v == 1))
        throw unsupported_field(key, "not available on this server");
    if (const auto e = f.find("echo"); e && !(e->is_boolean() && !e->get<bool>()))
      throw unsupported_field("echo", "the prompt is not echoed");
  }
}

// stream and stream_options.include_usage.
struct StreamFields {
  bool stream = false;
  bool include_usage = false;
};

inline StreamFields read_stream_fields(const RequestFields& f) {
  StreamFields s;
  s.stream = f.boolean("stream").value_or(false);
  if (const ChatJson* o = f.find("stream_options")) {
    if (!s.stream)
      throw invalid_request("stream_options", "stream_options needs stream: true");
    if (!o->is_object()) throw invalid_request("stream_options", "stream_options must be an object");
    for (auto it = o->begin(); it != o->end(); ++it) {
      if (it.key() == "include_usage") {
        if (!it->is_boolean())
          throw invalid_request("stream_options.include_usage", "include_usage must be a boolean");
        s.include_usage = it->get<bool>();
      } else if (it.key() != "continuous_usage_stats" || !it->is_boolean() || it->get<bool>()) {
        throw unsupported_field("stream_options." + it.key(), "only include_usage");
      }
    }
  }
  return s;
}

}  // namespace sgt::serve
