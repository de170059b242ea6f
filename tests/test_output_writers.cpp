// Output writers of `sgt transform` (docs/output_formats.md): torch.save's format (.pt), the vLLM
// completions request body, base64, CRC-32, padding-row removal and the no-partial-file contract.
//
// Fixtures: `tools/check_outputs.py fixtures` writes tests/data/outputs/ with torch itself: the
// bytes torch.save writes for tensors (rounded to bf16 / f16 by torch) whose f32 values are in
// values.safetensors, and Python's base64 of in-memory torch.save payloads. The tests rebuild each
// file from the f32 values and compare bytes: rounding, pickle, ZIP layout, CRCs and alignment
// all have to match torch's.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <unordered_set>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sgt/io/transform_output.hpp>
#include <sgt/sgt.hpp>

#include "support/file_bytes.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_output_writers {

namespace fs = std::filesystem;

namespace {

const std::string kData = std::string(SGT_TEST_DATA_DIR) + "/outputs";

using sgt_test::read_bytes;

std::string read_text(const std::string& path) {
  const auto b = read_bytes(path);
  return std::string(b.begin(), b.end());
}

const char* dtype_suffix(sgt::DType d) {
  return d == sgt::DType::F32 ? "f32" : d == sgt::DType::BF16 ? "bf16" : "f16";
}

// The f32 values of a fixture tensor, with its shape.
struct Values {
  std::vector<std::uint64_t> shape;
  std::vector<float> data;
};
Values fixture_values(const std::string& file, const std::string& name) {
  sgt::SafetensorsFile f(kData + "/" + file);
  const auto t = f.tensor(name).as<float>();
  Values v;
  v.shape.assign(t.shape().begin(), t.shape().begin() + t.rank());
  v.data.assign(t.data(), t.data() + t.size());
  return v;
}

// Byte equality, reporting the first difference. torch's serialization id hashes record names with
// std::hash in std::unordered_set order (libstdc++ on torch's Linux builds); with another
// standard library that record differs, so the comparison is only exact with libstdc++.
void check_same_bytes(const std::vector<unsigned char>& ours,
                      const std::vector<unsigned char>& torch, const std::string& what) {
#if defined(__GLIBCXX__)
  std::size_t first = 0;
  while (first < ours.size() && first < torch.size() && ours[first] == torch[first]) ++first;
  CHECK_MESSAGE(ours == torch, what << ": " << ours.size() << " bytes vs torch's " << torch.size()
                                    << ", first difference at byte " << first);
#else
  CHECK_MESSAGE(ours.size() == torch.size(), what);
#endif
}

const sgt::DType kDtypes[] = {sgt::DType::F32, sgt::DType::BF16, sgt::DType::F16};

// A request with the model name and max_tokens, the rest defaulted (an aggregate initializer would
// leave the optional fields to -Wmissing-field-initializers).
sgt::VllmCompletionsRequest vllm_request(std::string model, std::uint64_t max_tokens) {
  sgt::VllmCompletionsRequest r;
  r.model = std::move(model);
  r.max_tokens = max_tokens;
  return r;
}

}  // namespace

TEST_CASE("torch.save bytes of single tensors, in every dtype, equal torch's") {
  const char* cases[] = {"normal", "ties", "special", "wide", "row", "nan"};
  int compared = 0;
  for (const char* c : cases) {
    const Values v = fixture_values("values.safetensors", c);
    for (const sgt::DType d : kDtypes) {
      // torch's bf16 NaN bits depend on its CPU kernel (docs/output_formats.md): no bf16 fixture.
      if (std::string(c) == "nan" && d == sgt::DType::BF16) continue;
      const std::string name = std::string(c) + "_" + dtype_suffix(d);
      CAPTURE(name);
      const auto ours = sgt::torch_save_bytes(sgt::encode_tensor(d, v.shape, v.data.data()),
                                              sgt::torch_archive_name(name + ".pt"));
      check_same_bytes(ours, read_bytes(kData + "/" + name + ".pt"), name);
      ++compared;
    }
  }
  CHECK(compared == 17);
}

TEST_CASE("torch.save bytes of lists of tensors equal torch's") {
  const Values a = fixture_values("list_values.safetensors", "list_0");
  const Values b = fixture_values("list_values.safetensors", "list_1");
  for (const sgt::DType d : kDtypes) {
    const std::string name = std::string("list_") + dtype_suffix(d);
    std::vector<sgt::EncodedTensor> list{sgt::encode_tensor(d, a.shape, a.data.data()),
                                         sgt::encode_tensor(d, b.shape, b.data.data()),
                                         sgt::encode_tensor(d, {0, 5}, nullptr)};
    check_same_bytes(sgt::torch_save_bytes(list, name), read_bytes(kData + "/" + name + ".pt"),
                     name);
  }
  // 40 tensors: the pickle's memo passes 256 entries (LONG_BINPUT / LONG_BINGET).
  std::vector<sgt::EncodedTensor> list;
  for (int k = 0; k < 40; ++k) {
    const float values[2] = {float(k), float(-k) / 8};  // Python: -k / 8, +0.0 for k = 0
    list.push_back(sgt::encode_tensor(sgt::DType::BF16, {1, 2}, values));
  }
  check_same_bytes(sgt::torch_save_bytes(list, "list40_bf16"),
                   read_bytes(kData + "/list40_bf16.pt"), "list40_bf16");
}

TEST_CASE("in-memory payloads and their base64 equal torch.save(io.BytesIO()) and Python's") {
  const Values v = fixture_values("values.safetensors", "normal");
  for (const sgt::DType d : kDtypes) {
    const std::string name = std::string("payload_") + dtype_suffix(d);
    const auto ours = sgt::torch_save_bytes(sgt::encode_tensor(d, v.shape, v.data.data()));
    check_same_bytes(ours, read_bytes(kData + "/" + name + ".pt"), name);
#if defined(__GLIBCXX__)
    CHECK(sgt::base64_encode(ours.data(), ours.size()) == read_text(kData + "/" + name + ".b64"));
#endif
  }
}

TEST_CASE("every record's data starts at a multiple of 64, and the archive holds torch's records") {
  const Values v = fixture_values("values.safetensors", "row");
  const auto bytes =
      sgt::torch_save_bytes(sgt::encode_tensor(sgt::DType::BF16, v.shape, v.data.data()), "x");
  // Walk the local headers: signature, name, "FB" extra, data aligned to 64.
  std::vector<std::string> names;
  std::size_t pos = 0;
  auto u16 = [&](std::size_t at) {
    return std::size_t(bytes[at]) | std::size_t(bytes[at + 1]) << 8;
  };
  auto u32 = [&](std::size_t at) { return u16(at) | u16(at + 2) << 16; };
  while (pos + 30 <= bytes.size() && u32(pos) == 0x04034b50u) {
    const std::size_t name_len = u16(pos + 26), extra_len = u16(pos + 28);
    names.emplace_back(bytes.begin() + pos + 30, bytes.begin() + pos + 30 + name_len);
    const std::size_t data = pos + 30 + name_len + extra_len;
    CHECK(data % 64 == 0);
    CHECK(bytes[pos + 30 + name_len] == 'F');
    CHECK(bytes[pos + 30 + name_len + 1] == 'B');
    // The size is in the central directory; find the data descriptor after the data instead.
    const bool described = (u16(pos + 6) & 0x8) != 0;
    std::size_t next = data;
    if (described) {
      while (u32(next) != 0x08074b50u) ++next;
      CHECK(u32(next + 4) == sgt::crc32(bytes.data() + data, next - data));
      next += 16;
    }
    pos = next;
  }
  CHECK(names == std::vector<std::string>{"x/data.pkl", "x/.format_version", "x/.storage_alignment",
                                          "x/byteorder", "x/data/0", "x/version",
                                          "x/.data/serialization_id"});
}

TEST_CASE("torch_archive_name is torch's base name without the last extension") {
  CHECK(sgt::torch_archive_name("out/prompt.pt") == "prompt");
  CHECK(sgt::torch_archive_name("prompt") == "prompt");
  CHECK(sgt::torch_archive_name("a.b/c.tar.pt") == "c.tar");
  CHECK(sgt::torch_archive_name("dir/.pt") == "archive");
}

TEST_CASE("CRC-32 and base64 on their published check values") {
  CHECK(sgt::crc32("123456789", 9) == 0xCBF43926u);  // the CRC-32/ISO-HDLC check value
  CHECK(sgt::crc32("56789", 5, sgt::crc32("1234", 4)) == 0xCBF43926u);
  CHECK(sgt::crc32("", 0) == 0u);
  // RFC 4648 section 10.
  const char* in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) CHECK(sgt::base64_encode(in[i], std::strlen(in[i])) == out[i]);
}

TEST_CASE("real_token_rows drops padding rows, wherever they are") {
  // B = 2, S = 3, H = 2; row 0 left-padded, row 1 padded in the middle.
  const std::vector<float> batch{0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
  const auto rows = sgt::real_token_rows(batch, 2, 3, 2, {0, 1, 1, 1, 0, 1});
  REQUIRE(rows.size() == 2);
  CHECK(rows[0] == std::vector<float>{2, 3, 4, 5});
  CHECK(rows[1] == std::vector<float>{10, 11, 14, 15});
  CHECK(sgt::real_token_rows(batch, 2, 3, 2, {})[1].size() == 6);
  CHECK_THROWS_AS(sgt::real_token_rows(batch, 2, 3, 2, {1, 1}), sgt::Error);
  CHECK_THROWS_AS(sgt::real_token_rows(batch, 3, 3, 2, {}), sgt::Error);
}

TEST_CASE("the vLLM completions body: one base64 torch payload per sequence") {
  const Values v = fixture_values("values.safetensors", "normal");
  const auto t = sgt::encode_tensor(sgt::DType::BF16, v.shape, v.data.data());
  const auto payload = sgt::torch_save_bytes(t);
  const std::string b64 = sgt::base64_encode(payload.data(), payload.size());

  const std::string one = sgt::vllm_completions_body(vllm_request("my \"model\"\n", 7), {t});
  const auto j = nlohmann::json::parse(one);
  CHECK(j.size() == 3);
  CHECK(j.at("model") == "my \"model\"\n");
  CHECK(j.at("max_tokens") == 7);
  CHECK(j.at("prompt_embeds") == b64);
  CHECK(one.find('\n') == one.size() - 1);  // one line: the base64 has no line breaks

  const auto two = nlohmann::json::parse(sgt::vllm_completions_body(vllm_request("m", 16), {t, t}));
  REQUIRE(two.at("prompt_embeds").is_array());
  CHECK(two.at("prompt_embeds").size() == 2);
  CHECK(two.at("prompt_embeds")[1] == b64);

  CHECK(nlohmann::json::parse(sgt::vllm_completions_body(vllm_request("caf\xc3\xa9", 1), {t})).at("model") ==
        "caf\xc3\xa9");
  CHECK_THROWS_AS(sgt::vllm_completions_body(vllm_request("bad \xff", 1), {t}), sgt::Error);
  CHECK_THROWS_AS(sgt::vllm_completions_body(vllm_request("\xed\xa0\x80", 1), {t}), sgt::Error);  // surrogate
  CHECK_THROWS_AS(sgt::vllm_completions_body(vllm_request("m", 0), {t}), sgt::Error);
  CHECK_THROWS_AS(sgt::vllm_completions_body(vllm_request("m", 1), {}), sgt::Error);
  const auto rank3 = sgt::encode_tensor(sgt::DType::BF16, {1, 3, 5}, v.data.data());
  CHECK_THROWS_AS(sgt::vllm_completions_body(vllm_request("m", 1), {rank3}), sgt::Error);
  const auto no_tokens = sgt::encode_tensor(sgt::DType::BF16, {0, 5}, nullptr);  // all padding
  CHECK_THROWS_AS(sgt::vllm_completions_body(vllm_request("m", 1), {t, no_tokens}), sgt::Error);
}

TEST_CASE("writers leave no partial file: a missing folder, a bad tensor") {
  const fs::path dir =
      fs::temp_directory_path() / ("sgt_output_writers_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const Values v = fixture_values("values.safetensors", "normal");
  const auto t = sgt::encode_tensor(sgt::DType::F16, v.shape, v.data.data());

  const std::string missing = (dir / "no_such_folder" / "out.pt").string();
  try {
    sgt::write_torch_file(missing, t);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.file() == missing);
  }
  CHECK_THROWS_AS(
      sgt::write_vllm_completions_body((dir / "nope" / "b.json").string(), vllm_request("m", 1), {t}),
      sgt::Error);

  sgt::EncodedTensor broken = t;
  broken.bytes.pop_back();  // fewer bytes than the shape says
  const std::string out = (dir / "broken.pt").string();
  CHECK_THROWS_AS(sgt::write_torch_file(out, broken), sgt::Error);
  CHECK_THROWS_AS(
      sgt::write_vllm_completions_body((dir / "broken.json").string(), vllm_request("m", 1),
                                       {broken}),
      sgt::Error);
  CHECK(fs::is_empty(dir));  // neither the target nor a temporary file

  // A successful write replaces the target whole.
  sgt::write_torch_file(out, t);
  CHECK(read_bytes(out) == sgt::torch_save_bytes(t, "broken"));
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);
  fs::remove_all(dir);
}

// A fresh folder under the system's temporary folder, removed with everything in it.
struct TempFolder {
  fs::path path;
  explicit TempFolder(const std::string& name)
      : path(fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::size_t count_entries(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += (void(e), 1);
  return n;
}

// The message of the sgt::Error that `write` throws, checked to name `file`; "" if none.
template <class Write>
std::string error_of(const std::string& file, Write&& write) {
  try {
    write();
  } catch (const sgt::Error& e) {
    CHECK(e.file() == file);
    return e.what();
  }
  return "";
}

TEST_CASE("an output that is not a regular file is refused, never replaced") {
  const TempFolder dir("sgt_output_targets");
  const Values v = fixture_values("values.safetensors", "normal");
  const auto t = sgt::encode_tensor(sgt::DType::F16, v.shape, v.data.data());
  const std::string fifo = dir / "fifo", folder = dir / "folder";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  fs::create_directories(folder);
  // A file outside the output folder, reached through a link (as a planted link would).
  const TempFolder outside("sgt_output_outside");
  const std::string secret = outside / "secret";
  sgt::write_file_atomically(secret, "secret");
  const std::string link = dir / "link.pt", dangling = dir / "dangling.pt";
  fs::create_symlink(secret, link);
  fs::create_symlink(outside / "nothing", dangling);

  for (const std::string& target : {fifo, folder, link, dangling}) {
    CAPTURE(target);
    CHECK(error_of(target, [&] { sgt::write_file_atomically(target, "bytes"); }).find("refusing") !=
          std::string::npos);
    CHECK(error_of(target, [&] { sgt::write_torch_file(target, t); }) != "");
    CHECK(error_of(target, [&] { sgt::check_output_folder(target); }) != "");
  }
  CHECK(error_of(fifo, [&] { sgt::write_file_atomically(fifo, "x"); }).find("a FIFO") !=
        std::string::npos);
  CHECK(error_of(link, [&] {
          sgt::write_file_atomically(link, "x");
        }).find("a symbolic link to a regular file") != std::string::npos);
  // Each is still what it was, and nothing else was created.
  CHECK(fs::is_fifo(fs::symlink_status(fifo)));
  CHECK(fs::is_directory(fs::symlink_status(folder)));
  CHECK(fs::is_empty(folder));
  CHECK(fs::is_symlink(fs::symlink_status(link)));
  CHECK(fs::is_symlink(fs::symlink_status(dangling)));
  CHECK(read_text(secret) == "secret");
  CHECK(count_entries(dir.path) == 4);
  CHECK(count_entries(outside.path) == 1);
}

TEST_CASE("the stream option writes into a FIFO or through a link, in place") {
  const TempFolder dir("sgt_output_stream");
  const std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  // A reader that does not block: it is open before the write, and the bytes fit the pipe's buffer.
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(reader >= 0);
  std::string payload(3000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = char(i * 7);
  sgt::FileWriteOptions stream;
  stream.stream = true;
  CHECK_FALSE(sgt::check_output_target(dir / "absent", stream));
  CHECK(sgt::check_output_target(fifo, stream));
  sgt::write_file_atomically(fifo, payload, stream);
  std::string got(payload.size() + 1, '\0');
  const ssize_t n = ::read(reader, &got[0], got.size());
  ::close(reader);
  REQUIRE(n == ssize_t(payload.size()));
  got.resize(std::size_t(n));
  CHECK(got == payload);
  CHECK(fs::is_fifo(fs::symlink_status(fifo)));
  // Through the transform writer too (the option rides on TransformOutputOptions).
  const std::string file = dir / "file", link = dir / "link";
  sgt::write_file_atomically(file, "old contents, longer than the new");
  fs::create_symlink(file, link);
  const float x[4] = {1, 2, 3, 4};
  sgt::TransformOutputOptions out;
  out.file.stream = true;
  sgt::TransformOutputArrays a;
  a.batch = 1, a.seq_len = 2, a.hidden = 2, a.transformed = x;
  sgt::check_output_folder(link, out.file);
  sgt::write_transform_output(link, out, a);
  CHECK(fs::is_symlink(fs::symlink_status(link)));
  CHECK(sgt::SafetensorsFile(file).tensor("transformed").as<float>().data()[3] == 4.0f);
  // A directory and a link to nothing stay refused; a regular file is still replaced atomically.
  CHECK(error_of(dir.path.string(),
                 [&] { sgt::write_file_atomically(dir.path.string(), "x", stream); }) != "");
  fs::create_symlink(dir / "nothing", dir / "dangling");
  CHECK(error_of(dir / "dangling", [&] {
          sgt::write_file_atomically(dir / "dangling", "x", stream);
        }).find("points to no file") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "nothing"));
  CHECK_FALSE(sgt::check_output_target(file, stream));
}

TEST_CASE("a link planted at a temporary name is not followed; long names fit NAME_MAX") {
  const TempFolder dir("sgt_output_names");
  const TempFolder outside("sgt_output_victim");
  const std::string victim = outside / "victim";
  sgt::write_file_atomically(victim, "victim");
  // Links at every name a writer using the target's name, the pid and a counter would pick.
  const std::string out = dir / "out.bin";
  for (int i = 0; i < 200; ++i)
    fs::create_symlink(victim,
                       out + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(i));
  for (int i = 0; i < 3; ++i) sgt::write_file_atomically(out, "new");
  CHECK(read_text(victim) == "victim");
  CHECK(fs::is_regular_file(fs::symlink_status(out)));
  CHECK(read_text(out) == "new");
  CHECK(count_entries(dir.path) == 201);

  // Names of 250 and 255 bytes (NAME_MAX), and a long UTF-8 one: a temporary name built by
  // appending to them would be too long.
  std::string utf8;
  while (utf8.size() + 2 <= 254) utf8 += "\xc3\xa9";
  for (const std::string& name : {std::string(250, 'a'), std::string(255, 'b'), "c" + utf8}) {
    CAPTURE(name.size());
    const TempFolder long_names("sgt_output_long");
    sgt::write_file_atomically(long_names / name, "long");
    CHECK(read_text(long_names / name) == "long");
    CHECK(count_entries(long_names.path) == 1);
  }
  // The temporary name: at most 64 bytes of the target's, cut between characters, and 16 hex
  // digits that differ from one call to the next.
  const std::string a = sgt::detail::temp_name("c" + utf8, sgt::detail::temp_name_bits());
  const std::string b = sgt::detail::temp_name("c" + utf8, sgt::detail::temp_name_bits());
  CHECK(a.size() <= 64 + 5 + 16);
  CHECK(a.substr(0, 63) == ("c" + utf8).substr(0, 63));
  CHECK(a.substr(63, 5) == ".tmp-");
  CHECK(a != b);
}

TEST_CASE("an output file gets mode 0666 less the umask, as fopen gives it") {
  const TempFolder dir("sgt_output_mode");
  const mode_t saved = ::umask(022);
  sgt::write_file_atomically(dir / "a", "a");
  ::umask(077);
  sgt::FileWriteOptions no_sync;
  no_sync.sync = false;
  sgt::write_file_atomically(dir / "b", "b", no_sync);
  ::umask(saved);
  struct stat sa {
  }, sb{};
  REQUIRE(::stat((dir / "a").c_str(), &sa) == 0);
  REQUIRE(::stat((dir / "b").c_str(), &sb) == 0);
  CHECK((sa.st_mode & 0777) == 0644);
  CHECK((sb.st_mode & 0777) == 0600);
  CHECK(read_text(dir / "b") == "b");
}

TEST_CASE("encode_tensor rounds with core/dtype.hpp and refuses impossible shapes") {
  const float x[3] = {1.0f + 1.0f / 256, -0.0f, 65520.0f};
  const auto b = sgt::encode_tensor(sgt::DType::BF16, {3}, x);
  REQUIRE(b.bytes.size() == 6);
  for (int i = 0; i < 3; ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, b.bytes.data() + 2 * i, 2);
    CHECK(bits == sgt::to_bfloat16(x[i]).bits);
  }
  CHECK_THROWS_AS(sgt::encode_tensor(sgt::DType::F32, {1ull << 62, 8}, x), sgt::Error);
  CHECK_THROWS_AS(sgt::encode_tensor(sgt::DType::F32, {2}, nullptr), sgt::Error);
  CHECK(sgt::encode_tensor(sgt::DType::F32, {0, 4}, nullptr).bytes.empty());
}

TEST_CASE("the archive writer refuses misuse") {
  sgt::TorchArchiveWriter w("a");
  w.add_record("x", "1");
  CHECK_THROWS_AS(w.add_record("x", "2"), sgt::Error);
  CHECK_THROWS_AS(w.add_record("", "2"), sgt::Error);
  CHECK_THROWS_AS(w.add_record("y", nullptr, 3), sgt::Error);
  w.finish();
  CHECK_THROWS_AS(w.add_record("z", "3"), sgt::Error);
  CHECK_THROWS_AS(w.finish(), sgt::Error);
  CHECK_THROWS_AS(sgt::TorchArchiveWriter(""), sgt::Error);
}

}  // namespace test_output_writers
