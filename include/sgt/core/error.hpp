// sgt::Error: the one exception type of the library.
//
// Every failure a caller can provoke (a malformed file, a bad config key, a token id out of range)
// throws sgt::Error. It carries the context that locates the problem -- file, tensor, key,
// position -- as separate fields, so that a tool can print one line and a test can check the
// field rather than parse the message. Context is usually added as the error travels up:
//
//     try { parse_header(...); } catch (sgt::Error& e) { e.at_file(path); throw; }
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace sgt {

namespace detail {

// `s` with every byte that is not part of valid UTF-8, and every ASCII control character, written
// as \xNN: a message quotes input (a key, a token, a line of a template), and raw invalid bytes
// would garble a terminal or a log and break JSON that carries the message, and a newline in a
// quoted key would make one error two lines.
inline std::string escape_for_message(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x20 || c == 0x7f           ? 0
                    : c < 0x80                      ? 1
                    : (c >> 5) == 0x6 && c >= 0xc2  ? 2
                    : (c >> 4) == 0xe               ? 3
                    : (c >> 3) == 0x1e && c <= 0xf4 ? 4
                                                    : 0;
    for (std::size_t k = 1; k < n; ++k)
      if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) n = 0;
    if (n >= 3) {  // no overlong forms, surrogates or code points past U+10FFFF
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0) || (c == 0xf0 && c1 < 0x90) ||
          (c == 0xf4 && c1 >= 0x90))
        n = 0;
    }
    if (n == 0) {
      const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
      ++i;
      continue;
    }
    out.append(s, i, n);
    i += n;
  }
  return out;
}

}  // namespace detail

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message) : std::runtime_error(message), message_(std::move(message)) {
    rebuild();
  }

  // Context setters return *this so that `throw Error("...").at_tensor(name);` reads naturally.
  // An existing value is kept: the innermost (most precise) context wins.
  Error& at_file(std::string file) {
    if (file_.empty()) file_ = std::move(file);
    rebuild();
    return *this;
  }
  Error& at_tensor(std::string tensor) {
    if (tensor_.empty()) tensor_ = std::move(tensor);
    rebuild();
    return *this;
  }
  Error& at_key(std::string key) {
    if (key_.empty()) key_ = std::move(key);
    rebuild();
    return *this;
  }
  Error& at_position(std::int64_t position) {
    if (!position_) position_ = position;
    rebuild();
    return *this;
  }

  const std::string& message() const noexcept { return message_; }
  const std::string& file() const noexcept { return file_; }
  const std::string& tensor() const noexcept { return tensor_; }
  const std::string& key() const noexcept { return key_; }
  const std::optional<std::int64_t>& position() const noexcept { return position_; }

  const char* what() const noexcept override { return what_.c_str(); }

 private:
  void rebuild() {
    std::string s;
    if (!file_.empty()) s += file_ + ": ";
    if (!tensor_.empty()) s += "tensor '" + tensor_ + "': ";
    if (!key_.empty()) s += "key '" + key_ + "': ";
    if (position_) s += "position " + std::to_string(*position_) + ": ";
    s += message_;
    what_ = detail::escape_for_message(s);
  }

  std::string message_;
  std::string file_;
  std::string tensor_;
  std::string key_;
  std::optional<std::int64_t> position_;
  std::string what_;
};

}  // namespace sgt
