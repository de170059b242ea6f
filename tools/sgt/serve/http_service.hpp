// The HTTP shell both `sgt serve` modes share, on cpp-httplib: options, the request slots
// (--max-concurrent), reading a bounded body into a buffer that is wiped when the request ends,
// one log line per request (ids, sizes, timings; never a prompt), errors in OpenAI's shape, the
// Bearer check, and a listen loop that drains in-flight requests on SIGTERM.
#pragma once

#include <chrono>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <httplib.h>

#include "deadline_server.hpp"

#include <sgt/core/dtype.hpp>
#include <sgt/core/thread_pool.hpp>
#include <sgt/serve/api_error.hpp>
#include <sgt/serve/api_keys.hpp>

namespace sgt_cli::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8600;  // 0: any free port (printed when listening)
  sgt::serve::ApiKeys keys;
  std::size_t threads = 0;  // compute threads in all, 0: every core
  std::size_t max_concurrent = 4;
  std::size_t max_body_bytes = std::size_t{8} << 20;
  double upstream_timeout_s = 60;
  double read_timeout_s = 10;  // a client that sends nothing for this long is dropped
  double request_read_timeout_s = 30;  // a request's line, headers and body arrive within this
  sgt::DType output_dtype = sgt::DType::BF16;
  std::optional<std::uint64_t> noise_seed;  // proxy: torch-seeded noise (tests only)
  bool no_protection = false;  // proxy: noise mask all 0, clean embeddings upstream (tests only)
  std::string upstream, upstream_model;     // proxy
};

// --max-concurrent slots, each with the compute threads one request runs on. A request that finds
// every slot taken is refused at once with a 429 (never queued: a queue would hold the client's
// prompt in memory for an unbounded time).
class Slots {
 public:
  Slots(std::size_t count, std::size_t total_threads);

  struct Slot {
    Slots* owner;
    std::size_t index;
    sgt::ThreadPool& pool() const { return *owner->pools_[index]; }
    ~Slot();
  };
  // A free slot, released when the returned pointer is destroyed; 429 when none is free.
  std::shared_ptr<Slot> acquire();
  std::size_t count() const noexcept { return pools_.size(); }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<sgt::ThreadPool>> pools_;
  std::vector<bool> busy_;
};

// What one request's log line says besides its id, path, status, sizes and time.
struct RequestStats {
  std::size_t prompt_tokens = 0, completion_tokens = 0, protected_tokens = 0;
  double transform_ms = 0;
  bool streamed = false;  // the handler set a content provider that logs when it ends
  // Counts the request as in flight (SIGTERM waits for it) while any copy of these stats lives:
  // a streamed handler's copy, kept by its content provider, holds it until the stream ends.
  std::shared_ptr<const void> in_flight;
};

// SIGTERM and SIGINT go to Service::run's watcher thread only: called first thing, before any
// thread starts (the compute pools, httplib's workers), which then inherit the mask.
void block_termination_signals();

// The request's body, read through httplib's content reader so that nothing else buffers it:
// refused with a 413 from Content-Length before any byte is read, or as soon as a chunked body
// passes the limit; a 408 when it does not arrive by the request's read deadline. Wiped when the
// request ends.
class RequestBody {
 public:
  RequestBody() = default;
  RequestBody(const RequestBody&) = delete;
  RequestBody& operator=(const RequestBody&) = delete;
  ~RequestBody();
  void read(const httplib::Request& req, const httplib::ContentReader& reader, std::size_t limit,
            double deadline_s);
  const std::string& text() const noexcept { return text_; }

 private:
  std::string text_;
};

class Service {
 public:
  explicit Service(ServeOptions options);
  const ServeOptions& options() const noexcept { return options_; }
  httplib::Server& server() noexcept { return server_; }
  Slots& slots() noexcept { return slots_; }

  using Handler = std::function<void(const httplib::Request&, httplib::Response&, RequestBody&,
                                     RequestStats&)>;
  // POST `path`: the body read (bounded), `handler` run, every exception turned into an OpenAI
  // error response, one log line written.
  void post(const std::string& path, Handler handler);
  void get(const std::string& path, Handler handler);

  // Binds, prints "sgt serve: listening on http://HOST:PORT" on stderr, serves until SIGTERM or
  // SIGINT, then answers new requests 503 until the requests in flight have finished (a second
  // signal does not wait), stops and returns the exit status.
  int run(const std::string& what);

  static void send_error(httplib::Response& res, const sgt::serve::ApiError& e);
  // One line on stderr: never a prompt, a token id or an answer.
  void log(std::uint64_t id, const httplib::Request& req, int status, std::size_t bytes_out,
           const RequestStats& stats, double ms, const char* note = "");
  // The log line of a streamed answer, written when httplib releases the stream (success: the
  // client read it all). The request and stats are shared with the stream's writer.
  std::function<void(bool)> stream_end_logger(std::uint64_t id,
                                              std::shared_ptr<const httplib::Request> request,
                                              std::shared_ptr<const RequestStats> stats,
                                              std::chrono::steady_clock::time_point t0);

  bool draining() const noexcept { return draining_.load(); }

 private:
  void route(const std::string& method, const std::string& path, Handler handler);

  ServeOptions options_;
  DeadlineServer server_;
  Slots slots_;
  std::atomic<std::uint64_t> next_id_{1};
  std::shared_ptr<std::atomic<std::size_t>> in_flight_ = std::make_shared<std::atomic<std::size_t>>(0);
  std::atomic<bool> draining_{false};
  std::mutex log_mutex_;
};

}  // namespace sgt_cli::serve
