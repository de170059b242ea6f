// ChatTemplate: renders a Hugging Face chat template exactly as transformers'
// apply_chat_template(messages, tools=..., tokenize=False, **extra) does, and says which bytes of
// the result came from the messages' contents.
//
//   sgt::text::ChatTemplate t(config.chat_template.value(), "tokenizer_config.json chat_template");
//   sgt::text::RenderedChat r = t.render(messages, tools, config.specials, options);
//   // r.text: the prompt; r.protected_spans: sorted, merged byte ranges of message content.
//
// What the template sees, as transformers passes it: `messages` (each message with its null
// keys dropped, and a message with reasoning_content/thinking/reasoning given both
// `thinking` and `reasoning_content`), `tools` (none when absent), `documents` (none),
// `add_generation_prompt`, the special tokens that are set, and every key of extra_context
// (e.g. enable_thinking for Qwen3). strftime_now formats options.date_string ("%d %b %Y"),
// never the clock, so a render is a pure function of its inputs.
//
// Protected text: a message's `content` string, the `text` strings of a content list, and its
// reasoning (reasoning_content / thinking / reasoning), for the roles ChatMaskPolicy names (every
// role by default); by default also every string value inside `tools` (protect_tool_schemas), and
// on request inside each tool call's `arguments` (protect_tool_calls). Dict keys are never
// protected.
#pragma once

#include <cstddef>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/text/chat/tokenizer_config.hpp"
#include "sgt/text/jinja/interpreter.hpp"
#include "sgt/text/jinja/limits.hpp"
#include "sgt/text/jinja/parser.hpp"
#include "sgt/text/jinja/value.hpp"

namespace sgt::text {

// Chats are JSON whose key order is meaningful: tojson and dict.items() print keys in the order
// the user wrote them (transformers keeps Python's insertion order), so chats are ordered_json.
using ChatJson = nlohmann::ordered_json;

// Which text of a chat is protected: the one policy of every entry point (ChatTemplate::render,
// text::encode_chat, encode_chat_file, the CLI and the server), protective by default, so that a
// caller of a lower-level API never gets less privacy without asking for it. Tool schemas are
// protected by default: they describe the user's systems. Tool-call arguments are not: they are
// usually the model's own output, sent back.
struct ChatMaskPolicy {
  // Roles whose contents (and reasoning) are protected; empty: every role.
  std::vector<std::string> protected_roles;
  bool protect_tool_schemas = true;
  bool protect_tool_calls = false;
};

struct ByteSpan {
  std::size_t begin = 0, end = 0;
  bool operator==(const ByteSpan& o) const { return begin == o.begin && end == o.end; }
};

struct RenderedChat {
  std::string text;
  std::vector<ByteSpan> protected_spans;  // sorted, merged, non-empty
};

struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  ChatMaskPolicy policy{};
  std::string date_string = "26 Jul 2024";  // what strftime_now formats: "%d %b %Y"
  ChatJson extra_context = ChatJson::object();
  // What one render may spend: work, output size, list sizes, loop iterations, nesting
  // (jinja/limits.hpp; the defaults are in docs/reliability.md, "Chat-template limits").
  jinja::Limits limits{};
};

// Templates larger than this are refused before parsing.
inline constexpr std::size_t kMaxChatTemplateBytes = std::size_t{4} << 20;

// extra_context's keys become the template's variables, which it looks up by name one scope at a
// time: a handful in practice (enable_thinking, tools_in_user_message, ...), so a few hundred are
// plenty, and a bound keeps every variable lookup of the render cheap.
inline constexpr std::size_t kMaxExtraContextKeys = 256;

namespace detail {

// JSON -> template value; every string is marked protected when `protect` is set.
inline jinja::Value to_value(const ChatJson& j, bool protect) {
  using jinja::Value;
  switch (j.type()) {
    case ChatJson::value_t::null:
      return Value::none();
    case ChatJson::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case ChatJson::value_t::number_integer:
      return Value::integer(j.get<std::int64_t>());
    case ChatJson::value_t::number_unsigned: {
      const std::uint64_t u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw Error("integer " + std::to_string(u) + " is too large (more than 2^63 - 1)");
      return Value::integer(static_cast<std::int64_t>(u));
    }
    case ChatJson::value_t::number_float:
      return Value::floating(j.get<double>());
    case ChatJson::value_t::string:
      return Value::string(jinja::PString(j.get<std::string>(), protect));
    case ChatJson::value_t::array: {
      jinja::List items;
      for (const auto& e : j) items.push_back(to_value(e, protect));
      return Value::make_list(std::move(items));
    }
    case ChatJson::value_t::object: {
      jinja::Dict d;
      for (auto it = j.begin(); it != j.end(); ++it)
        d.emplace_back(it.key(), to_value(it.value(), protect));
      return Value::make_dict(std::move(d));
    }
    default:
      throw Error("unsupported JSON value (binary)");
  }
}

inline bool is_reasoning_key(const std::string& k) {
  return k == "reasoning_content" || k == "thinking" || k == "reasoning";
}

// One message as transformers hands it to the template (null keys dropped, reasoning aliased).
inline jinja::Value message_value(const ChatJson& m, const ChatMaskPolicy& policy,
                                  std::size_t index) {
  using jinja::Value;
  if (!m.is_object())
    throw Error("must be a JSON object").at_key("messages[" + std::to_string(index) + "]");
  jinja::Dict d;
  bool role_protected = policy.protected_roles.empty();
  if (!role_protected && m.contains("role") && m["role"].is_string())
    for (const std::string& r : policy.protected_roles)
      role_protected = role_protected || r == m["role"].get<std::string>();
  for (auto it = m.begin(); it != m.end(); ++it) {
    const std::string& k = it.key();
    const ChatJson& v = it.value();
    if (v.is_null()) continue;
    if (k == "content" && !role_protected) {
      d.emplace_back(k, to_value(v, false));
    } else if (k == "content") {
      if (v.is_array()) {
        jinja::List parts;
        for (const auto& part : v) {
          if (!part.is_object()) {
            parts.push_back(to_value(part, false));
            continue;
          }
          jinja::Dict pd;
          for (auto p = part.begin(); p != part.end(); ++p)
            pd.emplace_back(p.key(),
                            to_value(p.value(), p.key() == "text" && p.value().is_string()));
          parts.push_back(Value::make_dict(std::move(pd)));
        }
        d.emplace_back(k, Value::make_list(std::move(parts)));
      } else {
        d.emplace_back(k, to_value(v, v.is_string()));
      }
    } else if (is_reasoning_key(k)) {
      d.emplace_back(k, to_value(v, v.is_string() && role_protected));
    } else if (k == "tool_calls" && policy.protect_tool_calls && v.is_array()) {
      jinja::List calls;
      for (const auto& call : v) {
        if (!call.is_object()) {
          calls.push_back(to_value(call, false));
          continue;
        }
        jinja::Dict cd;
        for (auto c = call.begin(); c != call.end(); ++c) {
          if (c.key() == "arguments") {
            cd.emplace_back(c.key(), to_value(c.value(), true));
          } else if (c.key() == "function" && c.value().is_object()) {
            jinja::Dict fd;
            for (auto f = c.value().begin(); f != c.value().end(); ++f)
              fd.emplace_back(f.key(), to_value(f.value(), f.key() == "arguments"));
            cd.emplace_back(c.key(), Value::make_dict(std::move(fd)));
          } else {
            cd.emplace_back(c.key(), to_value(c.value(), false));
          }
        }
        calls.push_back(Value::make_dict(std::move(cd)));
      }
      d.emplace_back(k, Value::make_list(std::move(calls)));
    } else {
      d.emplace_back(k, to_value(v, false));
    }
  }
  // transformers' _alias_reasoning_fields: {"thinking": r, **message, "reasoning_content": r}.
  const Value* reasoning = nullptr;
  for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
    for (const auto& kv : d)
      if (!reasoning && kv.first == key && !kv.second.is_none()) reasoning = &kv.second;
  }
  if (reasoning) {
    const Value r = *reasoning;
    // The message's keys are unique (a JSON object), so only "thinking" can meet a key twice:
    // one pass, linear in the message's keys.
    jinja::Dict aliased;
    aliased.emplace_back("thinking", r);
    std::size_t reasoning_content = 0;  // its index in aliased; 0: not among the message's keys
    for (auto& kv : d) {
      if (kv.first == "thinking") {
        aliased[0].second = kv.second;
        continue;
      }
      if (kv.first == "reasoning_content") reasoning_content = aliased.size();
      aliased.push_back(kv);
    }
    if (reasoning_content)
      aliased[reasoning_content].second = r;
    else
      aliased.emplace_back("reasoning_content", r);
    d = std::move(aliased);
  }
  return Value::make_dict(std::move(d));
}

// "26 Jul 2024" -> a struct tm (midnight).
inline std::tm parse_date(const std::string& s) {
  static const char* const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int day = 0, year = 0;
  char mon[4] = {0};
  char tail = 0;
  if (std::sscanf(s.c_str(), "%d %3s %d%c", &day, mon, &year, &tail) != 3)
    throw Error("date_string must look like \"26 Jul 2024\", got \"" + jinja::abbreviate(s) + "\"");
  int month = -1;
  for (int k = 0; k < 12; ++k)
    if (std::string(mon) == months[k]) month = k;
  if (month < 0 || day < 1 || day > 31 || year < 1 || year > 9999)
    throw Error("date_string must look like \"26 Jul 2024\", got \"" + jinja::abbreviate(s) + "\"");
  std::tm t{};
  t.tm_mday = day;
  t.tm_mon = month;
  t.tm_year = year - 1900;
  // Day of week and of year, for %a/%A/%j: Zeller-free via days since 1970 (proleptic Gregorian).
  auto days_from_civil = [](long y, unsigned m, unsigned d) {
    y -= m <= 2;
    const long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<long>(doe) - 719468;
  };
  const long days =
      days_from_civil(year, static_cast<unsigned>(month + 1), static_cast<unsigned>(day));
  t.tm_wday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday (4)
  t.tm_yday = static_cast<int>(days - days_from_civil(year, 1, 1));
  return t;
}

inline std::vector<ByteSpan> spans_of(const std::string& flags) {
  std::vector<ByteSpan> spans;
  for (std::size_t k = 0; k < flags.size();) {
    if (!flags[k]) {
      ++k;
      continue;
    }
    const std::size_t begin = k;
    while (k < flags.size() && flags[k]) ++k;
    spans.push_back({begin, k});
  }
  return spans;
}

}  // namespace detail

class ChatTemplate {
 public:
  // Parses `source` once. `what` names the template in every error ("<what> line L, column C:
  // ...").
  ChatTemplate(std::string source, std::string what) : what_(std::move(what)) {
    if (source.size() > kMaxChatTemplateBytes)
      throw Error(what_ + " is larger than " + std::to_string(kMaxChatTemplateBytes) + " bytes");
    if (!jinja::utf8::is_valid(source)) throw Error(what_ + " is not valid UTF-8");
    try {
      program_ = jinja::parse_template(source);
    } catch (const jinja::LocatedError& e) {
      throw located(e);
    } catch (const Error& e) {
      throw Error(what_ + ": " + e.message());
    }
  }

  const std::string& what() const noexcept { return what_; }

  RenderedChat render(const ChatJson& messages, const ChatJson& tools,
                      const TokenizerSpecialStrings& specials,
                      const ChatTemplateOptions& options) const {
    using jinja::Value;
    if (!messages.is_array()) throw Error("messages must be a JSON array").at_key("messages");
    std::vector<std::pair<std::string, Value>> globals;
    {
      jinja::List ms;
      for (std::size_t k = 0; k < messages.size(); ++k) {
        try {
          ms.push_back(detail::message_value(messages[k], options.policy, k));
        } catch (Error& e) {
          e.at_key("messages[" + std::to_string(k) + "]");
          throw;
        }
      }
      globals.emplace_back("messages", Value::make_list(std::move(ms)));
    }
    if (!tools.is_null() && !tools.is_array())
      throw Error("must be null or a JSON array").at_key("tools");
    try {
      globals.emplace_back("tools", detail::to_value(tools, options.policy.protect_tool_schemas));
    } catch (Error& e) {
      e.at_key("tools");
      throw;
    }
    globals.emplace_back("documents", Value::none());
    globals.emplace_back("add_generation_prompt", Value::boolean(options.add_generation_prompt));
    const std::pair<const char*, const std::optional<std::string>*> special_list[] = {
        {"bos_token", &specials.bos_token},
        {"eos_token", &specials.eos_token},
        {"unk_token", &specials.unk_token},
        {"pad_token", &specials.pad_token}};
    for (const auto& s : special_list)
      if (*s.second) globals.emplace_back(s.first, Value::plain(**s.second));
    // extra_context's keys are unique: one can only override a global set above, never another
    // extra key, so only those few are searched.
    const std::size_t renderer_globals = globals.size();
    if (!options.extra_context.is_null()) {
      if (!options.extra_context.is_object())
        throw Error("must be a JSON object").at_key("extra_context");
      if (options.extra_context.size() > kMaxExtraContextKeys)
        throw Error("has " + std::to_string(options.extra_context.size()) +
                    " keys, more than the limit of " + std::to_string(kMaxExtraContextKeys))
            .at_key("extra_context");
      for (auto it = options.extra_context.begin(); it != options.extra_context.end(); ++it) {
        const std::string& k = it.key();
        if (k == "messages" || k == "tools" || k == "documents" || k == "add_generation_prompt")
          throw Error("'" + k + "' is set by the renderer, not by extra_context")
              .at_key("extra_context." + k);
        bool replaced = false;
        Value v;
        try {
          v = detail::to_value(it.value(), false);
        } catch (Error& e) {
          e.at_key("extra_context." + k);
          throw;
        }
        for (std::size_t i = 0; i < renderer_globals; ++i)  // extra kwargs override special tokens
          if (globals[i].first == k) globals[i].second = v, replaced = true;
        if (!replaced) globals.emplace_back(k, std::move(v));
      }
    }
    const std::tm date = detail::parse_date(options.date_string);
    jinja::PString out;
    try {
      jinja::Interpreter interpreter(program_, std::move(globals), date, options.limits);
      out = interpreter.render();
    } catch (const jinja::LocatedError& e) {
      throw located(e);
    }
    RenderedChat r;
    r.protected_spans = detail::spans_of(out.flags);
    r.text = std::move(out.text);
    return r;
  }

 private:
  Error located(const jinja::LocatedError& e) const {
    return Error(what_ + " line " + std::to_string(e.pos.line) + ", column " +
                 std::to_string(e.pos.column) + ": " + e.message());
  }

  std::string what_;
  jinja::Body program_;
};

}  // namespace sgt::text
