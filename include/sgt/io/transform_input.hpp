// Parsing a transform request (docs/format.md section 6, IN.json) into a TransformInput:
//
//   {"input_ids": [[...], ...], "noise_mask": [[...], ...], "attention_mask": [[...], ...]}
//
// Masks hold 0/1 or true/false; attention_mask may be absent; a single sequence may be given
// without the outer list. Every problem is an sgt::Error naming the key and, where there is one,
// the row and token. The text goes through the library's one JSON front door (io/json.hpp), so a
// repeated key, a NUL byte or a byte order mark is refused rather than read one way or another.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"
#include "sgt/io/request.hpp"

namespace sgt {

// Large enough for a batch of 64 x 32768 ids with both masks; a request is held in memory twice
// (text and DOM) while it is parsed.
inline constexpr std::size_t kMaxRequestFileBytes = 256u * 1024 * 1024;
// root object -> list of rows -> row: 3 levels.
inline constexpr std::size_t kMaxRequestJsonDepth = 4;

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

inline std::string row_token(std::size_t row, std::size_t token) {
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
        throw Error(detail::row_token(r, s) + ": " + v.dump() + " is not an integer token id")
            .at_key("input_ids")
            .at_position(static_cast<std::int64_t>(s));
      // nlohmann stores 2^63 and above as unsigned: read as int64 they would wrap to negative ids.
      if (v.is_number_unsigned() &&
          v.get<std::uint64_t>() >
              static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw Error(detail::row_token(r, s) + ": id " + v.dump() + " is too large for a token id")
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
          throw Error(detail::row_token(r, s) + ": " + v.dump() + " is not 0, 1, true or false")
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

// Parses the text of an IN.json request through the checked JSON parse (io/json.hpp).
inline TransformInput parse_transform_input_text(const std::string& text) {
  JsonReadOptions options;
  options.what = "request";
  options.max_depth = kMaxRequestJsonDepth;
  options.depth_note = "(a request needs 3: {\"input_ids\": [[...]]})";
  return parse_transform_input(parse_json_checked(text, options));
}

// Reads and parses an IN.json file; errors carry the file.
inline TransformInput load_transform_input(const std::string& path) {
  try {
    return parse_transform_input_text(read_text_file(path, kMaxRequestFileBytes));
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
}

}  // namespace sgt
