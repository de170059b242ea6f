// io/torch_pt_reader.hpp and base64_decode: the bytes torch.save itself wrote (tests/data/outputs,
// made by `tools/check_outputs.py fixtures`) read back to the values torch rounded; what our
// writer writes reads back; and every way an untrusted payload can be wrong is refused by name.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <sgt/io/base64.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/io/torch_pt_reader.hpp>
#include <sgt/io/torch_pt_writer.hpp>

#include "support/file_bytes.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_torch_pt_reader {

namespace {

const std::string kData = std::string(SGT_TEST_DATA_DIR) + "/outputs";

using sgt_test::read_bytes;

sgt::EncodedTensor fixture(sgt::DType d) {
  sgt::SafetensorsFile f(kData + "/values.safetensors");
  const auto t = f.tensor("normal").as<float>();
  return sgt::encode_tensor(d, {t.shape().begin(), t.shape().begin() + t.rank()}, t.data());
}

std::string error_of(const std::vector<unsigned char>& b, const sgt::TorchReadLimits& l = {}) {
  try {
    (void)sgt::read_torch_tensor(b.data(), b.size(), l);
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("torch.save payloads written by torch read back as torch's rounded values") {
  for (const char* name : {"f32", "bf16", "f16"}) {
    CAPTURE(name);
    const sgt::DType d = std::string(name) == "f32"    ? sgt::DType::F32
                         : std::string(name) == "bf16" ? sgt::DType::BF16
                                                       : sgt::DType::F16;
    const std::vector<unsigned char> pt = read_bytes(kData + "/payload_" + std::string(name) + ".pt");
    std::vector<unsigned char> b64 = read_bytes(kData + "/payload_" + std::string(name) + ".b64");
    while (!b64.empty() && (b64.back() == '\n' || b64.back() == '\r')) b64.pop_back();
    const std::vector<unsigned char> decoded = sgt::base64_decode(
        std::string_view(reinterpret_cast<const char*>(b64.data()), b64.size()), 1 << 20);
    CHECK(decoded == pt);
    const sgt::EncodedTensor got = sgt::read_torch_tensor(pt.data(), pt.size());
    const sgt::EncodedTensor want = fixture(d);
    CHECK(got.dtype == d);
    CHECK(got.shape == want.shape);
    CHECK(got.bytes == want.bytes);
  }
}

TEST_CASE("what torch_save_bytes writes reads back, in every dtype and shape") {
  const float values[6] = {1.5f, -2.25f, 0.f, 3.f, 1e-3f, -7.f};
  for (const sgt::DType d : {sgt::DType::F32, sgt::DType::BF16, sgt::DType::F16})
    for (const std::vector<std::uint64_t>& shape :
         {std::vector<std::uint64_t>{2, 3}, {6}, {1, 2, 3}, {0, 3}}) {
      const sgt::EncodedTensor t = sgt::encode_tensor(d, shape, values);
      const auto bytes = sgt::torch_save_bytes(t);
      const sgt::EncodedTensor back = sgt::read_torch_tensor(bytes.data(), bytes.size());
      CHECK(back.dtype == d);
      CHECK(back.shape == shape);
      CHECK(back.bytes == t.bytes);
    }
}

TEST_CASE("the reader refuses what is not one dense tensor, and every bound") {
  // A list of tensors (torch's own file): the pickle holds a list, not a tensor.
  CHECK(error_of(read_bytes(kData + "/list_f32.pt")).find("opcode 0x5d") != std::string::npos);
  const float v[4] = {1, 2, 3, 4};
  const auto good = sgt::torch_save_bytes(sgt::encode_tensor(sgt::DType::F32, {2, 2}, v));
  CHECK(error_of(good) == "");
  // Element and rank limits, checked before the copy.
  sgt::TorchReadLimits small;
  small.max_elements = 3;
  CHECK(error_of(good, small).find("more than 3 elements") != std::string::npos);
  small = {};
  small.max_rank = 1;
  CHECK(error_of(good, small).find("rank") != std::string::npos);
  // Every truncation is refused, never read past the end.
  for (std::size_t n = 0; n < good.size(); n += 7) {
    const std::vector<unsigned char> cut(good.begin(), good.begin() + n);
    CHECK_MESSAGE(error_of(cut) != "", "truncated to " << n);
  }
  // A global other than the three callables (os.system instead of _rebuild_tensor_v2).
  std::vector<unsigned char> evil = good;
  const std::string from = "torch._utils\n_rebuild_tensor_v2\n";
  const std::string to = "os\nsystem\n________________________\n";
  auto it = std::search(evil.begin(), evil.end(), from.begin(), from.end());
  REQUIRE(it != evil.end());
  std::copy(to.begin(), to.begin() + from.size(), it);  // same length: the archive stays valid
  const std::string e = error_of(evil);
  CHECK(e.find("refuses the global os.system") != std::string::npos);
  // A data record shorter than the storage the pickle declares.
  sgt::EncodedTensor t = sgt::encode_tensor(sgt::DType::F32, {2, 2}, v);
  const auto bytes = sgt::torch_save_bytes(t);
  std::vector<unsigned char> wrong = bytes;
  // The pickle's numel (K\x04 before the tuple of the persistent id) says 5 elements.
  const std::string numel("X\x03\x00\x00\x00" "cpuq\x04K\x04", 12);
  auto at = std::search(wrong.begin(), wrong.end(), numel.begin(), numel.end());
  REQUIRE(at != wrong.end());
  *(at + numel.size() - 1) = 5;
  CHECK(error_of(wrong).find("not the storage's 5 elements") != std::string::npos);
  // Compressed records are refused.
  std::vector<unsigned char> compressed = bytes;
  const std::size_t cd = [&] {
    for (std::size_t i = 0; i + 4 <= compressed.size(); ++i)
      if (compressed[i] == 0x50 && compressed[i + 1] == 0x4b && compressed[i + 2] == 1 &&
          compressed[i + 3] == 2)
        return i;
    return std::size_t{0};
  }();
  REQUIRE(cd != 0);
  compressed[cd + 10] = 8;  // deflate
  CHECK(error_of(compressed).find("compressed") != std::string::npos);
}

TEST_CASE("base64_decode is as strict as Python's b64decode(validate=True)") {
  const std::string text = "any carnal pleasure.";
  for (std::size_t n = 0; n <= text.size(); ++n) {
    const std::string enc = sgt::base64_encode(text.data(), n);
    const auto dec = sgt::base64_decode(enc, 1000);
    CHECK(std::string(dec.begin(), dec.end()) == text.substr(0, n));
  }
  auto refused = [](const std::string& s, std::size_t max = 100) {
    try {
      (void)sgt::base64_decode(s, max);
    } catch (const sgt::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(refused("abc").find("multiple of 4") != std::string::npos);
  CHECK(refused("ab c").find("character 2") != std::string::npos);
  CHECK(refused("ab=c") != "");
  CHECK(refused("a===") != "");
  CHECK(refused("YQ==YQ==") != "");
  CHECK(refused("YR==") .find("non-zero bits") != std::string::npos);
  CHECK(refused("YWJj", 2).find("more than the limit") != std::string::npos);
}

}  // namespace test_torch_pt_reader
