// A first pass over untrusted JSON text, shared by the safetensors header and config.json readers.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

namespace sgt::detail {

// First pass over a JSON text (SAX, no DOM): finds the structural faults that the DOM cannot show
// or that would be expensive to build -- a repeated key (nlohmann keeps the last one silently), a
// root that is not an object, nesting deeper than `max_depth` -- and syntax errors. It stops at
// the first fault; `path` then holds the keys from the root to it.
class JsonPrecheck final : public nlohmann::json_sax<nlohmann::json> {
 public:
  enum class Fault { kNone, kSyntax, kRootNotObject, kTooDeep, kDuplicateKey };

  explicit JsonPrecheck(std::size_t max_depth) : max_depth_(max_depth) {}

  Fault fault() const noexcept { return fault_; }
  // nlohmann's message; it quotes the offending token, which may be long: abbreviate it.
  const std::string& syntax_message() const noexcept { return syntax_message_; }
  // Keys from the root down to the fault (for kDuplicateKey, the repeated key is the last one;
  // for kTooDeep, the key whose value nests too deep).
  // An array's element is its index on the key before it ("messages[0]").
  std::vector<std::string> path() const {
    std::vector<std::string> out;
    for (const Frame& f : frames_) {
      if (f.is_object && f.has_key) out.push_back(f.key);
      if (!f.is_object && f.elements > 0) {
        const std::string index = "[" + std::to_string(f.elements - 1) + "]";
        if (out.empty())
          out.push_back(index);
        else
          out.back() += index;
      }
    }
    return out;
  }

  bool null() override { return scalar(); }
  bool boolean(bool) override { return scalar(); }
  bool number_integer(number_integer_t) override { return scalar(); }
  bool number_unsigned(number_unsigned_t) override { return scalar(); }
  bool number_float(number_float_t, const string_t&) override { return scalar(); }
  bool string(string_t&) override { return scalar(); }
  bool binary(binary_t&) override { return scalar(); }
  bool start_object(std::size_t) override { return open(true); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    Frame& f = frames_.back();
    f.key = k;
    f.has_key = true;
    return f.keys.insert(k).second ? true : fail(Fault::kDuplicateKey);
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) override {
    syntax_message_ = e.what();
    return fail(Fault::kSyntax);
  }

 private:
  struct Frame {
    bool is_object = false;
    bool has_key = false;
    std::string key;           // the key whose value is being read
    std::size_t elements = 0;  // an array's values so far
    std::unordered_set<std::string> keys;
  };

  bool fail(Fault f) {
    fault_ = f;
    return false;
  }
  void count_element() {
    if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().elements;
  }
  bool scalar() {
    count_element();
    return frames_.empty() ? fail(Fault::kRootNotObject) : true;
  }
  bool open(bool is_object) {
    if (frames_.empty() && !is_object) return fail(Fault::kRootNotObject);
    count_element();
    if (frames_.size() >= max_depth_) return fail(Fault::kTooDeep);
    frames_.emplace_back();
    frames_.back().is_object = is_object;
    return true;
  }
  bool close() {
    frames_.pop_back();
    return true;
  }

  std::size_t max_depth_;
  std::vector<Frame> frames_;
  Fault fault_ = Fault::kNone;
  std::string syntax_message_;
};

}  // namespace sgt::detail
