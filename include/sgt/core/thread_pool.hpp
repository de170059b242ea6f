// An explicit, caller-sized thread pool with a deterministic parallel_for.
//
// There is no global pool: whoever wants threads makes a ThreadPool of the size they chose and
// passes it down (a null pool means "run on the calling thread"). parallel_for cuts [0, n) into
// chunks of `grain` items whose boundaries depend only on n and grain -- never on the number of
// threads -- and hands whole chunks to threads. A kernel that reduces each output element inside
// one chunk in a fixed order therefore gives bit-identical results for 1, 2 or 64 threads.
//
// The calling thread works too, so ThreadPool(1) has no worker threads at all. One job runs at a
// time per pool; concurrent callers queue on a mutex. A parallel_for issued from inside a job (a
// nested one) runs serially on the thread that issued it, so kernels may call each other freely.
// The first exception thrown by a chunk is rethrown on the calling thread once all chunks stopped.
// After a job, workers poll for the next one for up to 200 microseconds before they block (see
// kSpin): an idle pool costs nothing beyond that.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "sgt/core/error.hpp"

namespace sgt {

class ThreadPool {
 public:
  // Starts one worker thread running `body`. The default is std::thread's constructor; a caller
  // may wrap `body` (to name the thread or pin it before the loop starts) -- or a test make a
  // start fail. It is called only while the pool is constructed, never on the parallel_for path.
  using ThreadStarter = std::function<std::thread(std::function<void()> body)>;

  // num_threads = 0 means one per hardware thread. If a worker cannot be started (the system is
  // out of threads or memory, or `start` throws or returns no thread), the workers already running
  // are stopped and joined and the constructor throws sgt::Error: a half-built pool never escapes
  // and never leaves a thread behind.
  explicit ThreadPool(std::size_t num_threads = 0, const ThreadStarter& start = {}) {
    if (num_threads == 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
    num_threads_ = num_threads;
    std::size_t i = 0;
    try {
      workers_.reserve(num_threads - 1);
      for (; i + 1 < num_threads; ++i) {
        std::function<void()> body = [this] { worker_loop(); };
        workers_.push_back(start ? start(std::move(body)) : std::thread(std::move(body)));
        if (!workers_.back().joinable()) {
          workers_.pop_back();
          throw Error("the thread starter returned no thread");
        }
      }
    } catch (const std::exception& e) {
      stop_and_join();
      throw Error("cannot start worker thread " + std::to_string(i + 1) + " of " +
                  std::to_string(num_threads - 1) + ": " + e.what());
    } catch (...) {
      stop_and_join();
      throw Error("cannot start worker thread " + std::to_string(i + 1) + " of " +
                  std::to_string(num_threads - 1));
    }
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() { stop_and_join(); }

  std::size_t num_threads() const noexcept { return num_threads_; }

  // Calls fn(begin, end) for every chunk [k * grain, min((k + 1) * grain, n)).
  template <class F>
  void parallel_for(std::size_t n, std::size_t grain, F&& fn) {
    if (n == 0) return;
    if (grain == 0) grain = 1;
    const std::size_t chunks = (n + grain - 1) / grain;
    if (chunks == 1 || workers_.empty() || in_job()) {
      for (std::size_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
      return;
    }
    std::lock_guard<std::mutex> submit(submit_mutex_);
    Job job;
    job.n = n;
    job.grain = grain;
    job.chunks = chunks;
    job.context = const_cast<void*>(static_cast<const void*>(&fn));
    job.run = [](void* ctx, std::size_t b, std::size_t e) {
      (*static_cast<std::remove_reference_t<F>*>(ctx))(b, e);
    };
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      ++generation_;
      published_.store(generation_, std::memory_order_release);
    }
    wake_.notify_all();
    work_on(job);
    // The workers still on a chunk usually finish within microseconds: poll before sleeping.
    spin_until([&] { return job.active_workers.load(std::memory_order_acquire) == 0; });
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return job.active_workers == 0; });
      job_ = nullptr;
    }
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    std::size_t n = 0, grain = 1, chunks = 0;
    void* context = nullptr;
    void (*run)(void*, std::size_t, std::size_t) = nullptr;
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> active_workers{0};  // changed under mutex_, polled without it
    std::exception_ptr error;                    // guarded by error_mutex
    std::mutex error_mutex;
  };

  void stop_and_join() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      stopping_published_.store(true, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  static bool& in_job() {
    thread_local bool flag = false;
    return flag;
  }

  static void work_on(Job& job) {
    const bool was_in_job = in_job();
    in_job() = true;
    for (;;) {
      const std::size_t c = job.next.fetch_add(1, std::memory_order_relaxed);
      if (c >= job.chunks) break;
      try {
        job.run(job.context, c * job.grain, std::min(job.n, (c + 1) * job.grain));
      } catch (...) {
        std::lock_guard<std::mutex> lock(job.error_mutex);
        if (!job.error) job.error = std::current_exception();
        job.next.store(job.chunks, std::memory_order_relaxed);  // stop handing out chunks
      }
    }
    in_job() = was_in_job;
  }

  // Why the pool spins before it sleeps. Kernels issue parallel_for calls a few microseconds
  // apart (a decode step or a 16-token transform makes dozens of calls of well under a
  // millisecond), but a thread blocked on a condition variable takes tens to hundreds of
  // microseconds to run again once notified -- longer on a virtual machine whose idle vCPU the host
  // has descheduled. A late worker finds the job done by the calling thread, so short jobs ran
  // on one thread: a 16-token transform on 2 threads took 20-30 ms between idle gaps instead of
  // 16 ms back to back (Zen 4 VM). So a worker polls for the next job, and the caller for the
  // workers' end, for up to kSpin before blocking. ONNX Runtime's and OpenMP's pools do the same.
  static constexpr std::chrono::microseconds kSpin{200};

  template <class Done>
  static void spin_until(Done&& done) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (unsigned i = 1; !done(); ++i)
      if (i % 64 == 0) {
        if (std::chrono::steady_clock::now() > until) return;
        std::this_thread::yield();
      }
  }

  void worker_loop() {
    std::size_t seen = 0;
    for (;;) {
      Job* job = nullptr;
      spin_until([&] {
        return published_.load(std::memory_order_acquire) != seen ||
               stopping_published_.load(std::memory_order_acquire);
      });
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || (job_ != nullptr && generation_ != seen); });
        if (stopping_) return;
        seen = generation_;
        job = job_;
        ++job->active_workers;
      }
      work_on(*job);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --job->active_workers;
      }
      done_.notify_all();
    }
  }

  std::size_t num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Job* job_ = nullptr;
  std::size_t generation_ = 0;
  bool stopping_ = false;
  // Copies of generation_ and stopping_ that spinning workers read without the mutex.
  std::atomic<std::size_t> published_{0};
  std::atomic<bool> stopping_published_{false};
};

// parallel_for on an optional pool: null runs every chunk on the calling thread, in order.
template <class F>
void parallel_for(ThreadPool* pool, std::size_t n, std::size_t grain, F&& fn) {
  if (pool) {
    pool->parallel_for(n, grain, std::forward<F>(fn));
    return;
  }
  if (grain == 0) grain = 1;
  for (std::size_t b = 0; b < n; b += grain) fn(b, std::min(n, b + grain));
}

}  // namespace sgt
