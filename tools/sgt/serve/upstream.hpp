// The proxy's request to its upstream (vLLM, or `sgt serve --model`): a streamed Completions
// request run on a thread of its own, its text pieces handed over through a bounded queue, so
// that the handler can answer 502 / 504 before it commits to a status, relay pieces as they
// come, and cancel the upstream request (close its connection) when its own client goes away.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <httplib.h>

#include <sgt/serve/api_error.hpp>
#include <sgt/serve/sse_reader.hpp>

namespace sgt_cli::serve {

// "http://host:port[/prefix][/v1]" -> the client's base and the path prefix (without /v1).
struct UpstreamUrl {
  std::string base;    // "http://host:port"
  std::string prefix;  // "" or "/prefix"
  static UpstreamUrl parse(const std::string& url);
};

class UpstreamStream {
 public:
  UpstreamStream(const UpstreamUrl& url, std::string body, double timeout_s);
  ~UpstreamStream();
  UpstreamStream(const UpstreamStream&) = delete;
  UpstreamStream& operator=(const UpstreamStream&) = delete;

  // Waits until the upstream answered 200 and streams, or throws the ApiError the client gets
  // (502: unreachable or an error status, 504: nothing within the timeout).
  void wait_started();
  // The next piece; nullopt once the upstream's stream ended. Throws an ApiError when the upstream
  // fails mid-stream.
  std::optional<sgt::serve::CompletionPiece> next();
  // Closes the upstream connection at once, even while a read waits on it (its server sees the
  // client go away and stops generating).
  void cancel();

 private:
  void run(UpstreamUrl url, std::string body, double timeout_s);
  void push_error(sgt::serve::ApiError e);

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<sgt::serve::CompletionPiece> pieces_;
  std::optional<sgt::serve::ApiError> error_;
  bool started_ = false, ended_ = false, cancelled_ = false;
  httplib::Client* client_ = nullptr;  // while run() sends the request
  std::thread thread_;
};

// GET <upstream>/v1/models within `timeout_s`: the first model's id, or nullopt when unreachable.
std::optional<std::string> upstream_first_model(const UpstreamUrl& url, double timeout_s);

}  // namespace sgt_cli::serve
