// httplib::Server with a total deadline on reading each request. cpp-httplib bounds each read
// (set_read_timeout) but not their sum, so a client that drips a byte every few seconds would hold
// a worker for as long as the header and body limits allow. Here a request's line, headers and body
// must all arrive within `request_read_timeout_s` of its first byte: past it the next read fails,
// the client gets a 408 and the connection is closed. Writes (a long streamed answer) are not
// under the deadline; they keep the per-write timeout.
#pragma once

#include <functional>

#include <httplib.h>

namespace sgt_cli::serve {

class DeadlineServer : public httplib::Server {
 public:
  explicit DeadlineServer(double request_read_timeout_s);

  // The handler on this thread has read its whole request (the body, when there is one): the
  // deadline no longer applies to it.
  static void request_read_done();
  // Whether the request handled on this thread ran out of its read deadline.
  static bool request_read_expired();

  // Called (with the client's address) when a request's line or headers did not arrive in time;
  // the 408 is sent by the server itself, no handler ran.
  std::function<void(const std::string& remote)> on_header_timeout;

 private:
  // The per-connection loop of httplib::Server's, over a stream that knows the deadline.
  bool process_and_close_socket(socket_t sock) override;

  double request_read_timeout_s_;
};

}  // namespace sgt_cli::serve
