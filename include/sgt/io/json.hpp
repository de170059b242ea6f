// The one way the library reads JSON: safetensors headers, shard indexes, config.json, transform
// requests, and any file to come, go through parse_json_checked().
//
// Why not nlohmann::json::parse alone: it keeps the last of two equal keys silently (a file that
// says two things is ambiguous, and we refuse it), takes a NUL byte for the end of the input and
// skips a byte order mark (so `{}\0{"x": ...}` would parse as `{}`), and has no depth limit. So
// every text first goes through a SAX pass (io/json_precheck.hpp: linear time, no DOM) that finds
// those faults, and only then into a DOM; a fault becomes an sgt::Error with one wording for every
// reader, naming the file part (`what`) and the key path.
//
// JsonObjectReader then reads one object of a parsed document by dotted key paths, remembering
// which keys were read so that the rest can be reported as unknown.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/core/log.hpp"
#include "sgt/io/json_precheck.hpp"

namespace sgt {

namespace detail {

// Error messages quote pieces of untrusted input; a 100 MiB header must not become a 100 MiB
// message.
inline std::string abbreviate(std::string s, std::size_t max_chars = 80) {
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

// How a JSON value is quoted in a message: scalars by their text, containers as [...] or {...}
// (a container's text may be huge).
inline std::string describe_json(const nlohmann::json& v) {
  if (v.is_object()) return "{...}";
  if (v.is_array()) return "[...]";
  return abbreviate(v.dump());
}

// A short rendering of any JSON value, containers included.
inline std::string json_excerpt(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

inline std::string join_keys(const std::vector<std::string>& path) {
  std::string s;
  for (std::size_t i = 0; i < path.size(); ++i) s += (i ? "." : "") + path[i];
  return s;
}

inline std::string key_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

}  // namespace detail

struct JsonReadOptions {
  // Names the text in messages: "header", "index", "config.json", "request", ...
  const char* what = "JSON";
  // Containers may nest this deep (the root object is level 1).
  std::size_t max_depth = 32;
  // Appended to the depth message, e.g. "(a safetensors header needs 3)".
  const char* depth_note = nullptr;
  // Turns the path of a repeated key (its last element) into the error to throw, for readers whose
  // schema gives the key a meaning ("header names tensor 'x' twice"). Null: "key 'k' appears
  // twice", at the dotted path.
  Error (*describe_repeated_key)(const std::vector<std::string>& path) = nullptr;
};

// Parses [begin, end) as one JSON document whose root is an object, refusing NUL bytes, a byte
// order mark, repeated keys, nesting deeper than options.max_depth, and syntax errors.
inline nlohmann::json parse_json_checked(const char* begin, const char* end,
                                         const JsonReadOptions& options) {
  const std::string what = options.what;
  if (begin != end) {  // an empty mapping has no address, and memchr(nullptr) is UB
    if (const void* nul = std::memchr(begin, 0, static_cast<std::size_t>(end - begin)))
      throw Error(what + " is not valid JSON: NUL byte at offset " +
                  std::to_string(static_cast<const char*>(nul) - begin));
    if (end - begin >= 3 && std::memcmp(begin, "\xEF\xBB\xBF", 3) == 0)
      throw Error(what + " is not valid JSON: it starts with a byte order mark");
  }
  detail::JsonPrecheck check(options.max_depth);
  nlohmann::json::sax_parse(begin, end, &check);
  switch (check.fault()) {
    case detail::JsonPrecheck::Fault::kNone:
      break;
    case detail::JsonPrecheck::Fault::kSyntax:
      throw Error(what + " is not valid JSON: " + detail::abbreviate(check.syntax_message(), 300));
    case detail::JsonPrecheck::Fault::kRootNotObject:
      throw Error(what + " root is not a JSON object");
    case detail::JsonPrecheck::Fault::kTooDeep: {
      Error e(what + " nests deeper than " + std::to_string(options.max_depth) + " levels" +
              (options.depth_note ? std::string(" ") + options.depth_note : std::string()));
      const std::vector<std::string> path = check.path();
      if (!path.empty()) e.at_key(detail::abbreviate(detail::join_keys(path)));
      throw e;
    }
    case detail::JsonPrecheck::Fault::kDuplicateKey: {
      const std::vector<std::string> path = check.path();
      if (options.describe_repeated_key) throw options.describe_repeated_key(path);
      throw Error("key '" + detail::abbreviate(path.back()) + "' appears twice")
          .at_key(detail::abbreviate(detail::join_keys(path)));
    }
  }
  try {
    return nlohmann::json::parse(begin, end);
  } catch (const nlohmann::json::exception& e) {  // unreachable after the precheck; kept as a net
    throw Error(what + " is not valid JSON: " + e.what());
  }
}

inline nlohmann::json parse_json_checked(const std::string& text, const JsonReadOptions& options) {
  return parse_json_checked(text.data(), text.data() + text.size(), options);
}

// Reads a whole (small) text file, refusing one larger than max_bytes before reading it all.
// Errors do not carry the file: the caller adds it with the rest of its context.
inline std::string read_text_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(std::string("cannot open: ") + std::strerror(errno));
  std::string text;
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_bytes) throw Error("larger than " + std::to_string(max_bytes) + " bytes");
  }
  if (in.bad()) throw Error(std::string("cannot read: ") + std::strerror(errno));
  return text;
}

// One JSON object, seen from its dotted path. Every key the reader asks for (or declares
// irrelevant) is remembered, so that the keys nobody asked for can be reported.
class JsonObjectReader {
 public:
  JsonObjectReader(const nlohmann::json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object())
      throw Error("must be a JSON object, got " + detail::json_excerpt(j_)).at_key(path_);
  }

  const std::string& path() const noexcept { return path_; }
  const nlohmann::json& json() const noexcept { return j_; }
  std::string path_of(const std::string& key) const { return detail::key_path(path_, key); }
  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    throw Error(message).at_key(path_of(key));
  }

  // The value under `key` (JSON null included), or nullptr when absent; the key counts as read.
  const nlohmann::json* find(const std::string& key) {
    read_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  // As find(), but JSON null reads as absent: for keys whose null means "the default".
  const nlohmann::json* find_value(const std::string& key) {
    const nlohmann::json* v = find(key);
    return v && !v->is_null() ? v : nullptr;
  }

  // Keys accepted without being used.
  void accept(std::initializer_list<const char*> keys) {
    for (const char* k : keys) read_.insert(k);
  }
  void accept(const char* key) { read_.insert(key); }

  // An unsigned integer in [min, max]; `fallback` when absent (required when there is none).
  std::uint64_t integer(const std::string& key, std::optional<std::uint64_t> fallback,
                        std::uint64_t min, std::uint64_t max) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    return check_integer(key, *v, min, max);
  }
  // As integer(), but JSON null gives nullopt, and absence gives absent_value.
  std::optional<std::uint64_t> nullable_integer(const std::string& key,
                                                std::optional<std::uint64_t> absent_value,
                                                std::uint64_t min, std::uint64_t max) {
    const nlohmann::json* v = find(key);
    if (!v) return absent_value;
    if (v->is_null()) return std::nullopt;
    return check_integer(key, *v, min, max);
  }
  std::uint64_t check_integer(const std::string& key, const nlohmann::json& v, std::uint64_t min,
                              std::uint64_t max) const {
    // Parsed text stores non-negative integers as unsigned; JSON built in C++ may hold signed ones.
    if (!v.is_number_integer()) fail(key, "must be an integer, got " + detail::json_excerpt(v));
    if (!v.is_number_unsigned() && v.get<std::int64_t>() < 0)
      fail(key, min == 0 ? "must not be negative, got " + v.dump()
                         : "must be a positive integer, got " + v.dump());
    const std::uint64_t x = v.get<std::uint64_t>();
    if (x < min && min == 1) fail(key, "must be a positive integer, got " + v.dump());
    if (x < min || x > max)
      fail(key, "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                    v.dump());
    return x;
  }

  // A finite number (integer or not).
  double number(const std::string& key, std::optional<double> fallback) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    return check_number(key, *v);
  }
  double check_number(const std::string& key, const nlohmann::json& v) const {
    if (!v.is_number()) fail(key, "must be a number, got " + detail::json_excerpt(v));
    const double x = v.get<double>();
    if (!std::isfinite(x)) fail(key, "must be finite, got " + v.dump());
    return x;
  }
  double positive_number(const std::string& key, std::optional<double> fallback) {
    const double x = number(key, fallback);
    if (!(x > 0)) fail(key, "must be > 0, got " + std::to_string(x));
    return x;
  }

  bool boolean(const std::string& key, std::optional<bool> fallback) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    if (!v->is_boolean()) fail(key, "must be true or false, got " + detail::json_excerpt(*v));
    return v->get<bool>();
  }

  std::string string(const std::string& key, std::optional<std::string> fallback) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    if (!v->is_string()) fail(key, "must be a string, got " + detail::json_excerpt(*v));
    return v->get<std::string>();
  }

  const nlohmann::json& object(const std::string& key) {
    const nlohmann::json* v = find(key);
    if (!v) missing(key);
    if (!v->is_object()) fail(key, "must be a JSON object, got " + detail::json_excerpt(*v));
    return *v;
  }

  // Logs one warning per key that was neither read nor accepted.
  void warn_unknown_keys() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!read_.count(it.key())) log_warning(path_of(it.key()) + ": unknown key, ignored");
  }

 private:
  [[noreturn]] void missing(const std::string& key) const { fail(key, "required key is missing"); }

  const nlohmann::json& j_;
  std::string path_;
  std::set<std::string> read_;
};

}  // namespace sgt
