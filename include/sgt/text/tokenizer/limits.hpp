// sgt::text::TokenizerLimits: the work and memory one tokenizer.json and one input may cost.
//
// A tokenizer.json from a model hub is someone else's program: its regexes run on Oniguruma, a
// backtracking engine (a Split pattern like `(?:a|a){0,22}[^a]` takes milliseconds per character),
// and its normalizers and pre-tokenizers rewrite the text (a Replace with an empty pattern, or a
// Sequence of ByteLevel steps, multiplies it). The limits below bound both per input -- one
// encode, or the added tokens normalized at load -- in proportion to the input's size, so that a
// caller can size a service by its largest request. Exceeding one is an sgt::Error naming the
// component (`pre_tokenizer.pretokenizers[0]`) and the byte position in the input; nothing is ever
// cut short silently. docs/reliability.md ("Tokenizer limits") lists them with their defaults.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "sgt/core/error.hpp"

namespace sgt::text {

struct TokenizerLimits {
  // Backtracking steps (Oniguruma's "retries") that all the regexes of one input may take
  // together: regex_retries_per_byte for each input byte plus regex_retries_base. Each search is
  // charged at least 64 (regex.hpp), so real tokenizers' patterns are charged 10-20 per byte of
  // prose and up to about 100 on text that makes a match of every byte (docs/reliability.md);
  // one step costs 8-17 ns, so the defaults allow 2-4.5 s per MiB of input at worst.
  std::uint64_t regex_retries_per_byte = 250;
  std::uint64_t regex_retries_base = 1000000;
  // The text the normalizers and pre-tokenizers build from one input stays below
  // text_growth_factor * input bytes + text_growth_bytes: every rewrite that lengthens the text
  // (Replace, Prepend, NFC, ByteLevel's byte mapping, Metaspace) is charged its growth before it is
  // built. Real tokenizers grow a text by at most 3x (Replace " " by U+2581); NFC's longest
  // expansion (3x) followed by ByteLevel's mapping (2x) is the worst legitimate case.
  std::uint64_t text_growth_factor = 8;
  std::uint64_t text_growth_bytes = 4096;
  // The added tokens' contents together (tokenizer.json's "added_tokens"): their matching
  // automaton takes about 30 bytes per byte of them. Real files hold a few kB (Llama 3: 256
  // special tokens, 6 kB); load refuses more than this before building anything.
  std::uint64_t max_added_tokens_bytes = std::uint64_t{4} << 20;
  // encode refuses a longer input before any work (the offsets are 32-bit internally).
  std::uint64_t max_input_bytes = std::uint64_t{1} << 30;
};

namespace detail {

// The budget of one input: what is left of each limit, charged as the pipeline runs.
class WorkBudget {
 public:
  WorkBudget(const TokenizerLimits& limits, std::size_t input_bytes)
      : regex_retries_left_(saturating_add(
            saturating_mul(limits.regex_retries_per_byte, input_bytes), limits.regex_retries_base)),
        growth_left_(saturating_add(saturating_mul(growth_per_byte(limits), input_bytes),
                                    limits.text_growth_bytes)) {}

  std::uint64_t& regex_retries_left() noexcept { return regex_retries_left_; }

  // Charges a rewrite of a piece from old_bytes to new_bytes (only growth counts); `component`
  // is the path of the stage in tokenizer.json, `position` the piece's byte in the input.
  void charge_growth(std::size_t old_bytes, std::size_t new_bytes, const std::string& component,
                     std::size_t position) {
    if (new_bytes <= old_bytes) return;
    const std::uint64_t growth = new_bytes - old_bytes;
    if (growth > growth_left_)
      throw Error(
          "the text grows past TokenizerLimits::text_growth_factor x input + "
          "text_growth_bytes (a rewrite of " +
          std::to_string(old_bytes) + " bytes into " + std::to_string(new_bytes) + ")")
          .at_key(component)
          .at_position(static_cast<std::int64_t>(position));
    growth_left_ -= growth;
  }

 private:
  // The input is already there: what may be added is (factor - 1) per byte.
  static std::uint64_t growth_per_byte(const TokenizerLimits& limits) {
    return limits.text_growth_factor > 0 ? limits.text_growth_factor - 1 : 0;
  }
  static std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
  }
  static std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
  }

  std::uint64_t regex_retries_left_;
  std::uint64_t growth_left_;
};

}  // namespace detail
}  // namespace sgt::text
