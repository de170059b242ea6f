// CHAT.json: the chat a user asks to render (docs/format.md, "Chat templates and CHAT.json").
//
// Either a bare array of messages, or an object
//   {"messages": [...], "tools": [...] | null, "add_generation_prompt": bool, "extra_context":
//   {...}}
// Each message is an object with "role" (a string) and "content" (a string, null, or a list of
// parts, a text part being {"type": "text", "text": "..."}); "tool_calls" (a list of objects),
// "name" and "tool_call_id" (strings) are checked when present; any other key is kept and
// passed to the template as it is. Errors name the message index and the key.
//
// Or the instruction form of Stained Glass's client,
//   {"instruction": "...", "system_prompt": "...", "context": "...", "response": "..."}
// mapped to messages as its ChatSchemaMapper maps it (instruction_messages below).
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"
#include "sgt/io/ordered_json.hpp"
#include "sgt/text/chat/chat_template.hpp"

namespace sgt::text {

struct ChatInput {
  ChatJson messages = ChatJson::array();
  ChatJson tools;  // null or an array
  bool add_generation_prompt = false;
  ChatJson extra_context = ChatJson::object();
};

// The JSON front door with the keys kept in document order (io/ordered_json.hpp).
using sgt::parse_ordered_json_checked;

namespace detail {

inline std::string excerpt(const ChatJson& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

inline void check_message(const ChatJson& m, std::size_t index) {
  const std::string at = "messages[" + std::to_string(index) + "]";
  if (!m.is_object()) throw Error("a message must be a JSON object, got " + excerpt(m)).at_key(at);
  auto role = m.find("role");
  if (role == m.end()) throw Error("required key is missing").at_key(at + ".role");
  if (!role->is_string())
    throw Error("must be a string, got " + excerpt(*role)).at_key(at + ".role");
  auto content = m.find("content");
  if (content != m.end() && !content->is_null() && !content->is_string()) {
    if (!content->is_array())
      throw Error("must be a string, null or a list of parts, got " + excerpt(*content))
          .at_key(at + ".content");
    for (std::size_t k = 0; k < content->size(); ++k) {
      const ChatJson& part = (*content)[k];
      const std::string pat = at + ".content[" + std::to_string(k) + "]";
      if (!part.is_object()) throw Error("a content part must be a JSON object").at_key(pat);
      auto type = part.find("type");
      if (type == part.end() || !type->is_string())
        throw Error("a content part needs a string \"type\"").at_key(pat);
      if (*type == "text") {
        auto text = part.find("text");
        if (text == part.end() || !text->is_string())
          throw Error("a text part needs a string \"text\"").at_key(pat + ".text");
      }
    }
  }
  auto calls = m.find("tool_calls");
  if (calls != m.end() && !calls->is_null()) {
    if (!calls->is_array()) throw Error("must be a list of tool calls").at_key(at + ".tool_calls");
    for (std::size_t k = 0; k < calls->size(); ++k)
      if (!(*calls)[k].is_object())
        throw Error("a tool call must be a JSON object")
            .at_key(at + ".tool_calls[" + std::to_string(k) + "]");
  }
  for (const char* key : {"name", "tool_call_id"}) {
    auto v = m.find(key);
    if (v != m.end() && !v->is_null() && !v->is_string())
      throw Error("must be a string, got " + excerpt(*v)).at_key(at + "." + key);
  }
}

inline void check_messages(const ChatJson& messages) {
  if (!messages.is_array()) throw Error("must be a JSON array of messages").at_key("messages");
  for (std::size_t k = 0; k < messages.size(); ++k) check_message(messages[k], k);
}

}  // namespace detail

// The keys of the instruction form; "instruction" is required, the others may be absent or null.
inline constexpr const char* kInstructionKeys[] = {"instruction", "system_prompt", "context",
                                                   "response"};

namespace detail {

// An object is in the instruction form when it has one of its keys and no "messages".
inline bool is_instruction_form(const ChatJson& j) {
  if (j.contains("messages")) return false;
  for (const char* key : kInstructionKeys)
    if (j.contains(key)) return true;
  return false;
}

inline std::string instruction_string(const ChatJson& j, const char* key, bool required) {
  auto it = j.find(key);
  if (it == j.end() || (!required && it->is_null())) {
    if (required) throw Error("required key is missing").at_key(key);
    return std::string();
  }
  if (!it->is_string())
    throw Error(std::string("must be a string") + (required ? "" : " or null") + ", got " +
                excerpt(*it))
        .at_key(key);
  return it->get<std::string>();
}

}  // namespace detail

// The messages of the instruction form: a system message with system_prompt when it is not
// empty; a user message with the context, a blank line and the instruction (either alone when
// the other is empty); an assistant message with response when it is not empty. The context goes
// into the user's own message, before the question it informs -- the layout instruct models see
// in retrieval prompts, with nothing added but the separator -- so the mask policy protects it
// exactly as it protects the instruction (docs/format.md, "CHAT.json").
inline ChatJson instruction_messages(const ChatJson& j) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* key : kInstructionKeys) known = known || it.key() == key;
    if (!known)
      throw Error(
          "unknown key (the instruction form has instruction, system_prompt, context, "
          "response)")
          .at_key(it.key());
  }
  const std::string instruction = detail::instruction_string(j, "instruction", true);
  const std::string system_prompt = detail::instruction_string(j, "system_prompt", false);
  const std::string context = detail::instruction_string(j, "context", false);
  const std::string response = detail::instruction_string(j, "response", false);
  ChatJson messages = ChatJson::array();
  if (!system_prompt.empty()) messages.push_back({{"role", "system"}, {"content", system_prompt}});
  const std::string user = context.empty()       ? instruction
                           : instruction.empty() ? context
                                                 : context + "\n\n" + instruction;
  messages.push_back({{"role", "user"}, {"content", user}});
  if (!response.empty()) messages.push_back({{"role", "assistant"}, {"content", response}});
  return messages;
}

// Parses the text of a CHAT.json; `what` names it in errors (a file name).
inline ChatInput parse_chat_input(const std::string& text, const std::string& what) {
  // The JSON front door takes an object root; a bare array is wrapped first. The wrapper adds
  // one nesting level, so the depth limit is raised by one to keep the user's limit at 32.
  std::string body = text;
  std::size_t first = 0;
  while (first < body.size() &&
         (body[first] == ' ' || body[first] == '\t' || body[first] == '\n' || body[first] == '\r'))
    ++first;
  const bool bare_array = first < body.size() && body[first] == '[';
  if (bare_array) body = "{\"messages\":" + text + "\n}";
  JsonReadOptions options;
  options.what = what.c_str();
  options.max_depth = bare_array ? 33 : 32;
  ChatJson j;
  try {
    j = parse_ordered_json_checked(body, options);
  } catch (Error& e) {
    // The syntax and depth messages start with `what`; a repeated key's names the file here.
    if (e.message().compare(0, what.size(), what) != 0) e.at_file(what);
    throw;
  }
  ChatInput in;
  try {
    if (detail::is_instruction_form(j)) {
      in.messages = instruction_messages(j);
      return in;
    }
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "messages" && it.key() != "tools" && it.key() != "add_generation_prompt" &&
          it.key() != "extra_context")
        throw Error("unknown key (expected messages, tools, add_generation_prompt, extra_context)")
            .at_key(it.key());
    auto messages = j.find("messages");
    if (messages == j.end()) throw Error("required key is missing").at_key("messages");
    detail::check_messages(*messages);
    in.messages = *messages;
    auto tools = j.find("tools");
    if (tools != j.end() && !tools->is_null()) {
      if (!tools->is_array()) throw Error("must be a list of tool schemas or null").at_key("tools");
      for (std::size_t k = 0; k < tools->size(); ++k)
        if (!(*tools)[k].is_object())
          throw Error("a tool schema must be a JSON object")
              .at_key("tools[" + std::to_string(k) + "]");
      in.tools = *tools;
    }
    auto agp = j.find("add_generation_prompt");
    if (agp != j.end()) {
      if (!agp->is_boolean())
        throw Error("must be true or false, got " + agp->dump()).at_key("add_generation_prompt");
      in.add_generation_prompt = agp->get<bool>();
    }
    auto extra = j.find("extra_context");
    if (extra != j.end() && !extra->is_null()) {
      if (!extra->is_object()) throw Error("must be a JSON object").at_key("extra_context");
      in.extra_context = *extra;
    }
  } catch (Error& e) {
    e.at_file(what);
    throw;
  }
  return in;
}

}  // namespace sgt::text
