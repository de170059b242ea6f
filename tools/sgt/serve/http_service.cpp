#include "http_service.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include <pthread.h>

#include <sgt/core/error.hpp>
#include <sgt/core/secure_memory.hpp>

namespace sgt_cli::serve {

using sgt::serve::ApiError;

Slots::Slots(std::size_t count, std::size_t total_threads) {
  if (count == 0) count = 1;
  if (total_threads == 0) total_threads = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t per_slot = std::max<std::size_t>(1, total_threads / count);
  for (std::size_t i = 0; i < count; ++i)
    pools_.push_back(std::make_unique<sgt::ThreadPool>(per_slot));
  busy_.assign(count, false);
}

Slots::Slot::~Slot() {
  std::lock_guard<std::mutex> lock(owner->mutex_);
  owner->busy_[index] = false;
}

std::shared_ptr<Slots::Slot> Slots::acquire() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (std::size_t i = 0; i < busy_.size(); ++i)
    if (!busy_[i]) {
      busy_[i] = true;
      return std::shared_ptr<Slot>(new Slot{this, i});
    }
  throw sgt::serve::server_busy(busy_.size());
}

RequestBody::~RequestBody() { sgt::secure_wipe(text_.data(), text_.capacity()); }

void RequestBody::read(const httplib::Request& req, const httplib::ContentReader& reader,
                       std::size_t limit, double deadline_s) {
  if (req.has_header("Content-Length")) {
    const std::string v = req.get_header_value("Content-Length");
    const unsigned long long n = std::strtoull(v.c_str(), nullptr, 10);
    if (n > limit) throw sgt::serve::body_too_large(limit);
    text_.reserve(static_cast<std::size_t>(n));  // one buffer: no unwiped copies from growth
  }
  bool over = false;
  const bool complete = reader([&](const char* data, std::size_t n) {
    if (text_.size() + n > limit) {
      over = true;
      return false;
    }
    if (text_.size() + n > text_.capacity()) {
      // Grow by hand so that the old buffer is wiped before it is released.
      std::string bigger;
      bigger.reserve(std::max(text_.capacity() * 2, text_.size() + n));
      bigger.assign(text_);
      sgt::secure_wipe(text_.data(), text_.capacity());
      text_.swap(bigger);
    }
    text_.append(data, n);
    return true;
  });
  if (over) throw sgt::serve::body_too_large(limit);
  if (!complete) {
    if (DeadlineServer::request_read_expired()) throw sgt::serve::request_timeout(deadline_s);
    throw sgt::serve::body_incomplete();
  }
}

Service::Service(ServeOptions options)
    : options_(std::move(options)),
      server_(options_.request_read_timeout_s),
      slots_(options_.max_concurrent, options_.threads) {
  const std::size_t workers = options_.max_concurrent + 4;  // health checks and 429s stay served
  server_.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  server_.set_payload_max_length(options_.max_body_bytes);
  const auto read_s = static_cast<time_t>(options_.read_timeout_s);
  server_.set_read_timeout(read_s, 0);
  // One request per connection. httplib 0.11 leaves a body it did not read on the connection
  // (a 401 answered before the body, a GET that carries one), and the next request would be
  // parsed from it: a request smuggled past the key check, or an answer given to the wrong
  // client behind a shared front proxy. A new connection per request costs ~0.1 ms on loopback.
  server_.set_keep_alive_max_count(1);
  server_.on_header_timeout = [this](const std::string&) {
    httplib::Request unread;
    unread.method = unread.path = "-";
    log(next_id_++, unread, 408, 0, {}, options_.request_read_timeout_s * 1000,
        " refused: request line or headers not read in time");
  };
  server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/livez" || req.path == "/readyz") return httplib::Server::HandlerResponse::Unhandled;
    if (!options_.keys.accepts(req.get_header_value("Authorization"))) {
      send_error(res, sgt::serve::unauthorized());
      log(next_id_++, req, res.status, res.body.size(), {}, 0, " refused: no valid key");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // What httplib answers by itself (an unknown path, a body it refused) in OpenAI's shape too.
  server_.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (DeadlineServer::request_read_expired()) {  // httplib's 400 for headers it could not read
      send_error(res, sgt::serve::request_timeout(options_.request_read_timeout_s));
      res.set_header("Connection", "close");
      log(next_id_++, req, 408, res.body.size(), {}, options_.request_read_timeout_s * 1000,
          " refused: headers not read in time");
    } else if (res.status == 404)
      send_error(res, sgt::serve::not_found(req.method + " " + req.path));
    else if (res.status == 413)
      send_error(res, sgt::serve::body_too_large(options_.max_body_bytes));
    else if (res.status >= 400)
      send_error(res, ApiError(res.status, "invalid_request_error", "the request was refused"));
  });
}

void Service::send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(sgt::serve::error_body(e), "application/json");
}

std::function<void(bool)> Service::stream_end_logger(
    std::uint64_t id, std::shared_ptr<const httplib::Request> request,
    std::shared_ptr<const RequestStats> stats, std::chrono::steady_clock::time_point t0) {
  return [this, id, request, stats, t0](bool success) {
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    log(id, *request, 200, 0, *stats, ms, success ? " streamed" : " streamed, client gone");
  };
}

void Service::log(std::uint64_t id, const httplib::Request& req, int status, std::size_t bytes_out,
                  const RequestStats& s, double ms, const char* note) {
  std::lock_guard<std::mutex> lock(log_mutex_);
  std::fprintf(stderr,
               "sgt serve: req=%llu %s %s status=%d in=%zuB out=%zuB prompt_tokens=%zu "
               "protected_tokens=%zu completion_tokens=%zu transform_ms=%.1f total_ms=%.1f%s\n",
               static_cast<unsigned long long>(id), req.method.c_str(), req.path.c_str(), status,
               static_cast<std::size_t>(std::strtoull(
                   req.get_header_value("Content-Length").c_str(), nullptr, 10)),
               bytes_out, s.prompt_tokens, s.protected_tokens, s.completion_tokens, s.transform_ms,
               ms, note);
  std::fflush(stderr);
}

void Service::route(const std::string& method, const std::string& path, Handler handler) {
  auto run = [this, handler](const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader* reader) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t id = next_id_++;
    res.set_header("X-Request-Id", std::to_string(id));
    RequestStats stats;
    ++*in_flight_;
    stats.in_flight = std::shared_ptr<const void>(nullptr, [count = in_flight_](const void*) {
      --*count;
    });
    const char* note = "";
    try {
      if (draining_) throw sgt::serve::shutting_down();
      RequestBody body;
      if (reader) body.read(req, *reader, options_.max_body_bytes, options_.request_read_timeout_s);
      DeadlineServer::request_read_done();
      handler(req, res, body, stats);
    } catch (const ApiError& e) {
      send_error(res, e);
      // The rest of the request is not read: the connection cannot carry another one.
      if (e.status() == 413 || e.status() == 408 || e.code() == std::string("incomplete_body"))
        res.set_header("Connection", "close");
    } catch (const sgt::Error& e) {
      // The library refuses what the request asked for (a prompt longer than the model takes,
      // an id outside the vocabulary, a template error on the chat).
      send_error(res, ApiError(400, "invalid_request_error", e.what()));
    } catch (const std::exception& e) {
      send_error(res, sgt::serve::internal_error(e.what()));
      note = " internal error";
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    // A streamed response logs when its stream ends (the handler's provider does).
    if (!stats.streamed)
      log(id, req, res.status == -1 ? 200 : res.status, res.body.size(), stats, ms, note);
  };
  if (method == "POST")
    server_.Post(path, [run](const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& reader) { run(req, res, &reader); });
  else
    server_.Get(path, [run](const httplib::Request& req, httplib::Response& res) {
      run(req, res, nullptr);
    });
}

void Service::post(const std::string& path, Handler handler) { route("POST", path, handler); }
void Service::get(const std::string& path, Handler handler) { route("GET", path, handler); }

namespace http_service_detail {
sigset_t termination_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}
}  // namespace http_service_detail

using namespace http_service_detail;

void block_termination_signals() {
  const sigset_t signals = termination_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int Service::run(const std::string& what) {
  const sigset_t signals = termination_signals();

  int port = options_.port;
  if (port == 0) {
    port = server_.bind_to_any_port(options_.host);
    if (port < 0) throw sgt::Error("cannot listen on " + options_.host);
  } else if (!server_.bind_to_port(options_.host, port)) {
    throw sgt::Error("cannot listen on " + options_.host + ":" + std::to_string(port));
  }
  std::fprintf(stderr, "sgt serve: %s listening on http://%s:%d\n", what.c_str(),
               options_.host.c_str(), port);
  std::fflush(stderr);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    auto next_signal = [&](long wait_ns) {
      timespec wait{0, wait_ns};
      siginfo_t info;
      return sigtimedwait(&signals, &info, &wait);
    };
    int sig = 0;
    while (!done && sig != SIGTERM && sig != SIGINT) sig = next_signal(200 * 1000 * 1000);
    if (done) return;
    std::fprintf(stderr, "sgt serve: %s, finishing %zu requests in flight, refusing new ones\n",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", in_flight_->load());
    std::fflush(stderr);
    draining_ = true;
    // httplib's stop() ends a streamed response that has not begun writing, so the server stops
    // only once nothing is in flight; new requests meanwhile get a 503.
    while (in_flight_->load() > 0) {
      const int again = next_signal(50 * 1000 * 1000);
      if (again == SIGTERM || again == SIGINT) break;
    }
    server_.stop();
  });
  server_.listen_after_bind();  // returns once stopped, after the workers finished their requests
  done = true;
  watcher.join();
  std::fprintf(stderr, "sgt serve: stopped\n");
  return 0;
}

}  // namespace sgt_cli::serve
