// safetensors: the reader's rules (docs/format.md section 5) on a corpus of malformed files, values
// read bit-exactly against PyTorch fixtures, sharded models (TensorStore), the writer (round trip
// in C++ and through Python's safetensors), and f32 -> bf16 / f16 rounding against torch's vectors.
//
// Fixtures: tools/fixtures/safetensors_fixtures.py writes tests/data/safetensors/.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sgt/io/tensor_store.hpp>
#include <sgt/sgt.hpp>

namespace fs = std::filesystem;

#include "support/scratch_dir.hpp"
#include "support/stored_tensor.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_safetensors {

namespace {

using sgt_test::to_f32;

const std::string kData = std::string(SGT_TEST_DATA_DIR) + "/safetensors";

// Each test's own folder.
struct ScratchDir : sgt_test::ScratchDir {
  ScratchDir() : sgt_test::ScratchDir("test_safetensors") {}
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// The bytes of a safetensors file: the length field (`declared`, or the header's real length),
// the header, the data.
std::string st_bytes(const std::string& header, const std::string& data = "",
                     std::optional<std::uint64_t> declared = std::nullopt) {
  return le64(declared ? *declared : header.size()) + header + data;
}

std::string zeros(std::size_t n) {
  return std::string(n, '\0');
}

// Runs `f`, which must throw sgt::Error (anything else escapes and fails the test case).
std::optional<sgt::Error> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sgt::Error& e) {
    return e;
  }
  return std::nullopt;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Bit-exact equality of two f32 arrays; reports the first difference.
void check_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                     const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (bits_of(got[i]) != bits_of(want[i])) {
      FAIL_CHECK("element " << i << ": got bits " << bits_of(got[i]) << " (" << got[i] << "), want "
                            << bits_of(want[i]) << " (" << want[i] << ")");
      return;
    }
  }
}

std::vector<std::uint64_t> shape_of(const sgt::AnyTensorView& v) {
  return std::vector<std::uint64_t>(v.shape().begin(), v.shape().begin() + v.rank());
}

bool is_aligned(const void* p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

// ---------------------------------------------------------------------------------------------
// The malformed corpus. Each case is a whole file, what it checks, a distinctive piece of the
// message, and the tensor the error must name (if any).

struct Malformed {
  std::string what;
  std::string bytes;
  std::string expect;
  std::string tensor;
};

const std::string k2p32 = "4294967296";            // 2^32
const std::string k2p40 = "1099511627776";         // 2^40
const std::string k2p61 = "2305843009213693952";   // 2^61
const std::string k2p62 = "4611686018427387904";   // 2^62
const std::string k2p64 = "18446744073709551616";  // 2^64, one past u64

// One-tensor header with the given raw JSON pieces.
std::string one(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"t":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offsets +
         "}}";
}

std::vector<Malformed> malformed_corpus() {
  const std::string ok_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::vector<Malformed> c = {
      // Length field.
      {"0-byte file", "", "too short for the 8-byte header length", ""},
      {"7-byte file", std::string(7, '\x02'), "7 bytes, too short", ""},
      {"header length 100 MiB + 1", st_bytes("{}", "", 100ull * 1024 * 1024 + 1),
       "exceeds the 100 MiB limit", ""},
      {"header length 2^64 - 1", st_bytes("{}", "", UINT64_MAX), "exceeds the 100 MiB limit", ""},
      {"header length past the end", st_bytes("{}", "", 1000), "runs past the end of the file", ""},
      {"header length exactly 100 MiB, file far shorter", st_bytes("{}", "", 100ull * 1024 * 1024),
       "runs past the end of the file", ""},
      {"header length 9, 8 header bytes present", st_bytes("{}      ", "", 9),
       "runs past the end of the file", ""},
      // JSON syntax and root.
      {"header length 0", st_bytes(""), "header is not valid JSON", ""},
      {"non-JSON header", st_bytes("hello"), "header is not valid JSON", ""},
      {"truncated JSON", st_bytes(R"({"a":)"), "header is not valid JSON", ""},
      {"unterminated 1 MB string: the message quotes only the start of it",
       st_bytes("{\"" + std::string(1 << 20, 'a')), "header is not valid JSON", ""},
      {"garbage after the JSON", st_bytes("{} x"), "header is not valid JSON", ""},
      {"NUL padding instead of spaces", st_bytes(std::string("{}\0\0", 4)),
       "header is not valid JSON: NUL byte at offset 2", ""},
      {"a second object hidden after a NUL",
       st_bytes(
           std::string("{}\0", 3) + R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
           zeros(4)),
       "NUL byte at offset 2", ""},
      {"invalid UTF-8 in a name", st_bytes("{\"\xff\":{}}"), "header is not valid JSON", ""},
      {"UTF-8 byte order mark before the JSON", st_bytes("\xEF\xBB\xBF{}"),
       "starts with a byte order mark", ""},
      {"root is an array", st_bytes("[]"), "header root is not a JSON object", ""},
      {"root is a string", st_bytes(R"("x")"), "header root is not a JSON object", ""},
      {"root is a number", st_bytes("42"), "header root is not a JSON object", ""},
      {"root is null", st_bytes("null"), "header root is not a JSON object", ""},
      {"nesting deeper than a header can", st_bytes(R"({"t":{"shape":[[[1]]]}})"),
       "nests deeper than 4 levels", ""},
      {"100000 nested arrays (no recursion may blow the stack)",
       st_bytes("{\"t\":" + std::string(100000, '[') + std::string(100000, ']') + "}"),
       "nests deeper than 4 levels", ""},
      // Names and the entry object.
      {"duplicate tensor name", st_bytes("{" + ok_a + "," + ok_a + "}", zeros(8)),
       "header names tensor 'a' twice", "a"},
      {"duplicate field inside an entry",
       st_bytes(R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})",
                zeros(8)),
       "key 'dtype' appears twice", "a"},
      {"entry is an array", st_bytes(R"({"t":[1,2]})"), "entry is [...], not an object", "t"},
      {"entry is a string", st_bytes(R"({"t":"F32"})"), "entry is \"F32\", not an object", "t"},
      {"unknown field in an entry",
       st_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", zeros(4)),
       "unknown field 'extra'", "t"},
      {"missing dtype", st_bytes(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", zeros(4)),
       "entry is missing 'dtype'", "t"},
      {"missing shape", st_bytes(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", zeros(4)),
       "entry is missing 'shape'", "t"},
      {"missing data_offsets", st_bytes(R"({"t":{"dtype":"F32","shape":[1]}})", zeros(4)),
       "entry is missing 'data_offsets'", "t"},
      // dtype.
      {"unknown dtype I64", st_bytes(one(R"("I64")", "[1]", "[0,8]"), zeros(8)),
       "unsupported dtype 'I64'", "t"},
      {"unknown dtype F64", st_bytes(one(R"("F64")", "[1]", "[0,8]"), zeros(8)),
       "unsupported dtype 'F64'", "t"},
      {"dtype in lower case", st_bytes(one(R"("f32")", "[1]", "[0,4]"), zeros(4)),
       "unsupported dtype 'f32'", "t"},
      {"dtype is a number", st_bytes(one("32", "[1]", "[0,4]"), zeros(4)),
       "dtype 32 is not a string", "t"},
      // shape.
      {"shape is a number", st_bytes(one(R"("F32")", "4", "[0,16]"), zeros(16)),
       "shape 4 is not an array", "t"},
      {"negative dimension", st_bytes(one(R"("F32")", "[-2]", "[0,8]"), zeros(8)),
       "shape dimension -2 is negative", "t"},
      {"fractional dimension", st_bytes(one(R"("F32")", "[2.5]", "[0,10]"), zeros(10)),
       "shape dimension 2.5 is not an integer", "t"},
      {"dimension written as a float", st_bytes(one(R"("F32")", "[2.0]", "[0,8]"), zeros(8)),
       "is not an integer", "t"},
      {"dimension in exponent notation", st_bytes(one(R"("F32")", "[2e0]", "[0,8]"), zeros(8)),
       "is not an integer", "t"},
      {"string dimension", st_bytes(one(R"("F32")", R"(["4"])", "[0,16]"), zeros(16)),
       "shape dimension \"4\" is not a number", "t"},
      {"dimension -0 (Python's reader sees the float -0.0)",
       st_bytes(one(R"("F32")", "[-0]", "[0,0]")), "shape dimension -0 is not a non-negative", "t"},
      {"null dimension", st_bytes(one(R"("F32")", "[null]", "[0,4]"), zeros(4)),
       "shape dimension null is not a number", "t"},
      {"array as a dimension", st_bytes(one(R"("F32")", "[[2]]", "[0,8]"), zeros(8)),
       "shape dimension [...] is not a number", "t"},
      {"dimension 2^64 (one past u64)",
       st_bytes(one(R"("F32")", "[" + k2p64 + "]", "[0,4]"), zeros(4)), "is too large", "t"},
      {"shape [2^32, 2^32]: element count overflows",
       st_bytes(one(R"("F32")", "[" + k2p32 + "," + k2p32 + "]", "[0,4]"), zeros(4)),
       "element count of shape [4294967296, 4294967296] overflows", "t"},
      {"shape [2^62, 4]: element count overflows",
       st_bytes(one(R"("F32")", "[" + k2p62 + ",4]", "[0,4]"), zeros(4)), "element count of shape",
       "t"},
      {"shape [2^62] of F32: byte count overflows",
       st_bytes(one(R"("F32")", "[" + k2p62 + "]", "[0,4]"), zeros(4)),
       "byte count of shape [4611686018427387904] of F32 overflows", "t"},
      {"shape [2^61, 4] of BF16: byte count overflows",
       st_bytes(one(R"("BF16")", "[" + k2p61 + ",4]", "[0,4]"), zeros(4)), "byte count of shape",
       "t"},
      {"shape [0, 2^40, 2^40]: empty, but rows * cols would overflow",
       st_bytes(one(R"("F32")", "[0," + k2p40 + "," + k2p40 + "]", "[0,0]")),
       "element count of shape", "t"},
      // data_offsets.
      {"data_offsets with 1 entry", st_bytes(one(R"("F32")", "[1]", "[4]"), zeros(4)),
       "data_offsets has 1 value(s), not a [begin, end] pair", "t"},
      {"data_offsets with 3 entries", st_bytes(one(R"("F32")", "[1]", "[0,4,8]"), zeros(8)),
       "data_offsets has 3 value(s), not a [begin, end] pair", "t"},
      {"data_offsets is a string", st_bytes(one(R"("F32")", "[1]", R"("0-4")"), zeros(4)),
       "not a [begin, end] pair", "t"},
      {"negative begin", st_bytes(one(R"("F32")", "[1]", "[-1,3]"), zeros(4)),
       "data_offsets begin -1 is negative", "t"},
      {"fractional end", st_bytes(one(R"("F32")", "[1]", "[0,4.5]"), zeros(4)),
       "data_offsets end 4.5 is not an integer", "t"},
      {"end < begin", st_bytes(one(R"("F32")", "[0]", "[8,4]"), zeros(8)),
       "data_offsets end 4 is before begin 8", "t"},
      {"span != byte count", st_bytes(one(R"("F32")", "[2]", "[0,4]"), zeros(4)),
       "data_offsets span 4 bytes but shape [2] of F32 needs 8", "t"},
      {"span of a BF16 tensor counted as F32", st_bytes(one(R"("BF16")", "[2]", "[0,8]"), zeros(8)),
       "of BF16 needs 4", "t"},
      {"offsets out of bounds", st_bytes(one(R"("F32")", "[2]", "[0,8]"), zeros(4)),
       "run past the end of the data area (4 bytes)", "t"},
      {"offsets near 2^64",
       st_bytes(one(R"("BF16")", "[2]", "[18446744073709551612,18446744073709551616]")),
       "is too large", "t"},
      {"huge but consistent offsets",
       st_bytes(one(R"("BF16")", "[" + k2p61 + "]", "[0," + k2p62 + "]"), zeros(4)),
       "run past the end of the data area", "t"},
      // Tiling of the data area.
      {"truncated data (file cut short)",
       st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", zeros(10)),
       "run past the end of the data area (10 bytes)", "a"},
      {"overlapping tensors",
       st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                zeros(12)),
       "overlap tensor 'a', which ends at 8", "b"},
      {"two tensors on the same bytes",
       st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})",
                zeros(8)),
       "overlap tensor 'a'", "b"},
      {"zero-size tensor inside another tensor's bytes",
       st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                zeros(8)),
       "overlap tensor 'a'", "z"},
      {"gap between tensors",
       st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                zeros(12)),
       "gap of 4 bytes", "b"},
      {"gap at the start of the data area",
       st_bytes(R"({"a":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}})", zeros(4)),
       "gap of 2 bytes", "a"},
      {"trailing bytes after the last tensor",
       st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", zeros(7)),
       "3 trailing bytes after the last tensor", ""},
      {"data but no tensors", st_bytes("{}", zeros(4)), "4 trailing bytes", ""},
      // __metadata__.
      {"__metadata__ is a string", st_bytes(R"({"__metadata__":"x"})"),
       "__metadata__ is not an object", ""},
      {"__metadata__ is an array", st_bytes(R"({"__metadata__":["a","b"]})"),
       "__metadata__ is not an object", ""},
      {"__metadata__ with a number value", st_bytes(R"({"__metadata__":{"k":1}})"),
       "__metadata__ value 1 is not a string", ""},
      {"__metadata__ with a nested object", st_bytes(R"({"__metadata__":{"k":{"x":"y"}}})"),
       "__metadata__ value {...} is not a string", ""},
      {"__metadata__ with a repeated key", st_bytes(R"({"__metadata__":{"k":"a","k":"b"}})"),
       "__metadata__ has key 'k' twice", ""},
  };
  // Truncations of a valid file: cut inside the header, cut inside the data.
  sgt::SafetensorsWriter w;
  const std::vector<float> v = {1, 2, 3, 4};
  w.add_from_f32("w", sgt::DType::F32, {4}, v.data());
  const std::vector<unsigned char> good = w.serialize();
  const std::string whole(good.begin(), good.end());
  c.push_back({"valid file cut inside the header", whole.substr(0, 20),
               "runs past the end of the file", ""});
  c.push_back({"valid file cut inside the data", whole.substr(0, whole.size() - 3),
               "run past the end of the data area", "w"});
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("malformed safetensors corpus: every file is refused with a message saying why") {
  const std::vector<Malformed> corpus = malformed_corpus();
  REQUIRE(corpus.size() >= 30);
  ScratchDir dir;
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    const Malformed& c = corpus[i];
    INFO("case " << i << ": " << c.what);
    const std::string path = dir.file("case" + std::to_string(i) + ".safetensors");
    write_file(path, c.bytes);
    const auto e = error_of([&] { sgt::SafetensorsFile f(path); });
    REQUIRE_MESSAGE(e.has_value(), "accepted a malformed file");
    INFO("message: " << std::string(e->what()));
    CHECK(contains(e->message(), c.expect));
    CHECK(e->message().size() < 500);  // untrusted input is quoted only in part
    CHECK(e->file() == path);
    if (!c.tensor.empty()) CHECK(e->tensor() == c.tensor);
    // The same file through TensorStore gives the same error.
    const auto s = error_of([&] { sgt::TensorStore store(path); });
    REQUIRE(s.has_value());
    CHECK(s->message() == e->message());
  }
}

TEST_CASE("a header of 50000 tensor entries is refused in linear time") {
  // nlohmann's callback parser rescans the parent object after each closed object: quadratic.
  // The reader of the first version used it and took 84 s on 40000 entries (0.08 s now); a
  // 100 MiB header would take years. The reader must not go back to it.
  std::string header = "{";
  for (int i = 0; i < 50000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "t%06d", i);
    header += std::string(i ? "," : "") + "\"" + name + "\":{}";
  }
  header += "}";
  ScratchDir dir;
  write_file(dir.file("many.safetensors"), st_bytes(header));
  const auto t0 = std::chrono::steady_clock::now();
  const auto e = error_of([&] { sgt::SafetensorsFile f(dir.file("many.safetensors")); });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "entry is missing 'dtype'"));
  CHECK(e->tensor() == "t000000");
  CHECK_MESSAGE(seconds < 10.0, "took " << seconds << " s");
}

TEST_CASE("files that are not there or not files") {
  ScratchDir dir;
  auto e = error_of([&] { sgt::SafetensorsFile f(dir.file("absent.safetensors")); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "cannot open"));
  CHECK(e->file() == dir.file("absent.safetensors"));
  e = error_of([&] { sgt::SafetensorsFile f(dir.path()); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "not a regular file"));
}

// ---------------------------------------------------------------------------------------------
// Valid files crafted here.

TEST_CASE("empty file with a {} header, with and without Python's space padding") {
  ScratchDir dir;
  for (const std::string& header :
       {std::string("{}"), std::string("{}      "), std::string(" { } ")}) {
    write_file(dir.file("empty.safetensors"), st_bytes(header));
    sgt::SafetensorsFile f(dir.file("empty.safetensors"));
    CHECK(f.size() == 0);
    CHECK(f.names().empty());
    CHECK(f.metadata().empty());
    CHECK_FALSE(f.contains("x"));
    const auto e = error_of([&] { (void)f.info("x"); });
    REQUIRE(e.has_value());
    CHECK(contains(e->message(), "no such tensor"));
    CHECK(e->tensor() == "x");
  }
}

TEST_CASE("zero-size tensors take no room, may share an offset, and may end the file") {
  ScratchDir dir;
  const std::string header = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("c":{"dtype":"BF16","shape":[3,0],"data_offsets":[8,8]},)"
                             R"("d":{"dtype":"F16","shape":[0,5],"data_offsets":[8,8]},)"
                             R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})";
  std::string data(8, '\0');
  const float b[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), b, 8);
  write_file(dir.file("z.safetensors"), st_bytes(header, data));
  sgt::SafetensorsFile f(dir.file("z.safetensors"));
  CHECK(f.size() == 5);
  CHECK(f.info("a").byte_size() == 0);
  CHECK(f.tensor("c").size() == 0);
  CHECK(shape_of(f.tensor("c")) == std::vector<std::uint64_t>{3, 0});
  CHECK(shape_of(f.tensor("d")) == std::vector<std::uint64_t>{0, 5});
  CHECK(f.tensor("d").dtype() == sgt::DType::F16);
  CHECK(shape_of(f.tensor("e")) == std::vector<std::uint64_t>{0});
  check_same_bits(to_f32(f.tensor("b")), {1.5f, -2.0f}, "b");
}

TEST_CASE("metadata is read back") {
  ScratchDir dir;
  write_file(dir.file("m.safetensors"),
             st_bytes(R"({"__metadata__":{"format":"pt","note":"a \"quoted\" value","":""}})"));
  sgt::SafetensorsFile f(dir.file("m.safetensors"));
  CHECK(f.size() == 0);
  const std::map<std::string, std::string> want = {
      {"format", "pt"}, {"note", "a \"quoted\" value"}, {"", ""}};
  CHECK(f.metadata() == want);
  CHECK_FALSE(f.contains("__metadata__"));
}

TEST_CASE("unaligned data (odd header length) reads back exactly, through aligned pointers") {
  // Header lengths 1..7 mod 8: the data area starts misaligned for some or all element types.
  const float f32[3] = {1.0f, -0.0f, 3.4028235e38f};
  const std::uint16_t bf16[2] = {0x3f80, 0x8001};  // 1.0, negative subnormal
  const std::uint16_t f16[2] = {0x7bff, 0x0001};   // 65504, smallest subnormal
  std::string data(16, '\0');
  std::memcpy(data.data(), f32, 12);
  std::memcpy(data.data() + 12, bf16, 4);
  data += std::string(reinterpret_cast<const char*>(f16), 4);
  const std::string base = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                           R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},)"
                           R"("c":{"dtype":"F16","shape":[2],"data_offsets":[16,20]}})";
  ScratchDir dir;
  for (std::size_t pad = 0; pad < 8; ++pad) {
    const std::string header = base + std::string(pad, ' ');
    INFO("8 + header length = " << 8 + header.size());
    write_file(dir.file("u.safetensors"), st_bytes(header, data));
    sgt::SafetensorsFile f(dir.file("u.safetensors"));
    const auto a = f.tensor("a");
    const auto b = f.tensor("b");
    const auto c = f.tensor("c");
    CHECK(is_aligned(a.data(), 4));
    CHECK(is_aligned(b.data(), 2));
    CHECK(is_aligned(c.data(), 2));
    CHECK(std::memcmp(a.data(), f32, 12) == 0);
    CHECK(std::memcmp(b.data(), bf16, 4) == 0);
    CHECK(std::memcmp(c.data(), f16, 4) == 0);
  }
}

TEST_CASE("mixed dtypes in one file, ranks 0 to 5") {
  ScratchDir dir;
  sgt::SafetensorsWriter w;
  const std::vector<float> v = {0.5f, -1.25f, 3.0f, 1e-3f, 7.0f, -8.0f};
  w.add_from_f32("scalar", sgt::DType::BF16, {}, v.data());
  w.add_from_f32("vec", sgt::DType::F16, {6}, v.data());
  w.add_from_f32("mat", sgt::DType::F32, {2, 3}, v.data());
  w.add_from_f32("rank5", sgt::DType::F32, {1, 1, 2, 1, 3}, v.data());
  w.write(dir.file("mixed.safetensors"));
  sgt::SafetensorsFile f(dir.file("mixed.safetensors"));
  CHECK(f.names() == std::vector<std::string>{"mat", "rank5", "scalar", "vec"});
  CHECK(f.tensor("scalar").rank() == 0);
  CHECK(f.tensor("scalar").size() == 1);
  CHECK(f.tensor("scalar").dtype() == sgt::DType::BF16);
  CHECK(sgt::to_float(f.tensor("scalar").as<sgt::bfloat16>()[0]) == 0.5f);
  CHECK(f.tensor("vec").dtype() == sgt::DType::F16);
  CHECK(f.tensor("mat").as<float>()(1, 2) == -8.0f);
  // Rank 5 is a valid entry, but no view can hold it.
  CHECK(f.info("rank5").shape == std::vector<std::uint64_t>{1, 1, 2, 1, 3});
  const auto e = error_of([&] { (void)f.tensor("rank5"); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "rank 5 is above the supported 4"));
  CHECK(e->tensor() == "rank5");
  // as<T>() refuses the wrong element type.
  CHECK(error_of([&] { (void)f.tensor("vec").as<float>(); }).has_value());
}

// ---------------------------------------------------------------------------------------------
// PyTorch fixtures.

TEST_CASE("fixture: F32, BF16, F16 values equal torch's .float() bit for bit") {
  sgt::SafetensorsFile f(kData + "/dtypes.safetensors");
  sgt::SafetensorsFile expected(kData + "/dtypes_expected_f32.safetensors");
  CHECK(f.metadata().at("producer") == "safetensors_fixtures.py");
  REQUIRE(f.names() == expected.names());
  REQUIRE(f.size() == 15);
  bool saw_nan = false, saw_inf = false, saw_neg_zero = false, saw_subnormal = false;
  for (const std::string& name : f.names()) {
    const sgt::AnyTensorView t = f.tensor(name);
    const sgt::AnyTensorView want = expected.tensor(name);
    const std::string prefix = name.substr(0, name.find('.'));
    const sgt::DType dtype = prefix == "f32"    ? sgt::DType::F32
                             : prefix == "bf16" ? sgt::DType::BF16
                                                : sgt::DType::F16;
    CHECK(t.dtype() == dtype);
    CHECK(want.dtype() == sgt::DType::F32);
    CHECK(shape_of(t) == shape_of(want));
    CHECK(is_aligned(t.data(), sgt::dtype_size(dtype)));
    const std::vector<float> got = to_f32(t);
    check_same_bits(got, to_f32(want), name);
    for (float x : got) {
      saw_nan |= std::isnan(x);
      saw_inf |= std::isinf(x);
      saw_neg_zero |= bits_of(x) == 0x80000000u;
      saw_subnormal |= std::fpclassify(x) == FP_SUBNORMAL;
    }
  }
  // The fixture holds what it claims to.
  CHECK(saw_nan);
  CHECK(saw_inf);
  CHECK(saw_neg_zero);
  CHECK(saw_subnormal);
  CHECK(shape_of(f.tensor("bf16.rank3")) == std::vector<std::uint64_t>{2, 3, 5});
  CHECK(f.tensor("f16.scalar").rank() == 0);
  CHECK(f.tensor("f32.empty").size() == 0);
}

TEST_CASE("fixture: a file with an odd header length (misaligned data) reads back exactly") {
  const std::string path = kData + "/unaligned.safetensors";
  const std::string bytes = read_file(path);
  REQUIRE(bytes.size() >= 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  REQUIRE((8 + n) % 2 == 1);  // misaligned for both 2- and 4-byte elements
  sgt::SafetensorsFile f(path);
  sgt::SafetensorsFile expected(kData + "/dtypes_expected_f32.safetensors");
  CHECK(f.metadata().at("note").rfind("unaligned on purpose", 0) == 0);
  REQUIRE(f.names() == expected.names());
  for (const std::string& name : f.names()) {
    const sgt::AnyTensorView t = f.tensor(name);
    CHECK(is_aligned(t.data(), sgt::dtype_size(t.dtype())));
    CHECK(shape_of(t) == shape_of(expected.tensor(name)));
    check_same_bits(to_f32(t), to_f32(expected.tensor(name)), name);
  }
}

TEST_CASE("fixture: sharded model through TensorStore (directory and index path)") {
  const std::string dir = kData + "/sharded";
  const nlohmann::json index =
      nlohmann::json::parse(read_file(dir + "/model.safetensors.index.json"));
  sgt::SafetensorsFile expected(kData + "/sharded_expected_f32.safetensors");
  for (const std::string& path : {dir, dir + "/model.safetensors.index.json"}) {
    INFO(path);
    sgt::TensorStore store(path);
    CHECK(store.path() == path);
    CHECK(store.file_count() == 2);
    CHECK(store.size() == index["weight_map"].size());
    const std::vector<std::string> names = store.names();
    CHECK(std::is_sorted(names.begin(), names.end()));
    CHECK(names == expected.names());
    std::uint64_t bytes = 0;
    for (const std::string& name : names) {
      const std::string shard = index["weight_map"][name].get<std::string>();
      CHECK(fs::path(store.file_of(name)).filename().string() == shard);
      CHECK(fs::equivalent(store.file_of(name), dir + "/" + shard));
      CHECK(store.contains(name));
      CHECK(store.info(name).byte_size() == store.tensor(name).byte_size());
      bytes += store.info(name).byte_size();
      check_same_bits(to_f32(store.tensor(name)), to_f32(expected.tensor(name)), name);
    }
    CHECK(store.total_bytes() == bytes);
    // huggingface_hub's total_size is the same sum.
    CHECK(store.total_bytes() == index["metadata"]["total_size"].get<std::uint64_t>());
    CHECK(store.info("embed_tokens.weight").dtype == sgt::DType::BF16);
    CHECK(store.info("mean_estimator.head.bias").dtype == sgt::DType::F16);
    CHECK_FALSE(store.contains("nope"));
    const auto e = error_of([&] { (void)store.tensor("nope"); });
    REQUIRE(e.has_value());
    CHECK(contains(e->message(), "no such tensor"));
    CHECK(e->tensor() == "nope");
    CHECK(e->file() == path);
  }
}

TEST_CASE("TensorStore: a single file, a directory with model.safetensors, and the preference") {
  sgt::TensorStore file(kData + "/dtypes.safetensors");
  CHECK(file.file_count() == 1);
  CHECK(file.size() == 15);
  CHECK(file.file_of("f32.vector") == kData + "/dtypes.safetensors");

  ScratchDir dir;
  fs::copy_file(kData + "/dtypes.safetensors", dir.file("model.safetensors"));
  sgt::TensorStore single(dir.path());
  CHECK(single.names() == file.names());
  CHECK(single.total_bytes() == file.total_bytes());
  CHECK(fs::path(single.file_of("bf16.matrix")).filename().string() == "model.safetensors");
  check_same_bits(to_f32(single.tensor("f16.vector")), to_f32(file.tensor("f16.vector")), "f16");

  // Both files present: model.safetensors wins, as in transformers (the index is not even read).
  write_file(dir.file("model.safetensors.index.json"), "not json");
  sgt::TensorStore both(dir.path());
  CHECK(both.size() == 15);
}

// ---------------------------------------------------------------------------------------------
// Sharded models that break the index's rules.

namespace {

// A model directory with shards written by SafetensorsWriter and an index given as JSON text.
struct ShardedDir {
  ScratchDir dir;
  void shard(const std::string& file, const std::vector<std::string>& tensors) {
    sgt::SafetensorsWriter w;
    const float v[2] = {1.0f, 2.0f};
    for (const auto& t : tensors) w.add_from_f32(t, sgt::DType::F32, {2}, v);
    w.write(dir.file(file));
  }
  void index(const std::string& json) {
    write_file(dir.file("model.safetensors.index.json"), json);
  }
  std::string path(const std::string& file) const { return dir.file(file); }
};

void check_store_error(const std::string& path, const std::string& expect, const std::string& file,
                       const std::string& tensor) {
  const auto e = error_of([&] { sgt::TensorStore s(path); });
  REQUIRE_MESSAGE(e.has_value(), "accepted");
  INFO("message: " << std::string(e->what()));
  CHECK(contains(e->message(), expect));
  CHECK(e->file() == file);
  CHECK(e->tensor() == tensor);
}

}  // namespace

TEST_CASE("TensorStore refuses broken indexes and shards, naming the file and the tensor") {
  const std::string index_name = "model.safetensors.index.json";
  SUBCASE("a path that does not exist") {
    ScratchDir d;
    check_store_error(d.file("nothing"), "no such file or directory", d.file("nothing"), "");
  }
  SUBCASE("a directory without model files") {
    ShardedDir m;
    m.shard("model-00001-of-00001.safetensors", {"a"});  // a shard, but no index
    check_store_error(m.dir.path(), "directory holds neither model.safetensors nor", m.dir.path(),
                      "");
  }
  SUBCASE("index is not JSON") {
    ShardedDir m;
    m.index("{\"weight_map\": ");
    check_store_error(m.dir.path(), "index is not valid JSON", m.path(index_name), "");
  }
  SUBCASE("index is an empty file") {
    ShardedDir m;
    m.index("");
    check_store_error(m.dir.path(), "index is not valid JSON", m.path(index_name), "");
  }
  SUBCASE("index with a NUL byte (nlohmann would stop reading there)") {
    ShardedDir m;
    m.index(std::string("{\"weight_map\": {}}\0garbage", 26));
    check_store_error(m.dir.path(), "index is not valid JSON: NUL byte at offset 18",
                      m.path(index_name), "");
  }
  SUBCASE("index root is an array") {
    ShardedDir m;
    m.index("[]");
    check_store_error(m.dir.path(), "index root is not a JSON object", m.path(index_name), "");
  }
  SUBCASE("weight_map missing") {
    ShardedDir m;
    m.index(R"({"metadata": {"total_size": 8}})");
    check_store_error(m.dir.path(), "index has no weight_map", m.path(index_name), "");
  }
  SUBCASE("weight_map is not an object") {
    ShardedDir m;
    m.index(R"({"weight_map": ["a", "s.safetensors"]})");
    check_store_error(m.dir.path(), "weight_map is [...], not an object", m.path(index_name), "");
  }
  SUBCASE("weight_map value is not a string") {
    ShardedDir m;
    m.index(R"({"weight_map": {"a": 1}})");
    check_store_error(m.dir.path(), "weight_map value 1 is not a string", m.path(index_name), "a");
  }
  SUBCASE("weight_map lists a tensor twice (under two shards)") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a"});
    m.shard("s2.safetensors", {"a"});
    m.index(R"({"weight_map": {"a": "s1.safetensors", "a": "s2.safetensors"}})");
    check_store_error(m.dir.path(), "weight_map lists the tensor twice", m.path(index_name), "a");
  }
  SUBCASE("metadata is not an object") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a"});
    m.index(R"({"metadata": 8, "weight_map": {"a": "s1.safetensors"}})");
    check_store_error(m.dir.path(), "index metadata is 8, not an object", m.path(index_name), "");
  }
  SUBCASE("path traversal: ../ in a shard name") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a"});
    m.index(R"({"weight_map": {"a": "../s1.safetensors"}})");
    check_store_error(m.dir.path(), "shard file name '../s1.safetensors' is not a plain file name",
                      m.path(index_name), "a");
  }
  SUBCASE("path traversal: an absolute shard path") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a"});
    m.index(R"({"weight_map": {"a": ")" + m.path("s1.safetensors") + R"("}})");
    check_store_error(m.dir.path(), "is not a plain file name", m.path(index_name), "a");
  }
  SUBCASE("path traversal: '..' as the shard name, and a backslash") {
    ShardedDir m;
    m.index(R"({"weight_map": {"a": "..", "b": "x\\s1.safetensors"}})");
    check_store_error(m.dir.path(), "shard file name '..' is not a plain file name",
                      m.path(index_name), "a");
  }
  SUBCASE("a shard that does not exist") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a"});
    m.index(R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
    check_store_error(m.dir.path(), "shard 's2.safetensors'", m.path("s2.safetensors"), "b");
    check_store_error(m.dir.path(), "does not exist", m.path("s2.safetensors"), "b");
  }
  SUBCASE("a tensor listed in the index but absent from its shard") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a"});
    m.shard("s2.safetensors", {"c"});
    m.index(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                               "c": "s2.safetensors"}})");
    check_store_error(m.dir.path(), "listed in the index for shard 's1.safetensors' but absent",
                      m.path("s1.safetensors"), "b");
  }
  SUBCASE("a tensor the index puts in the wrong shard") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a", "c"});
    m.shard("s2.safetensors", {"b"});
    m.index(R"({"weight_map": {"a": "s2.safetensors", "b": "s2.safetensors",
                               "c": "s1.safetensors"}})");
    check_store_error(m.dir.path(), "(it is in 's1.safetensors')", m.path("s2.safetensors"), "a");
  }
  SUBCASE("a tensor present in a shard but not in the index") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a", "extra"});
    m.index(R"({"weight_map": {"a": "s1.safetensors"}})");
    check_store_error(m.dir.path(), "in this shard but not listed in the index",
                      m.path("s1.safetensors"), "extra");
  }
  SUBCASE("the same tensor in two shards") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a", "b"});
    m.shard("s2.safetensors", {"b", "c"});
    m.index(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                               "c": "s2.safetensors"}})");
    check_store_error(m.dir.path(),
                      "the same tensor is stored in two shards, 's1.safetensors' and "
                      "'s2.safetensors'",
                      m.path("s2.safetensors"), "b");
  }
  SUBCASE("a malformed shard: its own error, naming the shard") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a"});
    write_file(m.path("s2.safetensors"), st_bytes("[]"));
    m.index(R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
    check_store_error(m.dir.path(), "header root is not a JSON object", m.path("s2.safetensors"),
                      "");
  }
  SUBCASE("a malformed model.safetensors in a directory") {
    ScratchDir d;
    write_file(d.file("model.safetensors"), "1234567");
    check_store_error(d.path(), "too short", d.file("model.safetensors"), "");
  }
  SUBCASE("an index with an empty weight_map is an empty model; unused shards are not opened") {
    ShardedDir m;
    write_file(m.path("junk.safetensors"), "junk");
    m.index(R"({"metadata": {}, "weight_map": {}})");
    sgt::TensorStore s(m.dir.path());
    CHECK(s.size() == 0);
    CHECK(s.total_bytes() == 0);
  }
  SUBCASE("the index file given directly, in the current directory's terms") {
    ShardedDir m;
    m.shard("s1.safetensors", {"a", "b"});
    m.shard("s2.safetensors", {"c"});
    m.index(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                               "c": "s2.safetensors"}})");
    sgt::TensorStore s(m.path(index_name));
    CHECK(s.names() == std::vector<std::string>{"a", "b", "c"});
    CHECK(s.file_count() == 2);
    CHECK(s.total_bytes() == 24);
    CHECK(s.file_of("c") == m.path("s2.safetensors"));
  }
}

// ---------------------------------------------------------------------------------------------
// The writer.

namespace {

// Inputs for the writer tests: ordinary values plus every rounding hazard (ties, subnormals,
// overflow to inf, -0, inf, NaN).
std::vector<float> writer_inputs(std::size_t n) {
  std::vector<float> v(n);
  std::uint32_t state = 12345;
  for (std::size_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    v[i] = (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * 200.0f;
  }
  const float special[] = {0.0f,
                           -0.0f,
                           INFINITY,
                           -INFINITY,
                           NAN,
                           1.0f + std::ldexp(1.0f, -8),
                           1.0f + std::ldexp(1.0f, -11),
                           65519.0f,
                           65520.0f,
                           3.4e38f,
                           std::ldexp(1.0f, -25),
                           std::ldexp(3.0f, -25),
                           1e-40f,
                           -1e-45f};
  for (std::size_t i = 0; i < sizeof special / sizeof special[0] && i < n; ++i) v[i] = special[i];
  return v;
}

}  // namespace

TEST_CASE("writer: C++ round trip for F32, BF16 and F16, with metadata") {
  const std::vector<float> x = writer_inputs(3 * 17);
  sgt::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("producer", "test_safetensors");
  w.add_from_f32("f32", sgt::DType::F32, {3, 17}, x.data());
  w.add_from_f32("bf16", sgt::DType::BF16, {3, 17}, x.data());
  w.add_from_f32("f16", sgt::DType::F16, {51}, x.data());
  std::vector<sgt::bfloat16> raw(5);
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = sgt::to_bfloat16(x[i + 20]);
  w.add("raw", sgt::DType::BF16, {5}, raw.data());
  std::vector<float> viewed(x.begin(), x.begin() + 6);
  w.add("view", sgt::TensorView<float>(viewed.data(), {2, 3}));
  w.add("const_view", sgt::TensorView<const float>(viewed.data(), {6}));
  w.add_from_f32("empty", sgt::DType::F16, {0, 4}, nullptr);
  CHECK(w.size() == 7);

  ScratchDir dir;
  w.write(dir.file("rt.safetensors"));
  // No temporary file left behind.
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
  const std::vector<unsigned char> bytes = w.serialize();
  CHECK(read_file(dir.file("rt.safetensors")) == std::string(bytes.begin(), bytes.end()));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  CHECK((8 + n) % 8 == 0);  // padded like Python's writer: data aligned in the file

  sgt::SafetensorsFile f(dir.file("rt.safetensors"));
  CHECK(f.metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}, {"producer", "test_safetensors"}});
  CHECK(f.names() ==
        std::vector<std::string>{"bf16", "const_view", "empty", "f16", "f32", "raw", "view"});
  CHECK(shape_of(f.tensor("f32")) == std::vector<std::uint64_t>{3, 17});
  CHECK(shape_of(f.tensor("view")) == std::vector<std::uint64_t>{2, 3});
  CHECK(shape_of(f.tensor("empty")) == std::vector<std::uint64_t>{0, 4});
  CHECK(f.tensor("empty").dtype() == sgt::DType::F16);

  std::vector<float> want_f32 = x, want_bf16(x.size()), want_f16(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    want_bf16[i] = sgt::to_float(sgt::to_bfloat16(x[i]));
    want_f16[i] = sgt::to_float(sgt::to_float16(x[i]));
  }
  CHECK(f.tensor("f32").dtype() == sgt::DType::F32);
  CHECK(f.tensor("bf16").dtype() == sgt::DType::BF16);
  CHECK(f.tensor("f16").dtype() == sgt::DType::F16);
  check_same_bits(to_f32(f.tensor("f32")), want_f32, "f32");
  check_same_bits(to_f32(f.tensor("bf16")), want_bf16, "bf16");
  check_same_bits(to_f32(f.tensor("f16")), want_f16, "f16");
  check_same_bits(to_f32(f.tensor("raw")),
                  std::vector<float>(want_bf16.begin() + 20, want_bf16.begin() + 25), "raw");
  check_same_bits(to_f32(f.tensor("view")), viewed, "view");
  check_same_bits(to_f32(f.tensor("const_view")), viewed, "const_view");
  // The rounding really happened (the inputs are not all representable).
  CHECK(std::memcmp(want_bf16.data(), x.data(), x.size() * 4) != 0);
}

TEST_CASE("writer: refuses what the reader would refuse, and leaves no partial file") {
  sgt::SafetensorsWriter w;
  const float v[2] = {1, 2};
  w.add_from_f32("a", sgt::DType::F32, {2}, v);
  auto e = error_of([&] { w.add_from_f32("a", sgt::DType::F16, {2}, v); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "added twice"));
  CHECK(e->tensor() == "a");
  e = error_of([&] { w.add("", sgt::DType::F32, {2}, v); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "invalid tensor name"));
  e = error_of([&] { w.add("__metadata__", sgt::DType::F32, {2}, v); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "invalid tensor name"));
  e = error_of([&] { w.add("big", sgt::DType::F32, {1ull << 32, 1ull << 32}, v); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "overflows"));
  e = error_of([&] { w.add("big", sgt::DType::F32, {0, 1ull << 40, 1ull << 40}, v); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "overflows"));
  e = error_of([&] { w.add("big", sgt::DType::BF16, {1ull << 63}, v); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "overflows"));
  e = error_of([&] { w.add("null", sgt::DType::F32, {2}, nullptr); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "null data"));
  e = error_of([&] { w.add_from_f32("null", sgt::DType::BF16, {2}, nullptr); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "null data"));
  CHECK(w.size() == 1);

  ScratchDir dir;
  // Not UTF-8: JSON cannot carry the name.
  sgt::SafetensorsWriter bad;
  bad.add_from_f32("\xff\xfe", sgt::DType::F32, {2}, v);
  e = error_of([&] { bad.write(dir.file("bad.safetensors")); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "cannot write the header"));
  CHECK(e->file() == dir.file("bad.safetensors"));
  // A target that must not be replaced (a directory): refused, nothing left behind.
  fs::create_directories(dir.file("occupied"));
  e = error_of([&] { w.write(dir.file("occupied")); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "refusing to replace a directory"));
  CHECK(e->file() == dir.file("occupied"));
  // A directory that does not exist.
  e = error_of([&] { w.write(dir.file("no/such/dir.safetensors")); });
  REQUIRE(e.has_value());
  CHECK(contains(e->message(), "cannot create"));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    CHECK_MESSAGE(entry.path().filename().string() == "occupied",
                  "left behind: " << entry.path().string());
}

// Runs a shell command; returns its exit status and what it wrote on stdout.
std::pair<int, std::string> run_command(const std::string& command) {
  std::FILE* p = ::popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_CASE("writer: Python's safetensors reads our file and torch agrees with every value") {
  // find_spec, not import: importing torch takes seconds, and the check below imports it anyway.
  if (std::system("python3 -c \"import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) "
                  "for m in ('safetensors', 'torch', 'numpy')) else 1)\" > /dev/null 2>&1") != 0) {
    MESSAGE("skipped: python3 with safetensors, torch and numpy is not available");
    return;
  }
  // The files go next to the test program (the build dir); a temp dir if that is unknown.
  std::error_code ec;
  fs::path out = fs::read_symlink("/proc/self/exe", ec).parent_path();
  if (ec || out.empty()) out = fs::temp_directory_path();
  const std::string file = (out / "writer_roundtrip.safetensors").string();
  const std::string corrupt_file = (out / "writer_roundtrip_corrupt.safetensors").string();
  const std::string json_path = (out / "writer_roundtrip.json").string();

  const std::vector<float> x = writer_inputs(2 * 3 * 11);
  sgt::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("origin", "sgt-cpp test_safetensors");
  nlohmann::json expected = {
      {"metadata", {{"format", "pt"}, {"origin", "sgt-cpp test_safetensors"}}},
      {"tensors", nlohmann::json::array()}};
  auto add = [&](const std::string& name, sgt::DType dtype, std::vector<std::uint64_t> shape,
                 std::size_t first) {
    std::size_t count = 1;
    for (auto d : shape) count *= d;
    w.add_from_f32(name, dtype, shape, x.data() + first);
    std::vector<std::uint32_t> bits(count);
    for (std::size_t i = 0; i < count; ++i) bits[i] = bits_of(x[first + i]);
    expected["tensors"].push_back({{"name", name},
                                   {"dtype", sgt::dtype_name(dtype)},
                                   {"shape", shape},
                                   {"input_bits", bits}});
  };
  add("layer.f32", sgt::DType::F32, {2, 3, 11}, 0);
  add("layer.bf16", sgt::DType::BF16, {66}, 0);
  add("layer.f16", sgt::DType::F16, {6, 11}, 0);
  add("layer.bf16_scalar", sgt::DType::BF16, {}, 7);
  add("layer.f16_empty", sgt::DType::F16, {0, 3}, 0);
  w.write(file);
  {
    std::ofstream j(json_path);
    j << expected.dump();
  }
  // The check must be able to fail: a copy with one flipped bit in the last stored value.
  std::string corrupt = read_file(file);
  corrupt[corrupt.size() - 1] ^= 0x01;
  write_file(corrupt_file, corrupt);

  const std::string script =
      std::string(SGT_TEST_DATA_DIR) + "/../../tools/fixtures/check_writer_roundtrip.py";
  const std::string command = "python3 '" + script + "' '" + file + "' '" + json_path + "' '" +
                              corrupt_file + "' '" + json_path + "'";
  INFO(command);
  const auto result = run_command(command);  // not a structured binding: INFO captures it
  const auto& status = result.first;
  const auto& output = result.second;
  INFO("output: " << output);
  CHECK(contains(output, "ok " + file + "\n"));
  CHECK(contains(output, "FAIL " + corrupt_file + ": layer.bf16_scalar: 1 values differ"));
  CHECK(status == 1);  // because of the corrupt copy, and only of it (checked above)
}

// ---------------------------------------------------------------------------------------------
// Rounding against torch.

TEST_CASE("to_bfloat16 / to_float16 equal torch's .to(bfloat16) / .to(float16) bit for bit") {
  sgt::SafetensorsFile f(kData + "/rounding_vectors.safetensors");
  const auto input = f.tensor("input").as<float>();
  const auto bf16 = f.tensor("bf16").as<sgt::bfloat16>();
  const auto f16 = f.tensor("f16").as<sgt::float16>();
  REQUIRE(input.size() > 10000);
  REQUIRE(bf16.size() == input.size());
  REQUIRE(f16.size() == input.size());
  std::size_t nan = 0, inf16 = 0, sub16 = 0, ties_bf16 = 0, bad_bf16 = 0, bad_f16 = 0;
  for (std::size_t i = 0; i < input.size(); ++i) {
    const float x = input[i];
    const sgt::bfloat16 ours_b = sgt::to_bfloat16(x);
    const sgt::float16 ours_h = sgt::to_float16(x);
    if (std::isnan(x)) {
      // torch's NaN bits depend on its code path (0xffff from the AVX-512 bf16 kernel, 0x7fc0
      // from the scalar one; f16 keeps only the sign). NaN-ness is the contract; for f16 the
      // sign too.
      ++nan;
      CHECK(std::isnan(sgt::to_float(ours_b)));
      CHECK(std::isnan(sgt::to_float(bf16[i])));
      CHECK(std::isnan(sgt::to_float(ours_h)));
      CHECK(std::isnan(sgt::to_float(f16[i])));
      CHECK((ours_h.bits & 0x8000) == (f16[i].bits & 0x8000));
      continue;
    }
    ties_bf16 += (bits_of(x) & 0xffff) == 0x8000;
    inf16 += std::isinf(sgt::to_float(f16[i])) && !std::isinf(x);
    sub16 += (f16[i].bits & 0x7c00) == 0 && (f16[i].bits & 0x3ff) != 0;
    if (ours_b.bits != bf16[i].bits && bad_bf16++ < 5)
      FAIL_CHECK("bf16 of input bits " << bits_of(x) << ": ours " << ours_b.bits << ", torch "
                                       << bf16[i].bits);
    if (ours_h.bits != f16[i].bits && bad_f16++ < 5)
      FAIL_CHECK("f16 of input bits " << bits_of(x) << ": ours " << ours_h.bits << ", torch "
                                      << f16[i].bits);
  }
  CHECK(bad_bf16 == 0);
  CHECK(bad_f16 == 0);
  // The vectors hold the hazards they claim to.
  CHECK(nan >= 8);
  CHECK(ties_bf16 >= 900);
  CHECK(inf16 >= 100);
  CHECK(sub16 >= 500);
}

}  // namespace test_safetensors
