// The audit as a picture: protected tokens (rows, in prompt order) x draws (columns), kCell pixels
// a cell. Red: the draw's L2 nearest neighbour is the original token (recovered). Otherwise yellow
// (rank 1) to dark blue (rank vocab_size - 1), on a log scale of the original id's L2 rank, so the
// few ranks that matter to an attacker (1, 2, 10) stay apart while the long tail shares the blues.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/audit/recovery_audit.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/io/png_writer.hpp"

namespace sgt {
SGT_ISA_BEGIN

inline RgbImage audit_heat_map(const AuditReport& r) {
  constexpr std::size_t kCell = 8;
  std::vector<const TokenAudit*> rows;
  for (const auto& a : r.tokens)
    if (a.is_protected) rows.push_back(&a);
  if (rows.empty()) throw Error("nothing to plot: no token is protected");
  RgbImage image;
  image.width = r.draws * kCell;
  image.height = rows.size() * kCell;
  image.pixels.resize(image.width * image.height * 3);
  const double log_vocab = std::log(double(std::max<std::size_t>(r.vocab_size, 2)));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (std::size_t d = 0; d < r.draws; ++d) {
      const std::uint64_t rank = rows[i]->rank_l2[d];
      double c[3] = {200, 30, 30};
      if (rank > 0) {
        const double f = std::min(1.0, std::log(double(rank) + 1.0) / log_vocab);
        const double lo[3] = {255, 220, 80}, hi[3] = {30, 60, 160};
        for (int k = 0; k < 3; ++k) c[k] = lo[k] + f * (hi[k] - lo[k]);
      }
      for (std::size_t y = i * kCell; y < (i + 1) * kCell; ++y)
        for (std::size_t x = d * kCell; x < (d + 1) * kCell; ++x) {
          const bool grid = y % kCell == kCell - 1 || x % kCell == kCell - 1;
          for (int k = 0; k < 3; ++k)
            image.pixels[(y * image.width + x) * 3 + k] =
                grid ? 255 : static_cast<std::uint8_t>(c[k] + 0.5);
        }
    }
  }
  return image;
}

// The heat map as a PNG at `path` (never a partial file); errors name the file.
inline void write_heat_map(const std::string& path, const AuditReport& r) {
  RgbImage image;
  try {
    image = audit_heat_map(r);
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
  write_png(path, image);
}

SGT_ISA_END
}  // namespace sgt
