// Hugging Face tokenizer_config.json: the chat template and the special-token strings a chat
// template sees (bos_token, eos_token, unk_token, pad_token), plus add_bos_token/add_eos_token
// and model_max_length.
//
// The chat template is found as transformers finds it: `chat_template` is a string, or a list
// of {"name", "template"} of which "default" is used; when the key is absent, a
// chat_template.jinja file next to tokenizer_config.json (as transformers 5 saves it).
// A special token is a string, an AddedToken object {"content": "...", ...}, or null/absent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"

namespace sgt::text {

// The special-token strings given to a chat template; an absent one is undefined there.
struct TokenizerSpecialStrings {
  std::optional<std::string> bos_token, eos_token, unk_token, pad_token;
};

struct TokenizerConfig {
  std::optional<std::string> chat_template;  // absent: no template in the config nor beside it
  std::string
      chat_template_source;  // where it came from: "tokenizer_config.json" or the .jinja path
  TokenizerSpecialStrings specials;
  std::optional<bool> add_bos_token, add_eos_token;
  std::optional<double> model_max_length;  // often 1e30 in the wild: kept as a number
};

namespace detail {

inline std::optional<std::string> special_token(JsonObjectReader& r, const char* key) {
  const nlohmann::json* v = r.find_value(key);
  if (!v) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object()) {
    auto it = v->find("content");
    if (it == v->end() || !it->is_string())
      r.fail(key, "an AddedToken object needs a string \"content\"");
    return it->get<std::string>();
  }
  r.fail(key,
         "must be a string, an AddedToken object or null, got " + sgt::detail::json_excerpt(*v));
}

inline std::optional<bool> optional_bool(JsonObjectReader& r, const char* key) {
  const nlohmann::json* v = r.find_value(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean())
    r.fail(key, "must be true, false or null, got " + sgt::detail::json_excerpt(*v));
  return v->get<bool>();
}

}  // namespace detail

// Parses the text of a tokenizer_config.json. `what` names it in errors.
inline TokenizerConfig parse_tokenizer_config(const std::string& text, const std::string& what) {
  JsonReadOptions options;
  options.what = what.c_str();
  const nlohmann::json j = parse_json_checked(text, options);
  TokenizerConfig c;
  try {
    JsonObjectReader r(j, "");
    if (const nlohmann::json* t = r.find_value("chat_template")) {
      if (t->is_string()) {
        c.chat_template = t->get<std::string>();
      } else if (t->is_array()) {
        for (std::size_t k = 0; k < t->size(); ++k) {
          const nlohmann::json& e = (*t)[k];
          const std::string at = "chat_template[" + std::to_string(k) + "]";
          if (!e.is_object() || !e.contains("name") || !e.contains("template") ||
              !e["name"].is_string() || !e["template"].is_string())
            throw Error("must be an object with string \"name\" and \"template\"").at_key(at);
          if (e["name"] == "default") c.chat_template = e["template"].get<std::string>();
        }
        if (!c.chat_template)
          r.fail("chat_template", "the list of templates has none named \"default\"");
      } else {
        r.fail("chat_template", "must be a string or a list of {name, template}, got " +
                                    sgt::detail::json_excerpt(*t));
      }
      c.chat_template_source = what;
    }
    c.specials.bos_token = detail::special_token(r, "bos_token");
    c.specials.eos_token = detail::special_token(r, "eos_token");
    c.specials.unk_token = detail::special_token(r, "unk_token");
    c.specials.pad_token = detail::special_token(r, "pad_token");
    c.add_bos_token = detail::optional_bool(r, "add_bos_token");
    c.add_eos_token = detail::optional_bool(r, "add_eos_token");
    if (const nlohmann::json* m = r.find_value("model_max_length"))
      c.model_max_length = r.check_number("model_max_length", *m);
  } catch (Error& e) {
    e.at_file(what);
    throw;
  }
  return c;
}

// Reads tokenizer_config.json from `dir` (a model directory); a chat_template.jinja there is used
// when the config has no chat_template. Files over 16 MiB are refused.
inline TokenizerConfig read_tokenizer_config(const std::string& dir) {
  const std::string path = dir + "/tokenizer_config.json";
  std::string text;
  try {
    text = read_text_file(path, std::size_t{16} << 20);
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
  TokenizerConfig c = parse_tokenizer_config(text, path);
  if (!c.chat_template) {
    const std::string jinja = dir + "/chat_template.jinja";
    std::ifstream probe(jinja, std::ios::binary);
    if (probe) {
      try {
        c.chat_template = read_text_file(jinja, std::size_t{4} << 20);
      } catch (Error& e) {
        e.at_file(jinja);
        throw;
      }
      c.chat_template_source = jinja;
    }
  }
  return c;
}

}  // namespace sgt::text
