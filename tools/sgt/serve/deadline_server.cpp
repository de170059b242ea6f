#include "deadline_server.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sgt/serve/api_error.hpp>

namespace sgt_cli::serve {

namespace deadline_server_detail {

using Clock = std::chrono::steady_clock;

// Rounded up: a wait cut at a deadline must not end before it.
int millis(Clock::duration d) {
  return static_cast<int>(std::max<long long>(
      0, std::chrono::ceil<std::chrono::milliseconds>(d).count()));
}

bool wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int r;
  do r = ::poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  return r > 0;
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  const int r = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                     : getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (r != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  }
  ip = text;
}

// One connection's socket as httplib's Stream, buffered for reads (httplib reads the request line
// and headers a byte at a time). While a request is being read, every wait for input is cut at
// the request's deadline.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, Clock::duration read_timeout, Clock::duration write_timeout)
      : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout) {}

  void start_request(Clock::time_point deadline) {
    deadline_ = deadline;
    reading_ = true;
    expired_ = false;
    written_ = 0;
  }
  void end_request_read() { reading_ = false; }
  bool reading() const { return reading_; }
  bool expired() const { return expired_; }
  std::size_t written() const { return written_; }
  bool has_buffered_input() const { return pos_ < len_; }

  bool is_readable() const override {
    if (pos_ < len_) return true;
    Clock::duration wait = read_timeout_;
    if (reading_) {
      const Clock::duration left = deadline_ - Clock::now();
      if (left <= Clock::duration::zero()) return (expired_ = true, false);
      wait = std::min(wait, left);
    }
    if (wait_for(fd_, POLLIN, std::max(1, millis(wait)))) return true;
    if (reading_ && Clock::now() >= deadline_) expired_ = true;
    return false;
  }
  bool is_writable() const override { return wait_for(fd_, POLLOUT, millis(write_timeout_)); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == len_) {
      if (!is_readable()) return -1;
      if (size >= sizeof buffer_) return receive(ptr, size);
      const ssize_t n = receive(buffer_, sizeof buffer_);
      if (n <= 0) return n;
      pos_ = 0;
      len_ = static_cast<std::size_t>(n);
    }
    const std::size_t n = std::min(size, len_ - pos_);
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0) written_ += static_cast<std::size_t>(n);
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  ssize_t receive(char* ptr, std::size_t size) {
    ssize_t n;
    do n = ::recv(fd_, ptr, size, 0);
    while (n < 0 && errno == EINTR);
    return n;
  }

  int fd_;
  Clock::duration read_timeout_, write_timeout_;
  Clock::time_point deadline_{};
  bool reading_ = false;
  mutable bool expired_ = false;
  std::size_t written_ = 0;
  char buffer_[4096];
  std::size_t pos_ = 0, len_ = 0;
};

// The connection the worker thread is serving: handlers run on the thread that reads their
// request, so this is how RequestBody learns about the deadline without httplib knowing of it.
thread_local ConnectionStream* t_connection = nullptr;

template <class Seconds>
Clock::duration seconds(Seconds s, Seconds us = 0) {
  return std::chrono::seconds(s) + std::chrono::microseconds(us);
}

}  // namespace deadline_server_detail

using namespace deadline_server_detail;

DeadlineServer::DeadlineServer(double request_read_timeout_s)
    : request_read_timeout_s_(request_read_timeout_s) {}

void DeadlineServer::request_read_done() {
  if (t_connection) t_connection->end_request_read();
}

bool DeadlineServer::request_read_expired() { return t_connection && t_connection->expired(); }

bool DeadlineServer::process_and_close_socket(socket_t sock) {
  ConnectionStream stream(sock, seconds(read_timeout_sec_, read_timeout_usec_),
                          seconds(write_timeout_sec_, write_timeout_usec_));
  const auto deadline = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(request_read_timeout_s_));
  bool ok = false;
  for (std::size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
    // The next request's first byte, for at most the keep-alive time; a stopping server ends the
    // wait within 100 ms.
    const auto idle_until = Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
    bool ready = stream.has_buffered_input();
    while (!ready && svr_sock_ != INVALID_SOCKET && Clock::now() < idle_until)
      ready = wait_for(sock, POLLIN, 100);
    if (!ready || svr_sock_ == INVALID_SOCKET) break;
    stream.start_request(Clock::now() + deadline);
    t_connection = &stream;
    bool closed = false;
    ok = process_request(stream, left == 1, closed, nullptr);
    t_connection = nullptr;
    if (stream.expired() && stream.written() == 0) {
      // The line or headers never arrived in time: no handler ran, so the 408 is sent from here.
      const std::string body = sgt::serve::error_body(sgt::serve::request_timeout(request_read_timeout_s_));
      const std::string response =
          "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      stream.write(response.data(), response.size());
      if (on_header_timeout) {
        std::string ip;
        int port = 0;
        stream.get_remote_ip_and_port(ip, port);
        on_header_timeout(ip);
      }
      ok = false;
    }
    if (!ok || closed || stream.expired()) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace sgt_cli::serve
