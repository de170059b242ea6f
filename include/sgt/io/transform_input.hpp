// Parsing a transform request (spec section 3, IN.json) into a TransformInput:
//
//   {"input_ids": [[...], ...], "noise_mask": [[...], ...], "attention_mask": [[...], ...]}
//
// Masks hold 0/1 or true/false; attention_mask may be absent; a single sequence may be given
// without the outer list. Every problem is an sgt::Error naming the key and, where there is one,
// the row and token.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/model/transform.hpp"

namespace sgt {

namespace detail {

// Returns the rows of `key` as a list of lists (a flat list is one row).
inline std::vector<const nlohmann::json*> json_rows(const nlohmann::json& value,
                                                    const std::string& key) {
  if (!value.is_array()) throw Error("must be a list (of lists)").at_key(key);
  if (value.empty()) throw Error("is empty").at_key(key);
  std::vector<const nlohmann::json*> rows;
  const bool nested = value.front().is_array();
  if (!nested) {
    rows.push_back(&value);
    return rows;
  }
  for (std::size_t r = 0; r < value.size(); ++r) {
    if (!value[r].is_array())
      throw Error("row " + std::to_string(r) + " is not a list (mixed nesting)").at_key(key);
    rows.push_back(&value[r]);
  }
  return rows;
}

inline std::string where(std::size_t row, std::size_t token) {
  return "row " + std::to_string(row) + ", token " + std::to_string(token);
}

}  // namespace detail

inline TransformInput parse_transform_input(const nlohmann::json& j) {
  if (!j.is_object())
    throw Error("the request must be a JSON object with input_ids and noise_mask");
  for (const auto& [k, v] : j.items()) {
    (void)v;
    if (k != "input_ids" && k != "noise_mask" && k != "attention_mask")
      throw Error("unknown key (expected input_ids, noise_mask, attention_mask)").at_key(k);
  }
  if (!j.contains("input_ids")) throw Error("is missing").at_key("input_ids");
  if (!j.contains("noise_mask")) throw Error("is missing").at_key("noise_mask");

  const auto id_rows = detail::json_rows(j["input_ids"], "input_ids");
  TransformInput in;
  in.batch = id_rows.size();
  in.seq_len = id_rows.front()->size();
  if (in.seq_len == 0) throw Error("row 0 is empty").at_key("input_ids");
  for (std::size_t r = 0; r < id_rows.size(); ++r) {
    const auto& row = *id_rows[r];
    if (row.size() != in.seq_len)
      throw Error("row " + std::to_string(r) + " has " + std::to_string(row.size()) +
                  " tokens, row 0 has " + std::to_string(in.seq_len) +
                  " (pad rows to one length and mark padding in attention_mask)")
          .at_key("input_ids");
    for (std::size_t s = 0; s < row.size(); ++s) {
      const auto& v = row[s];
      if (!v.is_number_integer())
        throw Error(detail::where(r, s) + ": " + v.dump() + " is not an integer token id")
            .at_key("input_ids")
            .at_position(static_cast<std::int64_t>(s));
      in.input_ids.push_back(v.get<std::int64_t>());
    }
  }

  auto parse_mask = [&](const std::string& key, std::vector<std::uint8_t>& out) {
    const auto rows = detail::json_rows(j[key], key);
    if (rows.size() != in.batch)
      throw Error("has " + std::to_string(rows.size()) + " rows, input_ids has " +
                  std::to_string(in.batch))
          .at_key(key);
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const auto& row = *rows[r];
      if (row.size() != in.seq_len)
        throw Error("row " + std::to_string(r) + " has " + std::to_string(row.size()) +
                    " values, input_ids has " + std::to_string(in.seq_len))
            .at_key(key);
      for (std::size_t s = 0; s < row.size(); ++s) {
        const auto& v = row[s];
        if (v.is_boolean()) {
          out.push_back(v.get<bool>() ? 1 : 0);
        } else if (v.is_number_integer() &&
                   (v.get<std::int64_t>() == 0 || v.get<std::int64_t>() == 1)) {
          out.push_back(static_cast<std::uint8_t>(v.get<std::int64_t>()));
        } else {
          throw Error(detail::where(r, s) + ": " + v.dump() + " is not 0, 1, true or false")
              .at_key(key)
              .at_position(static_cast<std::int64_t>(s));
        }
      }
    }
  };
  parse_mask("noise_mask", in.noise_mask);
  if (j.contains("attention_mask") && !j["attention_mask"].is_null())
    parse_mask("attention_mask", in.attention_mask);
  return in;
}

inline TransformInput load_transform_input(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open the input file").at_file(path);
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return parse_transform_input(nlohmann::json::parse(ss.str()));
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("not valid JSON: ") + e.what()).at_file(path);
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
}

}  // namespace sgt
