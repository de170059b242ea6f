// Kernel matmul: against torch.nn.functional.linear fixtures
// (tools/fixtures/kernel_matmul_fixtures.py) for F32 / BF16 / F16 weights, optimized against
// reference on random data over awkward shapes (odd K, N off the register tile, T = 1, several K
// blocks, several work chunks), bit-identical results for 1, 2 and 3 threads and for a row computed
// alone, special values, and shape errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/core/thread_pool.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/core/precision.hpp>
#include <sgt/kernels/block_features.hpp>
#include <sgt/kernels/matmul.hpp>

#include "support/kernel_harness.hpp"
#include "support/slow_run.hpp"
#include "support/stored_tensor.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_kernels_matmul {

namespace {

using sgt_test::error_of;
using sgt_test::expect_matches;
using sgt_test::expect_thread_invariant;
using sgt_test::max_abs;
using sgt_test::require_bit_identical;
using sgt_test::require_matches;
using sgt_test::StoredTensor;
using sgt_test::to_f32;
using sgt_test::uniform_values;

using sgt::AnyTensorView;
using sgt::DType;
using sgt::TensorView;
namespace k = sgt::kernels;

const std::string kDataDir = std::string(SGT_TEST_DATA_DIR) + "/kernels/matmul/";
constexpr DType kDtypes[] = {DType::F32, DType::BF16, DType::F16};

// Error budget of one output of an f32 dot product of length K (sgt_test::dot_product_tolerance):
// 1e-5 leaves ~100x room over what f32 accumulation does in practice, while a single dropped or
// doubled term (about |x| * |w|) is thousands of times larger.
double linear_tolerance(std::size_t k, double max_x, double max_w, double max_b) {
  return sgt_test::dot_product_tolerance(1e-5, k, max_x, max_w, max_b);
}

// K and N of one Linear in the sweeps over awkward shapes, and how a failure names its case.
struct KnShape {
  std::size_t k, n;
};
std::string describe_linear(DType dtype, sgt::Precision precision, KnShape s, bool with_bias) {
  return std::string("dtype ") + sgt::dtype_name(dtype) + " precision " +
         sgt::precision_name(precision) + " K " + std::to_string(s.k) + " N " +
         std::to_string(s.n) + (with_bias ? " bias" : "");
}

nlohmann::json fixture_cases(const sgt::SafetensorsFile& file) {
  const auto it = file.metadata().find("cases");
  REQUIRE(it != file.metadata().end());
  return nlohmann::json::parse(it->second);
}

}  // namespace

TEST_CASE("matmul matches torch.nn.functional.linear for F32, BF16 and F16 weights") {
  const sgt::SafetensorsFile file(kDataDir + "linear.safetensors");
  const nlohmann::json cases = fixture_cases(file);
  REQUIRE(cases.size() == 48);  // 3 dtypes x bias or not x 8 token counts
  sgt::ThreadPool pool(2);
  int with_bias = 0;
  for (const auto& c : cases) {
    const AnyTensorView w = file.tensor(c["w"].get<std::string>());
    const AnyTensorView b =
        c["b"].is_null() ? AnyTensorView() : file.tensor(c["b"].get<std::string>());
    const TensorView<const float> x = file.tensor(c["x"].get<std::string>()).as<float>();
    const TensorView<const float> expected = file.tensor(c["y"].get<std::string>()).as<float>();
    REQUIRE(std::string(sgt::dtype_name(w.dtype())) == c["dtype"].get<std::string>());
    REQUIRE(x.dim(0) == c["tokens"].get<std::size_t>());
    with_bias += b.data() != nullptr;

    const std::size_t t = x.dim(0), n = w.dim(0);
    std::vector<float> y(t * n), y_ref(t * n);
    k::matmul(x, w, b, TensorView<float>(y.data(), {t, n}), &pool);
    k::matmul_reference(x, w, b, TensorView<float>(y_ref.data(), {t, n}));

    const double tol = linear_tolerance(x.dim(1), max_abs(x), max_abs(to_f32(w)),
                                        b.data() ? max_abs(to_f32(b)) : 0.0);
    expect_matches(y, expected, tol, [&] { return "matmul, case " + c.dump(); });
    expect_matches(y_ref, expected, tol, [&] { return "matmul_reference, case " + c.dump(); });
  }
  CHECK(with_bias == 24);
}

TEST_CASE(
    "matmul agrees with matmul_reference over awkward shapes, dtypes and both precisions") {
  std::mt19937 rng(7);
  const std::size_t tokens[] = {1, 2, 3, 5, 15, 16, 17, 65, 130};
  const std::size_t ks[] = {1, 3, 15, 16, 17, 33, 64, 65, 257};
  const std::size_t ns[] = {1, 2, 5, 6, 7, 13, 17, 37, 65, 130};
  std::size_t cases = 0;
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (DType dtype : kDtypes) {
    for (std::size_t kk : ks) {
      for (std::size_t n : ns) {
        const StoredTensor w(dtype, uniform_values(n * kk, rng), {n, kk});
        // Bias absent, or stored in a dtype other than the weight's (they are independent).
        const bool has_bias = (kk + n) % 2 == 1;
        const DType bias_dtype = kDtypes[(static_cast<int>(dtype) + 1) % 3];
        const StoredTensor b(bias_dtype, uniform_values(n, rng, 2.0f), {n});
        const AnyTensorView bias = has_bias ? b.view() : AnyTensorView();
        const double max_w = max_abs(w.values()), max_b = has_bias ? max_abs(b.values()) : 0.0;
        for (std::size_t t : tokens) {
          const std::vector<float> x = uniform_values(t * kk, rng, 3.0f);
          std::vector<float> y(t * n, -1.0f), y_ref(t * n, -2.0f);
          const TensorView<const float> xv(x.data(), {t, kk});
          k::matmul(xv, w.view(), bias, TensorView<float>(y.data(), {t, n}), nullptr, precision);
          k::matmul_reference(xv, w.view(), bias, TensorView<float>(y_ref.data(), {t, n}), nullptr,
                              precision);
          const double tol = linear_tolerance(kk, max_abs(x), max_w, max_b);
          require_matches(y, y_ref, tol, [&](std::ostream& os) {
            os << "dtype " << sgt::dtype_name(dtype) << " precision "
               << sgt::precision_name(precision) << " T " << t << " K " << kk << " N " << n
               << " bias " << has_bias;
          });
          ++cases;
        }
      }
    }
  }
  CHECK(cases == 2 * 3 * 9 * 10 * 9);
}

TEST_CASE("matmul over several K blocks, token blocks and work chunks") {
  // K above kMatmulKBlock (2048) runs several K blocks whose sums are added into y; T above 256
  // runs several token blocks; N above the chunk rows runs several feature blocks.
  std::mt19937 rng(11);
  struct Shape3 {
    std::size_t t, k, n;
  };
  const Shape3 shapes[] = {{5, 2047, 7},   {3, 2048, 13}, {4, 2049, 6}, {1, 4100, 9},
                           {300, 33, 250}, {17, 6000, 5}, {260, 70, 1}};
  for (DType dtype : kDtypes) {
    for (const Shape3& s : shapes) {
      const StoredTensor w(dtype, uniform_values(s.n * s.k, rng), {s.n, s.k});
      const StoredTensor b(DType::F32, uniform_values(s.n, rng), {s.n});
      const std::vector<float> x = uniform_values(s.t * s.k, rng);
      std::vector<float> y(s.t * s.n), y_ref(s.t * s.n);
      const TensorView<const float> xv(x.data(), {s.t, s.k});
      k::matmul(xv, w.view(), b.view(), TensorView<float>(y.data(), {s.t, s.n}));
      k::matmul_reference(xv, w.view(), b.view(), TensorView<float>(y_ref.data(), {s.t, s.n}));
      expect_matches(y, y_ref,
                     linear_tolerance(s.k, max_abs(x), max_abs(w.values()), max_abs(b.values())),
                     [&](std::ostream& os) {
                       os << "dtype " << sgt::dtype_name(dtype) << " T " << s.t << " K " << s.k
                          << " N " << s.n;
                     });
    }
  }
}

TEST_CASE("matmul with weights and activations at every alignment") {
  // Weights mapped from a file sit at any element offset; the kernel peels a few K values off the
  // front of every row to align its W loads (when all rows share one alignment: K * element size
  // a multiple of the load size) and copies X into an aligned tile. Every offset must give the
  // reference's result, and the peel must not leak into the K tail or into the next K block.
  std::mt19937 rng(13);
  struct Shape3 {
    std::size_t t, k, n;
  };
  const Shape3 shapes[] = {{5, 64, 7}, {3, 96, 13}, {1, 17, 6}, {6, 2080, 5}, {2, 4, 3}};
  for (DType dtype : kDtypes) {
    for (const Shape3& s : shapes) {
      const std::vector<float> wv = uniform_values(s.n * s.k, rng);
      const std::vector<float> x = uniform_values(s.t * s.k + 32, rng);
      const StoredTensor padded(dtype, std::vector<float>(s.n * s.k + 40, 0.0f), {s.n * s.k + 40});
      std::vector<float> y(s.t * s.n), y_ref(s.t * s.n), first;
      for (std::size_t offset = 0; offset < 33; ++offset) {
        // The same weight values, stored `offset` elements into a buffer (the vector's own
        // alignment is 16 bytes or more, so offsets cover every alignment of 2- and 4-byte data).
        StoredTensor w = padded;
        const StoredTensor values(dtype, wv, {s.n, s.k});
        if (dtype == DType::F32) {
          std::copy(values.f32.begin(), values.f32.end(), w.f32.begin() + offset);
        } else {
          std::copy(values.half_bits.begin(), values.half_bits.end(), w.half_bits.begin() + offset);
        }
        const char* base = static_cast<const char*>(w.view().data());
        const AnyTensorView wview(base + offset * sgt::dtype_size(dtype), dtype,
                                  sgt::Shape{s.n, s.k, 0, 0}, 2);
        const std::size_t x_offset = offset % 7;  // activations off alignment too
        const TensorView<const float> xv(x.data() + x_offset, {s.t, s.k});
        k::matmul(xv, wview, AnyTensorView(), TensorView<float>(y.data(), {s.t, s.n}));
        k::matmul_reference(xv, wview, AnyTensorView(),
                            TensorView<float>(y_ref.data(), {s.t, s.n}));
        require_matches(y, y_ref, linear_tolerance(s.k, max_abs(xv), max_abs(values.values()), 0.0),
                        [&](std::ostream& os) {
                          os << "dtype " << sgt::dtype_name(dtype) << " T " << s.t << " K " << s.k
                             << " N " << s.n << " weight offset " << offset;
                        });
      }
    }
  }
}

TEST_CASE("matmul is bit-identical for 1, 2 and 3 threads, and for a row computed alone") {
  std::mt19937 rng(3);
  // Several token blocks (T > 256), feature chunks (N > 96) and K blocks (K > 2048). Sanitizer
  // builds and emulated ones (qemu, where this case took 73 s) keep N to two or three chunks of
  // kChunkGroups x kTileFeatures (48 or 64) and a remainder.
  const std::size_t t = 261, kk = 2100, n = sgt_test::kSlowRun ? 99 : 203;
  const std::vector<float> x = uniform_values(t * kk, rng);
  const TensorView<const float> xv(x.data(), {t, kk});
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (DType dtype : kDtypes) {
    const std::string describe = std::string("dtype ") + sgt::dtype_name(dtype) + " precision " +
                                 sgt::precision_name(precision);
    const StoredTensor w(dtype, uniform_values(n * kk, rng), {n, kk});
    const StoredTensor b(dtype, uniform_values(n, rng), {n});
    const auto run = [&](sgt::ThreadPool* pool) {
      std::vector<float> y(t * n, 0.0f);
      k::matmul(xv, w.view(), b.view(), TensorView<float>(y.data(), {t, n}), pool, precision);
      return y;
    };
    expect_thread_invariant(run, {1, 2, 3}, describe);
    const std::vector<float> serial = run(nullptr);
    // A row's result does not depend on the other rows or on where the tile edges fall, nor on
    // the path: blocks of up to kNarrowMaxTokens rows run the narrow path (matmul_narrow.hpp),
    // larger ones the tile; every block size must give the batch's bits.
    for (std::size_t row : {std::size_t{0}, std::size_t{5}, std::size_t{257}, t - 1}) {
      std::vector<float> alone(n);
      k::matmul(TensorView<const float>(x.data() + row * kk, {1, kk}), w.view(), b.view(),
                TensorView<float>(alone.data(), {1, n}), nullptr, precision);
      require_bit_identical(alone, {serial.data() + row * n, n},
                            describe + ", row " + std::to_string(row) + " alone");
    }
    for (std::size_t rows = 2; rows <= k::kNarrowMaxTokens + 2; ++rows) {
      const std::size_t first = 7 * rows;
      std::vector<float> block(rows * n);
      sgt::ThreadPool pool(2);
      k::matmul(TensorView<const float>(x.data() + first * kk, {rows, kk}), w.view(), b.view(),
                TensorView<float>(block.data(), {rows, n}), &pool, precision);
      require_bit_identical(block, {serial.data() + first * n, rows * n},
                            describe + ", " + std::to_string(rows) + " rows from " +
                                std::to_string(first));
    }
    // The optimized result is also close to the reference here (not only self-consistent).
    std::vector<float> ref(t * n);
    k::matmul_reference(xv, w.view(), b.view(), TensorView<float>(ref.data(), {t, n}), nullptr,
                        precision);
    expect_matches(serial, ref,
                   linear_tolerance(kk, max_abs(x), max_abs(w.values()), max_abs(b.values())),
                   describe);
  }
}

TEST_CASE("matmul cuts a long K into blocks (TileGrid) and keeps every chain's bits") {
  // K = 8195: a chunk of several token tiles over all of K would overflow the L2 budget on every
  // instruction set, so the batch runs K in blocks of k_block and continues each tile's sums from
  // memory; a row computed alone (one tile, or the narrow path) runs K in one pass. Same bits.
  std::mt19937 rng(41);
  const std::size_t t = 70, kk = 8195, n = 11;
  const std::vector<float> x = uniform_values(t * kk, rng);
  const TensorView<const float> xv(x.data(), {t, kk});
  sgt::ThreadPool pool(2);
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (DType dtype : kDtypes) {
    const std::string describe = std::string("dtype ") + sgt::dtype_name(dtype) + " precision " +
                                 sgt::precision_name(precision);
    const k::ActivationPacking packing = k::packing_for(precision, dtype);
    const k::detail::TileGrid grid(t, n, kk, k::packed_tile_words(kk, packing) * 4);
    REQUIRE_MESSAGE(grid.blocked(), describe);
    CHECK(grid.k_block % 2 == 0);
    const StoredTensor w(dtype, uniform_values(n * kk, rng), {n, kk});
    const StoredTensor b(DType::F32, uniform_values(n, rng), {n});
    std::vector<float> y(t * n);
    k::matmul(xv, w.view(), b.view(), TensorView<float>(y.data(), {t, n}), &pool, precision);
    for (std::size_t row = 0; row < t; row += 9) {
      std::vector<float> alone(n);
      k::matmul(TensorView<const float>(x.data() + row * kk, {1, kk}), w.view(), b.view(),
                TensorView<float>(alone.data(), {1, n}), nullptr, precision);
      require_bit_identical(alone, {y.data() + row * n, n},
                            describe + ", row " + std::to_string(row) + " alone");
    }
    std::vector<float> ref(t * n);
    k::matmul_reference(xv, w.view(), b.view(), TensorView<float>(ref.data(), {t, n}), nullptr,
                        precision);
    expect_matches(y, ref,
                   linear_tolerance(kk, max_abs(x), max_abs(w.values()), max_abs(b.values())),
                   describe);
  }
}

TEST_CASE("the narrow path (a few tokens) equals the tile bit for bit at awkward shapes") {
  // K shorter than one transposed block, odd K (a lone last bf16 weight), N off the 2 x kFloatLanes
  // item and below one group, weights and activations off alignment, with and without bias; K
  // = 512: rows a multiple of 64 bytes apart, many whole cache lines per row.
  std::mt19937 rng(29);
  const KnShape shapes[] = {{1, 1},   {7, 5},     {33, 17},   {67, 45},
                            {96, 33}, {131, 64}, {512, 40}, {2049, 19}};
  const std::size_t tile_rows = 2 * k::kTileTokens + 3;  // the batch: several tiles, tile path
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (DType dtype : {DType::F32, DType::BF16})
  for (const KnShape& s : shapes)
  for (bool with_bias : {false, true}) {
    const std::string describe = describe_linear(dtype, precision, s, with_bias);
    const std::size_t w_offset = s.k % 3;  // elements: any alignment of the rows
    const StoredTensor padded(dtype, uniform_values(s.n * s.k + 3, rng), {s.n * s.k + 3});
    const char* base = static_cast<const char*>(padded.view().data());
    const AnyTensorView w(base + w_offset * sgt::dtype_size(dtype), dtype,
                          sgt::Shape{s.n, s.k, 0, 0}, 2);
    const StoredTensor b(DType::BF16, uniform_values(s.n, rng), {s.n});
    const AnyTensorView bias = with_bias ? b.view() : AnyTensorView();
    const std::vector<float> x = uniform_values(tile_rows * s.k + 1, rng);
    std::vector<float> batch(tile_rows * s.n);
    k::matmul(TensorView<const float>(x.data() + 1, {tile_rows, s.k}), w, bias,
              TensorView<float>(batch.data(), {tile_rows, s.n}), nullptr, precision);
    for (std::size_t rows = 1; rows <= k::kNarrowMaxTokens; ++rows) {
      const std::size_t first = tile_rows - rows;
      std::vector<float> narrow(rows * s.n);
      k::matmul(TensorView<const float>(x.data() + 1 + first * s.k, {rows, s.k}), w, bias,
                TensorView<float>(narrow.data(), {rows, s.n}), nullptr, precision);
      require_bit_identical(narrow, {batch.data() + first * s.n, rows * s.n},
                            describe + ", " + std::to_string(rows) + " rows");
    }
  }
}

TEST_CASE("weights in feature blocks give the bits of the row-major weights, on every path") {
  // N below, at and off one block of 64 features, odd K (BF16's padded last pair), K below one
  // step and long enough for K blocks (3001 x 67 tokens in f32: TileGrid cuts K); 1 ..
  // kNarrowMaxTokens tokens (the narrow path), 67 (the tile), with and without a pool and a bias.
  std::mt19937 rng(31);
  const KnShape shapes[] = {{1, 1},   {7, 5},     {33, 17},  {67, 64},
                            {96, 65}, {131, 130}, {512, 40}, {3001, 70}};
  sgt::ThreadPool pool(2);
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (DType dtype : {DType::F32, DType::BF16})
  for (const KnShape& s : shapes)
  for (bool with_bias : {false, true}) {
    const std::string describe = describe_linear(dtype, precision, s, with_bias);
    const StoredTensor w(dtype, uniform_values(s.n * s.k, rng), {s.n, s.k});
    const k::FeatureBlockedWeight blocked = k::block_features(w.view(), &pool);
    REQUIRE(blocked.view().layout() == sgt::WeightLayout::FeatureBlocks);
    CHECK(blocked.view().byte_size() == blocked.bytes());
    const StoredTensor b(DType::BF16, uniform_values(s.n, rng), {s.n});
    const AnyTensorView bias = with_bias ? b.view() : AnyTensorView();
    const std::size_t max_rows = 2 * k::kTileTokens + 3;
    const std::vector<float> x = uniform_values(max_rows * s.k, rng);
    std::vector<std::size_t> row_counts;
    for (std::size_t rows = 1; rows <= k::kNarrowMaxTokens; ++rows) row_counts.push_back(rows);
    row_counts.push_back(max_rows);
    for (std::size_t rows : row_counts)
    for (sgt::ThreadPool* p : {static_cast<sgt::ThreadPool*>(nullptr), &pool}) {
      const std::string at = describe + ", " + std::to_string(rows) + " rows" +
                             (p != nullptr ? ", 2 threads" : "");
      const TensorView<const float> xv(x.data(), {rows, s.k});
      std::vector<float> row_major(rows * s.n), in_blocks(rows * s.n, -7.0f);
      k::matmul(xv, w.view(), bias, TensorView<float>(row_major.data(), {rows, s.n}), p,
                precision);
      k::matmul(xv, blocked.view(), bias, TensorView<float>(in_blocks.data(), {rows, s.n}), p,
                precision);
      require_bit_identical(in_blocks, row_major, at);
    }
    // The reference reads either layout the same way.
    const std::size_t rows = 3;
    const TensorView<const float> xv(x.data(), {rows, s.k});
    std::vector<float> ref_rows(rows * s.n), ref_blocks(rows * s.n);
    k::matmul_reference(xv, w.view(), bias, TensorView<float>(ref_rows.data(), {rows, s.n}),
                        nullptr, precision);
    k::matmul_reference(xv, blocked.view(), bias,
                        TensorView<float>(ref_blocks.data(), {rows, s.n}), nullptr, precision);
    require_bit_identical(ref_blocks, ref_rows, describe + ", reference");
  }
}

TEST_CASE("feature blocks: what block_features and matmul refuse") {
  std::mt19937 rng(37);
  // The padding bound a copying caller (CausalLM::copy_decode_weights) relies on.
  CHECK(sgt::feature_blocks_at_most_double(32, 64, DType::F32));
  CHECK(sgt::feature_blocks_at_most_double(65, 8, DType::BF16));
  CHECK_FALSE(sgt::feature_blocks_at_most_double(31, 64, DType::F32));
  CHECK_FALSE(sgt::feature_blocks_at_most_double(1, std::size_t{1} << 40, DType::BF16));
  CHECK_FALSE(sgt::feature_blocks_at_most_double(SIZE_MAX / 2, 3, DType::F32));  // overflows
  const StoredTensor f16(DType::F16, uniform_values(6, rng), {2, 3});
  CHECK(error_of([&] { k::block_features(f16.view()); }).find("F32 or BF16") !=
        std::string::npos);
  const StoredTensor flat(DType::F32, uniform_values(6, rng), {6});
  CHECK(error_of([&] { k::block_features(flat.view()); }).find("[N, K]") != std::string::npos);
  const StoredTensor w(DType::BF16, uniform_values(6, rng), {2, 3});
  const k::FeatureBlockedWeight blocked = k::block_features(w.view());
  CHECK(error_of([&] { k::block_features(blocked.view()); }).find("already") !=
        std::string::npos);
  CHECK(error_of([&] { (void)blocked.view().as<sgt::bfloat16>(); }).find("feature blocks") !=
        std::string::npos);
  // An F16 view that claims feature blocks: no kernel reads that layout.
  const AnyTensorView f16_blocks(f16.view().data(), DType::F16, sgt::Shape{2, 3, 0, 0}, 2,
                                 sgt::WeightLayout::FeatureBlocks);
  std::vector<float> x(3, 1.0f), y(2);
  CHECK(error_of([&] {
          k::matmul(TensorView<const float>(x.data(), {1, 3}), f16_blocks, AnyTensorView(),
                    TensorView<float>(y.data(), {1, 2}));
        }).find("feature blocks hold F32 or BF16") != std::string::npos);
}

TEST_CASE("Precision::Bf16 rounds the activations of BF16 Linears only") {
  std::mt19937 rng(41);
  const std::size_t t = 37, kk = 301, n = 29;
  const std::vector<float> x = uniform_values(t * kk, rng, 3.0f);
  const TensorView<const float> xv(x.data(), {t, kk});
  std::vector<float> rounded(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    rounded[i] = k::matmul_input_value(x[i], k::ActivationPacking::Bf16Pairs);
  for (DType dtype : kDtypes) {
    CAPTURE(sgt::dtype_name(dtype));
    const StoredTensor w(dtype, uniform_values(n * kk, rng), {n, kk});
    std::vector<float> y_bf16(t * n), y_f32(t * n), y_rounded(t * n);
    k::matmul(xv, w.view(), AnyTensorView(), TensorView<float>(y_bf16.data(), {t, n}), nullptr,
              sgt::Precision::Bf16);
    k::matmul(xv, w.view(), AnyTensorView(), TensorView<float>(y_f32.data(), {t, n}), nullptr,
              sgt::Precision::F32);
    k::matmul(TensorView<const float>(rounded.data(), {t, kk}), w.view(), AnyTensorView(),
              TensorView<float>(y_rounded.data(), {t, n}), nullptr, sgt::Precision::F32);
    if (dtype != DType::BF16) {
      // F32 and F16 weights: Bf16 changes nothing.
      require_bit_identical(y_bf16, y_f32, "non-BF16 weights at Bf16");
      continue;
    }
    // BF16 weights: the products are those of the bf16-rounded activations (exact in f32), so the
    // result is close to the f32 matmul of the rounded x (summation order aside), and it moved
    // away from the unrounded f32 result by about what rounding x to 8 bits costs.
    const double tol = linear_tolerance(kk, 3.0, max_abs(w.values()), 0.0);
    expect_matches(y_bf16, y_rounded, tol, "Bf16 against f32 on rounded x");
    double moved = 0.0;
    for (std::size_t i = 0; i < y_bf16.size(); ++i)
      moved = std::max(moved, static_cast<double>(std::fabs(y_bf16[i] - y_f32[i])));
    CHECK(moved > 100 * tol);
  }
}

TEST_CASE("matmul propagates NaN and infinity like the reference") {
  std::mt19937 rng(5);
  const std::size_t t = 6, kk = 37, n = 11;
  for (DType dtype : kDtypes) {
    std::vector<float> wv = uniform_values(n * kk, rng);
    wv[3 * kk + 20] = std::numeric_limits<float>::quiet_NaN();  // row 3 of W -> column 3 of Y
    wv[7 * kk + 36] = std::numeric_limits<float>::infinity();   // in the K tail
    const StoredTensor w(dtype, wv, {n, kk});
    std::vector<float> x = uniform_values(t * kk, rng);
    x[4 * kk + 1] = -std::numeric_limits<float>::infinity();  // row 4 of X
    std::vector<float> y(t * n), ref(t * n);
    const TensorView<const float> xv(x.data(), {t, kk});
    k::matmul(xv, w.view(), AnyTensorView(), TensorView<float>(y.data(), {t, n}));
    k::matmul_reference(xv, w.view(), AnyTensorView(), TensorView<float>(ref.data(), {t, n}));
    for (std::size_t i = 0; i < t * n; ++i) {
      INFO("dtype " << sgt::dtype_name(dtype) << " element " << i);
      REQUIRE(std::isnan(y[i]) == std::isnan(ref[i]));
      REQUIRE(std::isinf(y[i]) == std::isinf(ref[i]));
      if (std::isinf(ref[i])) REQUIRE(y[i] == ref[i]);
    }
    CHECK(std::isnan(y[0 * n + 3]));
    CHECK(std::isinf(y[0 * n + 7]));
    CHECK(std::isfinite(y[0 * n + 0]));
  }
}

TEST_CASE("matmul with empty dimensions") {
  const StoredTensor b(DType::BF16, {0.5f, -1.5f, 2.0f}, {3});
  // K = 0: every output is its bias (or 0).
  const StoredTensor w0(DType::F32, {}, {3, 0});
  std::vector<float> y(2 * 3, 9.0f);
  k::matmul(TensorView<const float>(nullptr, {2, 0}), w0.view(), b.view(),
            TensorView<float>(y.data(), {2, 3}));
  CHECK(y == std::vector<float>{0.5f, -1.5f, 2.0f, 0.5f, -1.5f, 2.0f});
  k::matmul(TensorView<const float>(nullptr, {2, 0}), w0.view(), AnyTensorView(),
            TensorView<float>(y.data(), {2, 3}));
  CHECK(y == std::vector<float>(6, 0.0f));
  // T = 0 and N = 0: nothing to do, nothing touched.
  const StoredTensor w(DType::F32, std::vector<float>(3 * 4, 1.0f), {3, 4});
  k::matmul(TensorView<const float>(nullptr, {0, 4}), w.view(), b.view(),
            TensorView<float>(nullptr, {0, 3}));
  const StoredTensor wn(DType::F32, {}, {0, 4});
  const std::vector<float> x(2 * 4, 1.0f);
  k::matmul(TensorView<const float>(x.data(), {2, 4}), wn.view(), AnyTensorView(),
            TensorView<float>(nullptr, {2, 0}));
}

TEST_CASE("matmul shape errors name both shapes") {
  std::vector<float> x(3 * 64, 1.0f), y(3 * 32), big(1000);
  const StoredTensor w(DType::BF16, std::vector<float>(32 * 64, 0.5f), {32, 64});
  const StoredTensor w_k65(DType::F32, std::vector<float>(32 * 65, 0.5f), {32, 65});
  const StoredTensor b31(DType::F32, std::vector<float>(31, 0.0f), {31});
  const TensorView<const float> xv(x.data(), {3, 64});
  const TensorView<float> yv(y.data(), {3, 32});
  using Fn = void (*)(TensorView<const float>, const AnyTensorView&, const AnyTensorView&,
                      TensorView<float>, sgt::ThreadPool*);
  const Fn optimized = [](TensorView<const float> x, const AnyTensorView& w, const AnyTensorView& b,
                          TensorView<float> y, sgt::ThreadPool* p) { k::matmul(x, w, b, y, p); };
  const Fn reference = [](TensorView<const float> x, const AnyTensorView& w,
                          const AnyTensorView& b, TensorView<float> y,
                          sgt::ThreadPool* p) { k::matmul_reference(x, w, b, y, p); };
  for (Fn f : {optimized, reference}) {
    std::string e = error_of([&] { f(xv, w_k65.view(), AnyTensorView(), yv, nullptr); });
    CHECK(e.find("[3, 64]") != std::string::npos);
    CHECK(e.find("[32, 65]") != std::string::npos);
    e = error_of([&] {
      f(xv, w.view(), AnyTensorView(), TensorView<float>(y.data(), {3, 31}), nullptr);
    });
    CHECK(e.find("[3, 31]") != std::string::npos);
    CHECK(e.find("expected [3, 32]") != std::string::npos);
    e = error_of([&] {
      f(xv, w.view(), AnyTensorView(), TensorView<float>(big.data(), {4, 32}), nullptr);
    });
    CHECK(e.find("[4, 32]") != std::string::npos);
    CHECK(e.find("[3, 64]") != std::string::npos);
    e = error_of([&] { f(xv, w.view(), b31.view(), yv, nullptr); });
    CHECK(e.find("bias [31]") != std::string::npos);
    CHECK(e.find("[32, 64]") != std::string::npos);
    e = error_of([&] {
      f(TensorView<const float>(x.data(), {3, 4, 16}), w.view(), AnyTensorView(), yv, nullptr);
    });
    CHECK(e.find("[3, 4, 16]") != std::string::npos);
    const AnyTensorView w_rank1(w.view().data(), DType::BF16, sgt::Shape{2048, 0, 0, 0}, 1);
    e = error_of([&] { f(xv, w_rank1, AnyTensorView(), yv, nullptr); });
    CHECK(e.find("[2048]") != std::string::npos);
    const AnyTensorView w_null(nullptr, DType::F32, sgt::Shape{32, 64, 0, 0}, 2);
    CHECK(error_of([&] { f(xv, w_null, AnyTensorView(), yv, nullptr); }).find("no data") !=
          std::string::npos);
    // y overlapping x would read outputs as inputs.
    e = error_of([&] {
      f(TensorView<const float>(big.data(), {3, 64}), w.view(), AnyTensorView(),
        TensorView<float>(big.data() + 100, {3, 32}), nullptr);
    });
    CHECK(e.find("overlaps") != std::string::npos);
  }
}

}  // namespace test_kernels_matmul
