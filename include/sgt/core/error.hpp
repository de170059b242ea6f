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
    what_ = std::move(s);
  }

  std::string message_;
  std::string file_;
  std::string tensor_;
  std::string key_;
  std::optional<std::int64_t> position_;
  std::string what_;
};

}  // namespace sgt
