// Parsing IN.json (spec section 3) into a TransformInput.
#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

namespace {
sgt::TransformInput parse(const std::string& text) {
  return sgt::parse_transform_input(nlohmann::json::parse(text));
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
