// The kernel-test harness: error metrics and checks shared by every kernel test. A test computes
// `got` (the optimized kernel) and `want` (a torch fixture or the kernel's _reference), then calls
// expect_matches(got, want, bound, describe) with a bound it derives (a number, or bound(i) per
// element), expect_bit_identical for exact results, and expect_thread_invariant(run) to compare
// run(nullptr) with run(pool) on pools of 1, 2 and 3 threads. require_* stop the test case.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include <sgt/core/error.hpp>
#include <sgt/core/tensor_view.hpp>
#include <sgt/core/thread_pool.hpp>

namespace sgt_test {

// A read-only run of floats: a vector, a tensor view or a pointer and a count.
struct Floats {
  const float* data = nullptr;
  std::size_t size = 0;

  Floats(const float* d, std::size_t n) : data(d), size(n) {}
  Floats(const std::vector<float>& v) : data(v.data()), size(v.size()) {}
  Floats(sgt::TensorView<const float> v) : data(v.data()), size(v.size()) {}
  Floats(sgt::TensorView<float> v) : data(v.data()), size(v.size()) {}
};

// ------------------------------------------------------------------------------------------------
// Metrics. All return double; a NaN (or inf - inf) difference counts as an infinite error.
// ------------------------------------------------------------------------------------------------

inline double abs_error(float a, float b) {
  const double d = std::fabs(static_cast<double>(a) - static_cast<double>(b));
  return std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
}

// Largest |x|.
inline double max_abs(Floats x) {
  double m = 0.0;
  for (std::size_t i = 0; i < x.size; ++i)
    m = std::max(m, std::fabs(static_cast<double>(x.data[i])));
  return m;
}

// Largest |a - b|; runs of different lengths are infinitely far apart.
inline double max_error(Floats a, Floats b) {
  if (a.size != b.size) return std::numeric_limits<double>::infinity();
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size; ++i) worst = std::max(worst, abs_error(a.data[i], b.data[i]));
  return worst;
}

// Largest |got - want| / max(|want|, floor): the error relative to the wanted value.
inline double max_relative_error(Floats got, Floats want, double floor = 1e-30) {
  if (got.size != want.size) return std::numeric_limits<double>::infinity();
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size; ++i)
    worst = std::max(worst, abs_error(got.data[i], want.data[i]) /
                                std::max(std::fabs(static_cast<double>(want.data[i])), floor));
  return worst;
}

// ggml's normalized mean squared error, mse(got, want) / mse(want, 0): comparable across ops and
// scales. 0 for two all-zero runs; infinite when want is all zero and got is not.
inline double nmse(Floats got, Floats want) {
  if (got.size != want.size) return std::numeric_limits<double>::infinity();
  double err = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < got.size; ++i) {
    const double e = abs_error(got.data[i], want.data[i]);
    err += e * e;
    norm += static_cast<double>(want.data[i]) * want.data[i];
  }
  if (err == 0.0) return 0.0;
  return norm == 0.0 ? std::numeric_limits<double>::infinity() : err / norm;
}

// Distance in units in the last place between two finite floats (across zero as well).
inline std::int64_t ulp_distance(float a, float b) {
  auto ordered = [](float f) {
    std::int32_t i;
    std::memcpy(&i, &f, 4);
    return i < 0 ? static_cast<std::int64_t>(std::numeric_limits<std::int32_t>::min()) - i
                 : static_cast<std::int64_t>(i);
  };
  return std::llabs(ordered(a) - ordered(b));
}

// Error budget of one output of an f32 dot product of length k plus a bias: the rounding error
// of a sum of k products grows like sqrt(k) (random walk) times the size of the products, so
// per_dot * (sqrt(k + 1) * max|x| * max|w| + max|b|). A single dropped or doubled term (about
// |x| * |w|) is far above it for any per_dot the tests use (1e-5 and below).
inline double dot_product_tolerance(double per_dot, std::size_t k, double max_x, double max_w,
                                    double max_b = 0.0) {
  return per_dot * (std::sqrt(static_cast<double>(k) + 1.0) * max_x * max_w + max_b);
}

// The sgt::Error message f throws, or "<no sgt::Error>".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "<no sgt::Error>";
}

// ------------------------------------------------------------------------------------------------
// Checks. `describe` is what names the case in a failure: a string, a callable returning one, or
// a callable taking std::ostream&. Callables run only on failure.
// ------------------------------------------------------------------------------------------------

namespace detail {

template <class Describe>
void print_description(std::ostream& os, const Describe& describe) {
  if constexpr (std::is_invocable_v<const Describe&, std::ostream&>) {
    describe(os);
  } else if constexpr (std::is_invocable_v<const Describe&>) {
    os << describe();
  } else {
    os << describe;
  }
}

template <class Bound>
double bound_at(const Bound& bound, std::size_t i) {
  if constexpr (std::is_invocable_v<const Bound&, std::size_t>) {
    return static_cast<double>(bound(i));
  } else {
    return static_cast<double>(bound);
  }
}

// One doctest assertion: CHECK or REQUIRE of `passed`, with the message only when it failed.
inline bool report(bool passed, bool require, const std::string& message) {
  if (require) {
    REQUIRE_MESSAGE(passed, message);
  } else {
    CHECK_MESSAGE(passed, message);
  }
  return passed;
}

template <class Describe>
std::string header(const char* check, const char* file, int line, const Describe& describe) {
  std::ostringstream os;
  os << check << " at " << file << ":" << line;
  std::ostringstream d;
  print_description(d, describe);
  if (!d.str().empty()) os << " [" << d.str() << "]";
  os << ": ";
  return os.str();
}

template <class Bound, class Describe>
bool matches(Floats got, Floats want, const Bound& bound, const Describe& describe, bool require,
             const char* file, int line) {
  std::size_t violations = 0, worst = 0;
  double worst_ratio = -1.0;
  if (got.size == want.size) {
    for (std::size_t i = 0; i < got.size; ++i) {
      const double e = abs_error(got.data[i], want.data[i]), b = bound_at(bound, i);
      if (e <= b) continue;
      ++violations;
      const double ratio = b > 0.0 ? e / b : std::numeric_limits<double>::infinity();
      if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
  }
  const bool within_bound = got.size == want.size && violations == 0;
  if (within_bound) return report(true, require, "");
  std::ostringstream os;
  os << header(require ? "require_matches" : "expect_matches", file, line, describe)
     << std::setprecision(9);
  if (got.size != want.size) {
    os << "got " << got.size << " elements, want " << want.size;
  } else {
    os << violations << " of " << got.size << " elements out of bound; worst [" << worst
       << "]: got " << got.data[worst] << ", want " << want.data[worst] << ", error "
       << abs_error(got.data[worst], want.data[worst]) << " > bound " << bound_at(bound, worst)
       << "; max_error " << max_error(got, want) << ", nmse " << nmse(got, want);
  }
  return report(false, require, os.str());
}

template <class Describe>
bool bit_identical(Floats a, Floats b, const Describe& describe, bool require, const char* file,
                   int line) {
  const bool same_size = a.size == b.size;
  const bool identical =
      same_size && (a.size == 0 || std::memcmp(a.data, b.data, a.size * sizeof(float)) == 0);
  if (identical) return report(true, require, "");
  std::ostringstream os;
  os << header(require ? "require_bit_identical" : "expect_bit_identical", file, line, describe)
     << std::setprecision(9);
  if (!same_size) {
    os << a.size << " elements vs " << b.size;
  } else {
    std::size_t first = a.size, differing = 0;
    for (std::size_t i = 0; i < a.size; ++i) {
      if (std::memcmp(a.data + i, b.data + i, sizeof(float)) == 0) continue;
      if (differing++ == 0) first = i;
    }
    os << differing << " of " << a.size << " elements differ; first [" << first
       << "]: " << a.data[first] << " vs " << b.data[first] << " ("
       << ulp_distance(a.data[first], b.data[first]) << " ulp)";
  }
  return report(false, require, os.str());
}

}  // namespace detail

// |got[i] - want[i]| <= bound (a number, or bound(i) per element) for every i; one CHECK.
template <class Bound, class Describe = const char*>
bool expect_matches(Floats got, Floats want, const Bound& bound, const Describe& describe = "",
                    const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::matches(got, want, bound, describe, false, file, line);
}
template <class Bound, class Describe = const char*>
bool require_matches(Floats got, Floats want, const Bound& bound, const Describe& describe = "",
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::matches(got, want, bound, describe, true, file, line);
}

// a and b hold the same bits (memcmp); one CHECK.
template <class Describe = const char*>
bool expect_bit_identical(Floats a, Floats b, const Describe& describe = "",
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::bit_identical(a, b, describe, false, file, line);
}
template <class Describe = const char*>
bool require_bit_identical(Floats a, Floats b, const Describe& describe = "",
                           const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::bit_identical(a, b, describe, true, file, line);
}

// run(sgt::ThreadPool*) returns a std::vector<float> (or anything Floats takes that owns its
// data). The result with a null pool (the calling thread) is compared bit for bit with the result
// on a pool of each thread count; one CHECK per count.
template <class Run, class Describe = const char*>
bool expect_thread_invariant(Run&& run,
                             std::initializer_list<std::size_t> thread_counts = {1, 2, 3},
                             const Describe& describe = "", const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
  const auto serial = run(static_cast<sgt::ThreadPool*>(nullptr));
  bool all = true;
  for (std::size_t threads : thread_counts) {
    sgt::ThreadPool pool(threads);
    const auto got = run(&pool);
    const auto describe_threads = [&](std::ostream& os) {
      std::ostringstream d;
      detail::print_description(d, describe);
      os << d.str() << (d.str().empty() ? "" : "; ") << threads << " threads vs the calling thread";
    };
    all = detail::bit_identical(Floats(got), Floats(serial), describe_threads, false, file, line) &&
          all;
  }
  return all;
}

}  // namespace sgt_test
