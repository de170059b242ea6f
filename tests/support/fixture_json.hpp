// A JSON fixture of tests/data, read through the library's own strict reader (no repeated keys,
// size limit): what the reference tools wrote, as the tests compare against it.
#pragma once

#include <string>

#include <nlohmann/json.hpp>
#include <sgt/io/json.hpp>

namespace sgt_test {

// path relative to tests/data (SGT_TEST_DATA_DIR).
inline nlohmann::json read_fixture_json(const std::string& path) {
  sgt::JsonReadOptions options;
  options.what = "fixture";
  const std::string full = std::string(SGT_TEST_DATA_DIR) + "/" + path;
  try {
    return sgt::parse_json_checked(sgt::read_text_file(full, std::size_t{1} << 24), options);
  } catch (sgt::Error& e) {
    e.at_file(full);
    throw;
  }
}

}  // namespace sgt_test
