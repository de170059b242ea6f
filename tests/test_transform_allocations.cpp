// A Transform call with a planned Workspace allocates nothing: every global operator new in this
// program is counted while a call runs.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <new>

#include <sgt/sgt.hpp>

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

// GCC cannot see that these replacements pair malloc with free on purpose.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed))
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (g_counting.load(std::memory_order_relaxed))
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t align = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(align, (n + align - 1) / align * align)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return operator new(n, a);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace {
long allocations_during(const std::function<void()>& f) {
  g_allocations = 0;
  g_counting = true;
  f();
  g_counting = false;
  return g_allocations.load();
}
}  // namespace

TEST_CASE(
    "a call with a planned workspace allocates nothing, for every noise source and kernel choice") {
  const auto root = std::filesystem::path(SGT_TEST_DATA_DIR) / "e2e";
  for (const char* name : {"llama_gqa_llama3", "qwen3_qk_norm", "mistral_sliding_window"}) {
    CAPTURE(name);
    const sgt::Transform model((root / name).string());
    const auto in = sgt::load_transform_input((root / name / "input.json").string());
    sgt::ThreadPool pool(2);
    std::vector<float> eps(in.batch * in.seq_len * model.hidden_size(), 0.25f);
    for (auto noise :
         {sgt::NoiseSource::Secure, sgt::NoiseSource::Torch, sgt::NoiseSource::Injected}) {
      for (auto algorithm : {sgt::AttentionAlgorithm::Flash}) {
        sgt::RunOptions o;
        o.pool = &pool;
        o.noise = noise;
        o.seed = 5;
        o.injected_noise = sgt::TensorView<const float>(eps.data(), {eps.size()});
        o.attention = algorithm;
        o.keep_intermediates = true;
        sgt::Workspace ws;
        sgt::TransformResult r;
        model.run(in, o, ws, r);  // plans
        CHECK(allocations_during([&] { model.run(in, o, ws, r); }) == 0);
      }
    }
  }
}
