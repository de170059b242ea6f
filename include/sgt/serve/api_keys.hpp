// Bearer keys: the keys a server accepts (one per line of --api-key-file) and the check of an
// Authorization header against them in time that does not depend on where a guess first differs,
// so a client cannot find a key byte by byte from response times.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/core/secure_memory.hpp"

namespace sgt::serve {

// Equality of two strings in time that depends only on their lengths (and that of `b` only
// through a loop over `a`): every byte is compared, and the result is folded without branches.
inline bool constant_time_equals(std::string_view a, std::string_view b) noexcept {
  unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (b.empty() ? 0 : b[i % b.size()]));
  return diff == 0;
}

class ApiKeys {
 public:
  // The text of a key file: one key per line; blank lines and lines starting with '#' skipped,
  // surrounding spaces and CR trimmed. A file without a key is an error: it would lock every
  // client out, which is never what was meant.
  static ApiKeys parse(const std::string& text) {
    ApiKeys k;
    std::size_t pos = 0;
    while (pos <= text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
        line.remove_suffix(1);
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      if (!line.empty() && line.front() != '#') k.keys_.emplace_back(line);
      pos = end + 1;
    }
    if (k.keys_.empty()) throw Error("holds no API key (one key per line)");
    return k;
  }

  ApiKeys() = default;
  ApiKeys(const ApiKeys&) = default;
  ApiKeys(ApiKeys&&) = default;
  ApiKeys& operator=(const ApiKeys&) = default;
  ApiKeys& operator=(ApiKeys&&) = default;
  ~ApiKeys() {
    for (std::string& key : keys_) secure_wipe(key.data(), key.size());
  }

  bool enabled() const noexcept { return !keys_.empty(); }

  // True when no keys are configured, or `authorization` is "Bearer <one of the keys>". Every
  // key is compared, whichever matches.
  bool accepts(std::string_view authorization) const noexcept {
    if (keys_.empty()) return true;
    constexpr std::string_view kScheme = "Bearer ";
    if (authorization.size() < kScheme.size() ||
        authorization.substr(0, kScheme.size()) != kScheme)
      return false;
    const std::string_view token = authorization.substr(kScheme.size());
    bool ok = false;
    for (const std::string& key : keys_) ok |= constant_time_equals(key, token);
    return ok;
  }

 private:
  std::vector<std::string> keys_;
};

}  // namespace sgt::serve
