#include "upstream.hpp"

#include <chrono>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <sgt/core/error.hpp>

namespace sgt_cli::serve {

using sgt::serve::ApiError;

UpstreamUrl UpstreamUrl::parse(const std::string& url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string::npos || url.compare(0, scheme, "http") != 0)
    throw sgt::Error("--upstream must be an http:// URL, got '" + url + "'");
  const std::size_t path = url.find('/', scheme + 3);
  UpstreamUrl u;
  u.base = url.substr(0, path);
  u.prefix = path == std::string::npos ? "" : url.substr(path);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  if (u.prefix.size() >= 3 && u.prefix.compare(u.prefix.size() - 3, 3, "/v1") == 0)
    u.prefix.resize(u.prefix.size() - 3);
  return u;
}

namespace upstream_detail {

void set_timeouts(httplib::Client& c, double timeout_s) {
  const auto s = static_cast<time_t>(timeout_s);
  const auto us = static_cast<time_t>((timeout_s - double(s)) * 1e6);
  c.set_connection_timeout(s, us);
  c.set_read_timeout(s, us);
  c.set_write_timeout(s, us);
}

}  // namespace upstream_detail

using namespace upstream_detail;

UpstreamStream::UpstreamStream(const UpstreamUrl& url, std::string body, double timeout_s)
    : thread_([this, url, b = std::move(body), timeout_s]() mutable {
        run(url, std::move(b), timeout_s);
      }) {}

UpstreamStream::~UpstreamStream() {
  cancel();
  thread_.join();
}

void UpstreamStream::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_ = true;
  if (client_) client_->stop();  // shuts the socket down: a blocked read returns now
  cv_.notify_all();
}

void UpstreamStream::push_error(ApiError e) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!error_) error_ = std::move(e);
  ended_ = true;
  cv_.notify_all();
}

void UpstreamStream::run(UpstreamUrl url, std::string body, double timeout_s) {
  constexpr std::size_t kMaxQueued = 4096, kMaxErrorBody = 64 * 1024;
  httplib::Client client(url.base);
  set_timeouts(client, timeout_s);
  client.set_keep_alive(false);
  struct Registration {
    UpstreamStream& self;
    Registration(UpstreamStream& s, httplib::Client& c) : self(s) {
      std::lock_guard<std::mutex> lock(self.mutex_);
      self.client_ = &c;
    }
    ~Registration() {
      std::lock_guard<std::mutex> lock(self.mutex_);
      self.client_ = nullptr;
    }
  } registration(*this, client);
  httplib::Request req;
  req.method = "POST";
  req.path = url.prefix + "/v1/completions";
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  req.body = std::move(body);
  int status = 0;
  std::string error_body;
  bool done = false;
  sgt::serve::SseReader sse([&](std::string_view data) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    sgt::serve::CompletionPiece piece = sgt::serve::parse_completion_piece(data);
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return cancelled_ || pieces_.size() < kMaxQueued; });
    pieces_.push_back(std::move(piece));
    cv_.notify_all();
  });
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    std::lock_guard<std::mutex> lock(mutex_);
    if (status == 200) started_ = true;
    cv_.notify_all();
    return !cancelled_;
  };
  std::optional<ApiError> failure;
  req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cancelled_) return false;
    }
    if (status != 200) {
      error_body.append(data, std::min(n, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
      return true;
    }
    try {
      sse.feed(std::string_view(data, n));
    } catch (const sgt::Error& e) {
      failure = sgt::serve::upstream_unreachable(e.what());
      return false;
    }
    return true;
  };
  const auto t0 = std::chrono::steady_clock::now();
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  const bool ok = client.send(req, res, error);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_) {
      ended_ = true;
      cv_.notify_all();
      return;
    }
  }
  if (failure) return push_error(*failure);
  if (!ok) {
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if ((error == httplib::Error::Read || error == httplib::Error::ConnectionTimeout) &&
        waited >= timeout_s * 0.9)
      return push_error(sgt::serve::upstream_timeout(timeout_s));
    return push_error(sgt::serve::upstream_unreachable(httplib::to_string(error)));
  }
  if (status != 200) {
    std::string message = "status " + std::to_string(status);
    const auto j = nlohmann::json::parse(error_body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object() &&
        j["error"].contains("message") && j["error"]["message"].is_string())
      message += ": " + j["error"]["message"].get<std::string>();
    return push_error(sgt::serve::upstream_unreachable(message));
  }
  if (!done) return push_error(sgt::serve::upstream_unreachable("the stream ended without [DONE]"));
  std::lock_guard<std::mutex> lock(mutex_);
  ended_ = true;
  cv_.notify_all();
}

void UpstreamStream::wait_started() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return started_ || ended_; });
  if (!started_ && error_) throw *error_;
}

std::optional<sgt::serve::CompletionPiece> UpstreamStream::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return !pieces_.empty() || ended_; });
  if (!pieces_.empty()) {
    sgt::serve::CompletionPiece p = std::move(pieces_.front());
    pieces_.pop_front();
    cv_.notify_all();
    return p;
  }
  if (error_) throw *error_;
  return std::nullopt;
}

std::optional<std::string> upstream_first_model(const UpstreamUrl& url, double timeout_s) {
  httplib::Client client(url.base);
  set_timeouts(client, timeout_s);
  const auto res = client.Get((url.prefix + "/v1/models").c_str());
  if (!res || res->status != 200) return std::nullopt;
  const auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].is_object() || !j["data"][0].contains("id") || !j["data"][0]["id"].is_string())
    return std::nullopt;
  return j["data"][0]["id"].get<std::string>();
}

}  // namespace sgt_cli::serve
