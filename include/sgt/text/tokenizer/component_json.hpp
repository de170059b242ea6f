// Reading the components of tokenizer.json: every component is an object with a "type"; its
// options are read by key, and every error names the component's path in the file
// (`pre_tokenizer.pretokenizers[1].behavior`). A component or option value we do not implement is
// refused here, by name, rather than approximated.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"

namespace sgt::text::detail {

using Json = nlohmann::json;

[[noreturn]] inline void fail_at(const std::string& path, const std::string& message) {
  throw Error(message).at_key(path);
}

inline std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

inline const Json& require_object(const Json& j, const std::string& path) {
  if (!j.is_object()) fail_at(path, "must be a JSON object, got " + sgt::detail::json_excerpt(j));
  return j;
}

inline const Json& require_array(const Json& j, const std::string& path) {
  if (!j.is_array()) fail_at(path, "must be a JSON array, got " + sgt::detail::json_excerpt(j));
  return j;
}

// The member `key` of object `j` (at `path`), required.
inline const Json& member(const Json& j, const char* key, const std::string& path) {
  const auto it = j.find(key);
  if (it == j.end()) fail_at(sgt::detail::key_path(path, key), "required key is missing");
  return *it;
}

inline const Json* optional_member(const Json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline std::string string_member(const Json& j, const char* key, const std::string& path) {
  const Json& v = member(j, key, path);
  if (!v.is_string())
    fail_at(sgt::detail::key_path(path, key),
            "must be a string, got " + sgt::detail::json_excerpt(v));
  return v.get<std::string>();
}

inline bool bool_member(const Json& j, const char* key, const std::string& path, bool fallback) {
  const Json* v = optional_member(j, key);
  if (!v) return fallback;
  if (!v->is_boolean())
    fail_at(sgt::detail::key_path(path, key),
            "must be true or false, got " + sgt::detail::json_excerpt(*v));
  return v->get<bool>();
}

inline std::uint64_t uint_member(const Json& j, const char* key, const std::string& path,
                                 std::uint64_t max) {
  const Json& v = member(j, key, path);
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() > max)
    fail_at(sgt::detail::key_path(path, key), "must be an integer in [0, " + std::to_string(max) +
                                                  "], got " + sgt::detail::json_excerpt(v));
  return v.get<std::uint64_t>();
}

// The "type" of a component object.
inline std::string component_type(const Json& j, const std::string& path) {
  require_object(j, path);
  return string_member(j, "type", path);
}

[[noreturn]] inline void unsupported_type(const std::string& path, const std::string& type) {
  fail_at(path, "type \"" + sgt::detail::abbreviate(type) + "\" is not supported");
}

}  // namespace sgt::text::detail
