// One name table per enum: the same table turns a value into its spelling and a spelling into its
// value, and lists the spellings for messages, so no second table can fall out of step.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sgt {

template <class Enum>
struct EnumName {
  Enum value;
  const char* name;
};

// The spelling of `value` in `table` ("?" when the table lacks it; tests check every table is
// complete).
template <class Enum, std::size_t N>
constexpr const char* enum_name(const EnumName<Enum> (&table)[N], Enum value) noexcept {
  for (const EnumName<Enum>& e : table)
    if (e.value == value) return e.name;
  return "?";
}

template <class Enum, std::size_t N>
constexpr std::optional<Enum> enum_from_name(const EnumName<Enum> (&table)[N],
                                             std::string_view name) noexcept {
  for (const EnumName<Enum>& e : table)
    if (name == e.name) return e.value;
  return std::nullopt;
}

// "a, b and c" (or with another last word: "a, b or c" for a choice).
template <class Enum, std::size_t N>
std::string enum_names_list(const EnumName<Enum> (&table)[N], const char* last_word = "and") {
  std::string s;
  for (std::size_t i = 0; i < N; ++i)
    s += (i == 0 ? "" : i + 1 == N ? " " + std::string(last_word) + " " : ", ") +
         std::string(table[i].name);
  return s;
}

}  // namespace sgt
