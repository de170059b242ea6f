// Parsing IN.json (docs/format.md section 6) into a TransformInput.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <tuple>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_transform_input {

namespace {
// Through the same checked JSON parse as load_transform_input.
sgt::TransformInput parse(const std::string& text) {
  return sgt::parse_transform_input_text(text);
}

// The error's key and message, for a request that must be refused.
std::pair<std::string, std::string> error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const sgt::Error& e) {
    return {e.key(), e.what()};
  }
  return {"<no error>", ""};
}
}  // namespace

TEST_CASE("batched input with masks as 0/1 and true/false") {
  const auto in = parse(R"({"input_ids": [[5, 6, 7], [8, 9, 10]],
                            "noise_mask": [[1, 0, true], [false, 1, 1]],
                            "attention_mask": [[0, 1, 1], [1, 1, 0]]})");
  CHECK(in.batch == 2);
  CHECK(in.seq_len == 3);
  CHECK(in.input_ids == std::vector<std::int64_t>{5, 6, 7, 8, 9, 10});
  CHECK(in.noise_mask == std::vector<std::uint8_t>{1, 0, 1, 0, 1, 1});
  CHECK(in.attention_mask == std::vector<std::uint8_t>{0, 1, 1, 1, 1, 0});
}

TEST_CASE("a single sequence may omit the outer list; attention_mask may be absent or null") {
  auto in = parse(R"({"input_ids": [1, 2], "noise_mask": [1, 1]})");
  CHECK(in.batch == 1);
  CHECK(in.seq_len == 2);
  CHECK(in.attention_mask.empty());
  in = parse(R"({"input_ids": [1, 2], "noise_mask": [1, 1], "attention_mask": null})");
  CHECK(in.attention_mask.empty());
}

TEST_CASE("malformed requests name the key and the position") {
  CHECK(error_of(R"([1, 2])").second.find("object") != std::string::npos);
  CHECK(error_of(R"({"noise_mask": [1]})").first == "input_ids");
  CHECK(error_of(R"({"input_ids": [1]})").first == "noise_mask");
  CHECK(error_of(R"({"input_ids": [], "noise_mask": []})").first == "input_ids");
  CHECK(error_of(R"({"input_ids": [[]], "noise_mask": [[]]})").first == "input_ids");
  CHECK(error_of(R"({"input_ids": 3, "noise_mask": [1]})").first == "input_ids");
  CHECK(error_of(R"({"input_ids": [[1, 2], 3], "noise_mask": [[1, 1], [1]]})").first ==
        "input_ids");
  CHECK(error_of(R"({"input_ids": [[1, 2], [3]], "noise_mask": [[1, 1], [1]]})")
            .second.find("row 1 has 1 tokens") != std::string::npos);
  CHECK(error_of(R"({"input_ids": [1, "a"], "noise_mask": [1, 1]})").second.find("position 1") !=
        std::string::npos);
  CHECK(error_of(R"({"input_ids": [1, 1.5], "noise_mask": [1, 1]})").first == "input_ids");
  CHECK(error_of(R"({"input_ids": [1, true], "noise_mask": [1, 1]})").first == "input_ids");
  CHECK(error_of(R"({"input_ids": [1, 2], "noise_mask": [1]})").first == "noise_mask");
  CHECK(error_of(R"({"input_ids": [1, 2], "noise_mask": [1, 2]})").second.find("row 0, token 1") !=
        std::string::npos);
  CHECK(error_of(R"({"input_ids": [1, 2], "noise_mask": [1, -1]})").first == "noise_mask");
  CHECK(error_of(R"({"input_ids": [1, 2], "noise_mask": [1, "1"]})").first == "noise_mask");
  CHECK(error_of(R"({"input_ids": [[1, 2]], "noise_mask": [[1, 1], [1, 1]]})").first ==
        "noise_mask");
  CHECK(error_of(R"({"input_ids": [1, 2], "noise_mask": [1, 1], "attention_mask": [1]})").first ==
        "attention_mask");
  CHECK(error_of(R"({"input_ids": [1, 2], "noise_mask": [1, 1], "attention_mask": [1, 0.5]})")
            .first == "attention_mask");
  CHECK(error_of(R"({"input_ids": [1, 2], "noise_mask": [1, 1], "extra": 0})").first == "extra");
}

TEST_CASE("load_transform_input names the file") {
  try {
    sgt::load_transform_input("definitely/not/here.json");
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.file() == "definitely/not/here.json");
  }
}

TEST_CASE("the request goes through the one JSON front door: repeated keys, NUL, BOM, depth") {
  // nlohmann alone would keep the last input_ids silently.
  auto [key, what] = error_of(R"({"input_ids": [[1]], "input_ids": [[2]], "noise_mask": [[1]]})");
  CHECK(key == "input_ids");
  CHECK(what.find("appears twice") != std::string::npos);
  std::tie(key, what) = error_of(R"({"input_ids": [1], "noise_mask": [1], "noise_mask": [0]})");
  CHECK(key == "noise_mask");
  CHECK(what.find("appears twice") != std::string::npos);

  std::tie(key, what) = error_of(std::string("{\"input_ids\": [1], \"noise_mask\": [1]}\0{}", 40));
  CHECK(what.find("NUL byte at offset 37") != std::string::npos);
  std::tie(key, what) = error_of("\xEF\xBB\xBF{\"input_ids\": [1], \"noise_mask\": [1]}");
  CHECK(what.find("byte order mark") != std::string::npos);
  std::tie(key, what) = error_of(R"({"input_ids": [[[[[1]]]]], "noise_mask": [1]})");
  CHECK(what.find("request nests deeper than 4 levels") != std::string::npos);
  CHECK(key == "input_ids[0][0][0]");  // the path to the value that nests too deep
  // One level less reaches the per-value check and its clearer message.
  std::tie(key, what) = error_of(R"({"input_ids": [[[1]]], "noise_mask": [1]})");
  CHECK(what.find("is not an integer token id") != std::string::npos);
  std::tie(key, what) = error_of(R"([1, 2])");
  CHECK(what.find("request root is not a JSON object") != std::string::npos);
  std::tie(key, what) = error_of(R"({"input_ids": [1, 2], "noise_mask": [1, 1])");
  CHECK(what.find("request is not valid JSON") != std::string::npos);
}

TEST_CASE("ids of 2^63 and above are refused as too large, not wrapped to negative ids") {
  for (const char* id : {"9223372036854775808", "18446744073709551615"}) {
    CAPTURE(id);
    const auto [key, what] =
        error_of(std::string(R"({"input_ids": [1, )") + id + R"(], "noise_mask": [1, 1]})");
    CHECK(key == "input_ids");
    CHECK(what.find(std::string("row 0, token 1: id ") + id + " is too large") !=
          std::string::npos);
    CHECK(what.find("-1") == std::string::npos);
  }
  // The largest int64 parses; whether it is in the vocabulary is the model's check.
  CHECK(parse(R"({"input_ids": [9223372036854775807], "noise_mask": [1]})").input_ids[0] ==
        INT64_MAX);
}

}  // namespace test_transform_input
