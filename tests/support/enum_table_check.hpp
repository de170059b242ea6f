// Checks an EnumName table (core/enum_names.hpp): complete (every value from 0 to count - 1 has a
// name), unique, read back to its value, and no longer than the enum.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <iterator>
#include <set>
#include <string>

#include <sgt/core/enum_names.hpp>

namespace sgt_test {

template <class Table>
void check_enum_table(const Table& table, int count) {
  std::set<std::string> seen;
  for (int i = 0; i < count; ++i) {
    using Enum = decltype(table[0].value);
    const auto value = static_cast<Enum>(i);
    const std::string name = sgt::enum_name(table, value);
    CAPTURE(name);
    CHECK(name != "?");
    CHECK(seen.insert(name).second);
    REQUIRE(sgt::enum_from_name(table, name).has_value());
    CHECK(*sgt::enum_from_name(table, name) == value);
  }
  CHECK(std::size(table) == static_cast<std::size_t>(count));
}

}  // namespace sgt_test
