// Reading an upstream's Completions answer: a server-sent-event stream cut into `data:` payloads
// however the bytes arrive, and each payload (or a whole non-streamed body) into the text piece,
// finish_reason and usage it carries. Bounded: an event larger than max_event_bytes is an error,
// not an ever-growing buffer.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"
#include "sgt/serve/openai_responses.hpp"

namespace sgt::serve {

class SseReader {
 public:
  using OnData = std::function<void(std::string_view payload)>;
  explicit SseReader(OnData on_data, std::size_t max_event_bytes = std::size_t{1} << 20)
      : on_data_(std::move(on_data)), max_(max_event_bytes) {}

  // Feeds bytes; calls on_data for every complete event's data (the data lines joined by '\n').
  // Comment lines (':') and fields other than data are skipped.
  void feed(std::string_view bytes) {
    for (const char c : bytes) {
      if (c != '\n') {
        if (line_.size() >= max_) throw Error("upstream event larger than the limit");
        line_ += c;
        continue;
      }
      if (!line_.empty() && line_.back() == '\r') line_.pop_back();
      if (line_.empty()) {
        if (has_data_) on_data_(data_);
        data_.clear();
        has_data_ = false;
      } else if (line_.compare(0, 5, "data:") == 0) {
        std::string_view v(line_);
        v.remove_prefix(5);
        if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        if (has_data_) data_ += '\n';
        if (data_.size() + v.size() > max_) throw Error("upstream event larger than the limit");
        data_.append(v);
        has_data_ = true;
      }
      line_.clear();
    }
  }

 private:
  OnData on_data_;
  std::size_t max_;
  std::string line_, data_;
  bool has_data_ = false;
};

// What one text_completion (streamed chunk or whole body) says.
struct CompletionPiece {
  std::string text;
  std::optional<std::string> finish_reason;
  std::optional<Usage> usage;
};

// Parses a text_completion JSON; errors (sgt::Error) say what is missing, never quote the text.
inline CompletionPiece parse_completion_piece(std::string_view payload) {
  JsonReadOptions options;
  options.what = "the upstream's completion";
  const nlohmann::json j = parse_json_checked(payload.data(), payload.data() + payload.size(), options);
  if (j.contains("error")) {
    const auto& e = j["error"];
    const std::string message =
        e.is_object() && e.contains("message") && e["message"].is_string()
            ? e["message"].get<std::string>()
            : std::string("(no message)");
    throw Error("upstream error: " + message);
  }
  CompletionPiece p;
  const auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array())
    throw Error("upstream sent a completion without choices");
  if (!choices->empty()) {
    const auto& c = (*choices)[0];
    if (!c.is_object()) throw Error("upstream sent a choice that is not an object");
    if (const auto t = c.find("text"); t != c.end() && t->is_string()) p.text = t->get<std::string>();
    if (const auto f = c.find("finish_reason"); f != c.end() && f->is_string())
      p.finish_reason = f->get<std::string>();
  }
  if (const auto u = j.find("usage"); u != j.end() && u->is_object()) {
    Usage usage;
    if (u->contains("prompt_tokens") && (*u)["prompt_tokens"].is_number_unsigned())
      usage.prompt_tokens = (*u)["prompt_tokens"].get<std::size_t>();
    if (u->contains("completion_tokens") && (*u)["completion_tokens"].is_number_unsigned())
      usage.completion_tokens = (*u)["completion_tokens"].get<std::size_t>();
    p.usage = usage;
  }
  return p;
}

}  // namespace sgt::serve
