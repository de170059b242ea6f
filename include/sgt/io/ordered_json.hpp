// parse_json_checked (io/json.hpp) with the keys kept in document order: for documents whose order
// means something to a reader -- a chat's messages and keys, which a template may iterate, and a
// base model's config.json that `sgt make-transform` rewrites for people to read.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"

namespace sgt {

namespace detail {

// Builds an ordered document from SAX events, appending each key to its object without the
// duplicate search ordered_json's own parser does per key (quadratic in an object's keys: 200k
// keys took minutes). The text has passed parse_json_checked, which refuses repeated keys.
class OrderedJsonBuilder : public nlohmann::json_sax<nlohmann::ordered_json> {
 public:
  using Json = nlohmann::ordered_json;

  explicit OrderedJsonBuilder(Json& root) : root_(root) {}

  bool null() override { return add(Json(nullptr)); }
  bool boolean(bool v) override { return add(Json(v)); }
  bool number_integer(number_integer_t v) override { return add(Json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return add(Json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return add(Json(v)); }
  bool string(string_t& v) override { return add(Json(std::move(v))); }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return open(Json::object()); }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(Json::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  // Places v in the innermost open container (or as the root); returns where it now lives.
  Json* place(Json&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& parent = *open_.back();
    if (parent.is_array()) {
      parent.get_ref<Json::array_t&>().push_back(std::move(v));
      return &parent.get_ref<Json::array_t&>().back();
    }
    auto& members = parent.get_ref<Json::object_t&>();
    members.Json::object_t::Container::emplace_back(std::move(key_), std::move(v));
    return &members.Json::object_t::Container::back().second;
  }
  bool add(Json&& v) { return place(std::move(v)) != nullptr; }
  // A container stays where it was placed while it is open: its parent gets no other member
  // until it closes.
  bool open(Json&& container) {
    open_.push_back(place(std::move(container)));
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }

  Json& root_;
  std::vector<Json*> open_;
  std::string key_;
};

}  // namespace detail

// parse_json_checked (io/json.hpp) with the keys kept in document order: every check of the
// library's JSON front door runs first (NUL, BOM, repeated keys, depth, syntax), then the
// already-validated text is read again into an ordered document, in time linear in its size.
inline nlohmann::ordered_json parse_ordered_json_checked(const std::string& text,
                                                         const JsonReadOptions& options) {
  (void)parse_json_checked(text, options);
  nlohmann::ordered_json root;
  detail::OrderedJsonBuilder builder(root);
  // Unreachable after the checks; kept as a net.
  if (!nlohmann::ordered_json::sax_parse(text, &builder))
    throw Error(std::string(options.what) + " is not valid JSON");
  return root;
}

}  // namespace sgt
