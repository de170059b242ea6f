// The audit report as a document and a picture (audit/report_json.hpp, audit/heat_map.hpp), the
// transform's summary (audit/protection_summary.hpp), and the output files any front end writes
// (io/transform_output.hpp, io/stored_tensors.hpp). The report's numbers are checked against
// tests/data/audit/expected.json (tools/check_audit.py: the reference transform + numpy) for the
// demo prompt and its stored draws.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/audit/heat_map.hpp>
#include <sgt/audit/protection_summary.hpp>
#include <sgt/audit/report_json.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/io/stored_tensors.hpp>
#include <sgt/io/transform_input.hpp>
#include <sgt/io/transform_output.hpp>
#include <sgt/sgt.hpp>

#include "support/fixture_json.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_audit_report {

using nlohmann::json;

namespace {

const std::string kRepo = std::string(SGT_TEST_DATA_DIR) + "/../..";
const std::string kDemo = kRepo + "/examples/models/demo";

std::string read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "sgt_test_audit_report";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

struct DemoAudit {
  sgt::Transform model{kDemo};
  sgt::TransformInput in = sgt::load_transform_input(kRepo + "/examples/prompt.json");
  sgt::StoredF32Tensor draws = sgt::open_f32_tensor(
      std::string(SGT_TEST_DATA_DIR) + "/audit/noise_draws.safetensors", "noise");
  sgt::AuditReport report;
  DemoAudit() {
    sgt::AuditOptions o;
    o.precision = sgt::Precision::F32;
    o.injected_draws = draws.view;
    report = sgt::audit_transform(model, in, o);
  }
};

}  // namespace

TEST_CASE("the audit report's JSON holds the reference's numbers, in the CLI's schema") {
  DemoAudit a;
  const json expected = sgt_test::read_fixture_json("audit/expected.json");
  sgt::AuditDescription d;
  d.precision = "f32";
  d.noise = "injected";
  d.text = [](const std::vector<std::int32_t>& ids, bool) {
    std::string s;
    for (auto id : ids) s += "<" + std::to_string(id) + ">";
    return nlohmann::ordered_json(s);
  };
  const nlohmann::ordered_json j = sgt::to_json(a.report, a.in, d);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  CHECK(keys == std::vector<std::string>{"draws", "precision", "noise", "vocab_size", "overall",
                                         "tokens", "sequences"});
  CHECK(j["draws"] == 4);
  CHECK(j["noise"] == "injected");
  const auto& overall = expected["overall"];
  for (const char* k : {"protected_tokens", "recovery_l2", "recovery_cosine", "mean_rank_l2"})
    CHECK(j["overall"][k].get<double>() ==
          doctest::Approx(overall[k].get<double>()).epsilon(1e-12));
  REQUIRE(j["tokens"].size() == expected["tokens"].size());
  for (std::size_t t = 0; t < j["tokens"].size(); ++t) {
    const auto& ours = j["tokens"][t];
    const auto& ref = expected["tokens"][t];
    CHECK(ours["id"] == ref["id"]);
    CHECK(ours["protected"] == ref["protected"]);
    CHECK(ours["nearest_l2"] == ref["nearest_l2"]);
    CHECK(ours["rank_l2"] == ref["rank_l2"]);
    CHECK(ours["text"] == "<" + std::to_string(ref["id"].get<int>()) + ">");
    // Numbers only protected tokens have are null for the others.
    CHECK(ours["recovery_l2"].is_null() == !ref["protected"].get<bool>());
  }
  // Draw 0's reconstruction: protected tokens replaced by their nearest ids.
  const auto& seq = j["sequences"][0];
  REQUIRE(seq["reconstructed_ids"].size() == a.in.input_ids.size());
  for (std::size_t t = 0; t < a.in.input_ids.size(); ++t)
    CHECK(seq["reconstructed_ids"][t] ==
          (a.in.noise_mask[t] ? expected["tokens"][t]["nearest_l2"][0] : json(a.in.input_ids[t])));
  // Without a tokenizer every text is null.
  const nlohmann::ordered_json bare = sgt::to_json(a.report, a.in, sgt::AuditDescription{});
  CHECK(bare["tokens"][0]["text"].is_null());
  CHECK(bare["sequences"][0]["original"].is_null());
  // The table names every token and ends with the overall line.
  const std::string table = sgt::audit_table(a.report, d);
  CHECK(table.find("<1017>") != std::string::npos);
  CHECK(table.find("30 protected tokens, 4 draws: recovery L2 0.567") != std::string::npos);
}

TEST_CASE("the heat map: a cell per protected token and draw, red where the token is recovered") {
  DemoAudit a;
  const sgt::RgbImage image = sgt::audit_heat_map(a.report);
  CHECK(image.width == 4 * 8);
  CHECK(image.height == 30 * 8);
  REQUIRE(image.pixels.size() == image.width * image.height * 3);
  auto pixel = [&](std::size_t row, std::size_t draw) {  // inside the cell, off the grid line
    const std::size_t at = ((row * 8 + 3) * image.width + draw * 8 + 3) * 3;
    return std::vector<int>{image.pixels[at], image.pixels[at + 1], image.pixels[at + 2]};
  };
  // Token 1 (id 50, the first protected one): draws 0 and 1 recover it, draw 2 ranks it 1.
  CHECK(pixel(0, 0) == std::vector<int>{200, 30, 30});
  CHECK(pixel(0, 1) == std::vector<int>{200, 30, 30});
  CHECK(pixel(0, 2) != std::vector<int>{200, 30, 30});
  const std::size_t grid = ((7) * image.width + 3) * 3;
  CHECK(image.pixels[grid] == 255);
  // Nothing protected: nothing to plot.
  sgt::AuditReport empty = a.report;
  for (auto& t : empty.tokens) t.is_protected = false;
  CHECK_THROWS_WITH(sgt::audit_heat_map(empty), doctest::Contains("no token is protected"));
}

TEST_CASE("the protection summary matches the transform's own intermediates") {
  const sgt::Transform model(kDemo);
  sgt::TransformInput in = sgt::load_transform_input(kRepo + "/examples/prompt.json");
  sgt::RunOptions o;
  o.noise = sgt::NoiseSource::Torch;
  o.seed = 7;
  o.keep_intermediates = true;
  const sgt::TransformResult r = model.run(in, o);
  const sgt::ProtectionSummary s = sgt::summarize_protection(model, in, r);
  CHECK(s.real_tokens == 31);
  CHECK(s.protected_tokens == 30);
  double dist = 0, norm = 0;
  for (std::size_t t = 0; t < 31; ++t) {
    if (!in.noise_mask[t]) continue;
    double d2 = 0, n2 = 0;
    for (std::size_t i = 0; i < r.hidden; ++i) {
      const double e = r.embeddings[t * r.hidden + i];
      d2 += (r.transformed[t * r.hidden + i] - e) * (r.transformed[t * r.hidden + i] - e);
      n2 += e * e;
    }
    dist += std::sqrt(d2);
    norm += std::sqrt(n2);
  }
  CHECK(s.mean_distance == doctest::Approx(dist / 30).epsilon(1e-12));
  CHECK(s.mean_clean_norm == doctest::Approx(norm / 30).epsilon(1e-12));
  CHECK(s.distance_ratio == doctest::Approx(dist / norm).epsilon(1e-12));
  CHECK(s.protected_percent() == doctest::Approx(100.0 * 30 / 31));
  std::fill(in.noise_mask.begin(), in.noise_mask.end(), std::uint8_t{0});
  const sgt::ProtectionSummary none = sgt::summarize_protection(model, in, model.run(in, o));
  CHECK(none.protected_tokens == 0);
  CHECK(none.mean_distance == 0);
}

TEST_CASE(
    "write_transform_output: every format from plain arrays, padding rows dropped for servers") {
  // B = 2, S = 3, H = 2; row 0 is left-padded, row 1 right-padded.
  const std::vector<float> x{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  sgt::TransformOutputArrays a;
  a.batch = 2;
  a.seq_len = 3;
  a.hidden = 2;
  a.transformed = x.data();
  a.attention_mask = {0, 1, 1, 1, 1, 0};
  sgt::TransformOutputOptions o;
  const std::string st = temp_path("out.safetensors");
  sgt::write_transform_output(st, o, a);
  {
    const sgt::SafetensorsFile f(st);
    const auto t = f.tensor("transformed");
    CHECK(t.shape_string() == "[2, 3, 2]");
    CHECK(std::vector<float>(t.as<float>().data(), t.as<float>().data() + 12) == x);
    CHECK_FALSE(f.contains("mean"));
  }
  a.embeddings = a.mean = a.sigma = x.data();
  CHECK_THROWS_WITH(sgt::write_transform_output(st, o, a), doctest::Contains("all four"));
  a.noise = x.data();
  o.dtype = sgt::DType::BF16;
  sgt::write_transform_output(st, o, a);
  CHECK(sgt::SafetensorsFile(st).tensor("std").dtype() == sgt::DType::BF16);

  // torch: a list of the real rows, (2, 2) each, as torch.save writes them.
  o.format = sgt::OutputFormat::Torch;
  const std::string pt = temp_path("out.pt");
  sgt::write_transform_output(pt, o, a);
  const std::vector<float> row0{3, 4, 5, 6}, row1{7, 8, 9, 10};
  const auto expected_pt = sgt::torch_save_bytes(
      std::vector<sgt::EncodedTensor>{sgt::encode_tensor(sgt::DType::BF16, {2, 2}, row0.data()),
                                      sgt::encode_tensor(sgt::DType::BF16, {2, 2}, row1.data())},
      "out");
  CHECK(read_file_bytes(pt) == std::string(expected_pt.begin(), expected_pt.end()));

  o.format = sgt::OutputFormat::VllmCompletions;
  o.request.model = "m";
  o.request.max_tokens = 5;
  const std::string body = temp_path("body.json");
  sgt::write_transform_output(body, o, a);
  const json j = json::parse(read_file_bytes(body));
  CHECK(j["model"] == "m");
  CHECK(j["max_tokens"] == 5);
  CHECK(j["prompt_embeds"].size() == 2);

  CHECK(sgt::default_output_dtype(sgt::OutputFormat::Safetensors) == sgt::DType::F32);
  CHECK(sgt::default_output_dtype(sgt::OutputFormat::VllmCompletions) == sgt::DType::BF16);
  CHECK(sgt::enum_from_name(sgt::kOutputFormatNames, "vllm-completions") ==
        sgt::OutputFormat::VllmCompletions);
  CHECK_THROWS_WITH(sgt::check_output_folder(temp_path("missing/x.safetensors")),
                    doctest::Contains("does not exist"));
}

TEST_CASE("stored tensors: noise and prompt embeddings, errors naming the file and tensor") {
  const std::vector<float> x{1, 2, 3, 4, 5, 6};
  sgt::TransformOutputArrays a;
  a.batch = 1;
  a.seq_len = 3;
  a.hidden = 2;
  a.transformed = x.data();
  sgt::TransformOutputOptions o;
  o.dtype = sgt::DType::BF16;
  const std::string path = temp_path("embeds.safetensors");
  sgt::write_transform_output(path, o, a);
  const sgt::StoredEmbeddings e = sgt::read_stored_embeddings(path, "transformed", 2);
  CHECK(e.seq_len == 3);
  CHECK(std::vector<float>(e.values.begin(), e.values.end()) ==
        x);  // small integers: exact in bf16
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const sgt::Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string hidden = message([&] { sgt::read_stored_embeddings(path, "transformed", 4); });
  CHECK(hidden.find("embeds.safetensors") != std::string::npos);
  CHECK(hidden.find("'transformed'") != std::string::npos);
  CHECK(hidden.find("must be [1, S, 4]") != std::string::npos);
  const std::string missing = message([&] { sgt::read_stored_embeddings(path, "other", 2); });
  CHECK(missing.find("embeds.safetensors") != std::string::npos);
  CHECK(missing.find("no tensor 'other'") != std::string::npos);
  // Stored noise must be F32.
  const std::string dtype = message([&] { sgt::open_f32_tensor(path, "transformed"); });
  CHECK(dtype.find("embeds.safetensors") != std::string::npos);
  CHECK(dtype.find("must be F32") != std::string::npos);
  const std::vector<float> bad{1, NAN, 3, 4, 5, 6};
  a.transformed = bad.data();
  o.dtype = sgt::DType::F32;
  sgt::write_transform_output(path, o, a);
  CHECK_THROWS_WITH(sgt::read_stored_embeddings(path, "transformed", 2),
                    doctest::Contains("non-finite value at element 1"));
  CHECK(sgt::open_f32_tensor(path, "transformed").view.size() == 6);
}

}  // namespace test_audit_report
