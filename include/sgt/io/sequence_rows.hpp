// The real tokens of each sequence of a padded batch: what a server is sent, one (T_b, H) tensor
// per sequence, padding rows removed.
//
// A batch is [B, S, H] row-major with an attention mask [B, S] (1 = real token, empty = every
// token real). Row b's real tokens are kept in order wherever the padding is (left, right or in
// between), so a sequence of T_b real tokens becomes a T_b x H block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"

namespace sgt {

// `batch` holds `size` floats.
inline std::vector<std::vector<float>> real_token_rows(const float* batch, std::size_t size,
                                                       std::size_t B, std::size_t S, std::size_t H,
                                                       const std::vector<std::uint8_t>& mask) {
  if (size / (H ? H : 1) / (S ? S : 1) != B || B * S * H != size)
    throw Error("batch of " + std::to_string(size) + " values is not [" +
                std::to_string(B) + ", " + std::to_string(S) + ", " + std::to_string(H) + "]");
  if (!mask.empty() && mask.size() != B * S)
    throw Error("attention mask has " + std::to_string(mask.size()) + " entries, the batch " +
                std::to_string(B * S) + " tokens");
  std::vector<std::vector<float>> rows(B);
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t s = 0; s < S; ++s) {
      if (!mask.empty() && !mask[b * S + s]) continue;
      const float* row = batch + (b * S + s) * H;
      rows[b].insert(rows[b].end(), row, row + H);
    }
  }
  return rows;
}

// (Any allocator: TransformResult's buffers are WipedVectors.)
template <class Allocator>
std::vector<std::vector<float>> real_token_rows(const std::vector<float, Allocator>& batch,
                                                std::size_t B, std::size_t S, std::size_t H,
                                                const std::vector<std::uint8_t>& mask) {
  return real_token_rows(batch.data(), batch.size(), B, S, H, mask);
}

}  // namespace sgt
