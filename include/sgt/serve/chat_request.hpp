// POST /v1/chat/completions, as data: the OpenAI request parsed and validated into what the
// proxy's pipeline takes (a text::ChatInput, sampling, stop strings, streaming), each field
// checked once, each refusal an ApiError naming the field. A parsed request wipes the chat it
// holds when it is destroyed (serve/wiped_json.hpp).
//
// Honoured: messages (system, developer, user, assistant, tool; string, null or text-part
// content; tool_calls, name, tool_call_id), tools, tool_choice "auto" / "none", max_tokens /
// max_completion_tokens, temperature, top_p, seed, stop, stream, stream_options.include_usage,
// chat_template_kwargs (vLLM's: variables for the chat template), model, user.
// Refused with a 400 that names them: n > 1, logprobs, penalties, logit_bias, non-text content
// parts (image_url, input_audio, file), audio, response_format other than text, forced tool
// choice. Other fields are ignored, as OpenAI-compatible servers do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/serve/api_error.hpp"
#include "sgt/serve/request_fields.hpp"
#include "sgt/serve/wiped_json.hpp"
#include "sgt/text/chat/chat_input.hpp"

namespace sgt::serve {

// What a chat completion may ask for at most, and what it gets when it does not say.
struct ChatRequestLimits {
  std::uint64_t max_tokens = 1u << 20;
  std::uint64_t default_max_tokens = 256;
  std::size_t max_messages = 4096;
  std::size_t max_stop_strings = 4;  // OpenAI's limit
  std::size_t max_stop_bytes = 256;
};

struct ChatCompletionRequest {
  std::string model;  // as the client named it ("" when absent)
  text::ChatInput chat;  // messages, tools, extra_context (chat_template_kwargs)
  std::uint64_t max_tokens = 0;
  SamplingFields sampling;
  std::vector<std::string> stop;
  StreamFields stream;

  ChatCompletionRequest() = default;
  ChatCompletionRequest(const ChatCompletionRequest&) = default;
  ChatCompletionRequest(ChatCompletionRequest&&) = default;
  ChatCompletionRequest& operator=(const ChatCompletionRequest&) = default;
  ChatCompletionRequest& operator=(ChatCompletionRequest&&) = default;
  ~ChatCompletionRequest() {
    wipe_chat_input(chat);
    for (const std::string& s : stop) wipe_string(s);
  }
};

// messages, tools, tool_choice, chat_template_kwargs: the chat the template renders.
inline text::ChatInput read_chat_fields(const RequestFields& f, const ChatRequestLimits& limits) {
  text::ChatInput chat;
  const ChatJson* messages = f.find("messages");
  if (!messages) throw invalid_request("messages", "messages is required");
  if (!messages->is_array() || messages->empty())
    throw invalid_request("messages", "messages must be a non-empty array");
  if (messages->size() > limits.max_messages)
    throw invalid_request("messages", "more than " + std::to_string(limits.max_messages) +
                                          " messages");
  for (std::size_t i = 0; i < messages->size(); ++i) {
    const ChatJson& m = (*messages)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw invalid_request(at, at + " must be an object");
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      throw invalid_request(at + ".role", at + ".role must be a string");
    const std::string rs = role->get<std::string>();
    if (rs != "system" && rs != "developer" && rs != "user" && rs != "assistant" && rs != "tool")
      throw invalid_request(at + ".role",
                            at + ".role must be system, developer, user, assistant or tool");
    const auto content = m.find("content");
    if (content != m.end() && content->is_array())
      for (std::size_t k = 0; k < content->size(); ++k) {
        const ChatJson& part = (*content)[k];
        const std::string pat = at + ".content[" + std::to_string(k) + "]";
        if (!part.is_object()) throw invalid_request(pat, pat + " must be an object");
        const auto type = part.find("type");
        if (type == part.end() || !type->is_string())
          throw invalid_request(pat + ".type", pat + ".type must be a string");
        if (*type != "text")
          throw unsupported_field(pat + ".type",
                                  "only text content parts (the proxy protects text)");
      }
    for (const char* key : {"audio", "refusal"})
      if (m.contains(key) && !m.at(key).is_null())
        throw unsupported_field(at + "." + key, "not available through this proxy");
  }
  try {
    text::detail::check_messages(*messages);
  } catch (const Error& e) {
    throw invalid_request(e.key(), e.message());
  }
  chat.messages = *messages;

  if (const ChatJson* tools = f.find("tools")) {
    if (!tools->is_array()) throw invalid_request("tools", "tools must be an array");
    for (std::size_t k = 0; k < tools->size(); ++k)
      if (!(*tools)[k].is_object())
        throw invalid_request("tools[" + std::to_string(k) + "]", "a tool must be an object");
    chat.tools = *tools;
  }
  if (const ChatJson* choice = f.find("tool_choice");
      choice && !(choice->is_string() && (*choice == "auto" || *choice == "none")))
    throw unsupported_field("tool_choice", "only \"auto\" or \"none\" (no forced tool calls)");
  (void)f.boolean("parallel_tool_calls");
  if (const ChatJson* kw = f.find("chat_template_kwargs")) {
    if (!kw->is_object())
      throw invalid_request("chat_template_kwargs", "chat_template_kwargs must be an object");
    chat.extra_context = *kw;
  }

  return chat;
}

inline ChatCompletionRequest parse_chat_request(std::string_view body,
                                                const ChatRequestLimits& limits = {}) {
  const WipedJson root = parse_request_body(body);
  const RequestFields f(root.get());
  refuse_unneutral_fields(f, /*chat=*/true);
  ChatCompletionRequest r;
  r.model = f.string("model").value_or("");
  (void)f.string("user");
  r.chat = read_chat_fields(f, limits);
  const auto max_tokens = f.integer("max_tokens", 1, limits.max_tokens);
  const auto max_completion = f.integer("max_completion_tokens", 1, limits.max_tokens);
  if (max_tokens && max_completion && *max_tokens != *max_completion)
    throw invalid_request("max_completion_tokens",
                          "max_tokens and max_completion_tokens disagree; give one");
  r.max_tokens = max_completion.value_or(max_tokens.value_or(limits.default_max_tokens));
  r.sampling = read_sampling_fields(f);

  if (const ChatJson* stop = f.find("stop")) {
    std::vector<ChatJson> items;
    if (stop->is_string())
      items.push_back(*stop);
    else if (stop->is_array())
      items.assign(stop->begin(), stop->end());
    else
      throw invalid_request("stop", "stop must be a string or an array of strings");
    if (items.size() > limits.max_stop_strings)
      throw invalid_request("stop", "at most " + std::to_string(limits.max_stop_strings) +
                                        " stop strings");
    for (const ChatJson& s : items) {
      if (!s.is_string() || s.get<std::string>().empty() ||
          s.get<std::string>().size() > limits.max_stop_bytes)
        throw invalid_request("stop", "each stop string must be a non-empty string of at most " +
                                          std::to_string(limits.max_stop_bytes) + " bytes");
      r.stop.push_back(s.get<std::string>());
    }
  }
  r.stream = read_stream_fields(f);
  return r;
}

// POST /v1/stainedglass: a chat (as for chat completions) and which results to return.
struct VerificationRequest {
  text::ChatInput chat;
  bool plain_text_embeddings = false, transformed_embeddings = false,
       reconstructed_prompt = false, obfuscation_score = false;

  VerificationRequest() = default;
  VerificationRequest(const VerificationRequest&) = default;
  VerificationRequest(VerificationRequest&&) = default;
  VerificationRequest& operator=(const VerificationRequest&) = default;
  VerificationRequest& operator=(VerificationRequest&&) = default;
  ~VerificationRequest() { wipe_chat_input(chat); }
};

inline VerificationRequest parse_verification_request(std::string_view body,
                                                      const ChatRequestLimits& limits = {}) {
  const WipedJson root = parse_request_body(body);
  const RequestFields f(root.get());
  VerificationRequest r;
  r.chat = read_chat_fields(f, limits);
  r.plain_text_embeddings = f.boolean("return_plain_text_embeddings").value_or(false);
  r.transformed_embeddings = f.boolean("return_transformed_embeddings").value_or(false);
  r.reconstructed_prompt = f.boolean("return_reconstructed_prompt").value_or(false);
  r.obfuscation_score = f.boolean("return_obfuscation_score").value_or(false);
  return r;
}

}  // namespace sgt::serve
