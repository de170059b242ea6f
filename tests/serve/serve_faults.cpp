// `sgt serve`'s faults on loopback, each against the proxy on the demo SGT model and an in-process
// upstream that streams one piece every 50 ms and records how each of its streams ended:
// - a client that disconnects mid-stream: the upstream sees its connection closed long before its
//   stream would end, and the proxy's only slot serves the next request;
// - SIGTERM with a streamed request in flight: it finishes whole, a new request gets 503, exit 0;
// - a request that drips in (headers, then body): 408 at --request-read-timeout, well before the
//   drip would have ended;
// - a chunked body over --max-body-bytes: 413 before the client could send it all;
// - twice --max-concurrent clients: the excess get 429 at once, the others their answers;
// - a body the server did not read (a 401 before the body, a GET with a body) holding a whole
//   request: never parsed as the connection's next request.
// Every wait is bounded; a server left running is killed when its test ends.
//
// Environment (tests/CMakeLists.txt sets it): SGT_BIN, SGT_ROOT, SGT_WORK.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "serve_support.hpp"

using json = nlohmann::json;
using namespace sgt_test_serve;

namespace {

// A Completions upstream that streams `max_tokens` pieces "a", one every `interval`, after waiting
// `first_delay` before its status; it records, per request, how many pieces it wrote and whether
// its stream ended whole or because its client (the proxy) went away.
struct DripUpstream {
  struct Stream {
    std::atomic<int> written{0};
    std::atomic<int> ended{0};  // 0: running, 1: whole, 2: client gone
  };
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mutex;
  std::vector<std::shared_ptr<Stream>> streams;

  explicit DripUpstream(std::chrono::milliseconds interval,
                        std::chrono::milliseconds first_delay = std::chrono::milliseconds(0)) {
    server.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"demo_base","object":"model"}]})",
                      "application/json");
    });
    server.Post("/v1/completions", [this, interval, first_delay](const httplib::Request& req,
                                                                 httplib::Response& res) {
      const int n = json::parse(req.body).value("max_tokens", 16);
      auto s = std::make_shared<Stream>();
      {
        std::lock_guard<std::mutex> lock(mutex);
        streams.push_back(s);
      }
      std::this_thread::sleep_for(first_delay);
      res.set_chunked_content_provider(
          "text/event-stream",
          [s, n, interval](std::size_t, httplib::DataSink& sink) {
            auto event = [&](const json& j) {
              const std::string e = "data: " + j.dump() + "\n\n";
              return sink.write(e.data(), e.size());
            };
            if (s->written < n) {
              if (!event({{"object", "text_completion"},
                          {"choices", {{{"index", 0}, {"text", "a"}, {"finish_reason", nullptr}}}}}))
                return false;
              ++s->written;
              std::this_thread::sleep_for(interval);
              return true;
            }
            event({{"object", "text_completion"},
                   {"choices", {{{"index", 0}, {"text", ""}, {"finish_reason", "length"}}}}});
            event({{"object", "text_completion"}, {"choices", json::array()},
                   {"usage", {{"prompt_tokens", 1}, {"completion_tokens", n}}}});
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          },
          [s](bool success) { s->ended = success ? 1 : 2; });
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~DripUpstream() {
    server.stop();
    thread.join();
  }
  std::shared_ptr<Stream> stream(std::size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    return i < streams.size() ? streams[i] : nullptr;
  }
  // Waits (at most `seconds`) for request i to arrive.
  std::shared_ptr<Stream> wait_stream(std::size_t i, double seconds) {
    for (int k = 0; k < seconds * 100; ++k) {
      if (auto s = stream(i)) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return nullptr;
  }
};

struct Fixture {
  std::string bin = env("SGT_BIN"), root = env("SGT_ROOT"), work = env("SGT_WORK");
  Fixture() { REQUIRE(std::system(("mkdir -p '" + work + "'").c_str()) == 0); }

  std::unique_ptr<Process> proxy(const std::string& name, int upstream_port,
                                 std::vector<std::string> extra) {
    std::vector<std::string> args{bin, "serve", root + "/examples/models/demo", "--upstream",
                                  "http://127.0.0.1:" + std::to_string(upstream_port),
                                  "--upstream-model", "demo_base", "--port", "0", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(args, work + "/" + name + ".out", work + "/" + name + ".err");
  }
  json chat(int max_tokens, bool stream) const {
    return {{"messages", chat_messages(root)}, {"max_tokens", max_tokens}, {"stream", stream}};
  }
};

// A TCP connection to 127.0.0.1:port for requests written by hand.
struct RawConnection {
  int fd = -1;
  explicit RawConnection(int port) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval t{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof t);
  }
  ~RawConnection() { close(fd); }
  bool send_all(const std::string& s) {
    std::size_t done = 0;
    while (done < s.size()) {
      const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  bool readable(int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
  }
  // Everything the server sends until it closes, waiting at most `seconds` in all.
  std::string read_all(double seconds) {
    std::string out;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    char buf[4096];
    while (std::chrono::steady_clock::now() < until && readable(100)) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
};

int count_pieces(const std::string& sse) {
  int n = 0;
  for (std::size_t p = 0; (p = sse.find("\"content\":\"a\"", p)) != std::string::npos; ++p) ++n;
  return n;
}

}  // namespace

TEST_CASE("a client that disconnects mid-stream cancels the upstream request and frees its slot") {
  Fixture f;
  DripUpstream up(std::chrono::milliseconds(50));
  auto proxy = f.proxy("disconnect", up.port, {"--max-concurrent", "1"});
  const int port = listening_port(*proxy);

  // 400 pieces take the upstream 20 s; the client leaves after 3.
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.set_header("Content-Type", "application/json");
  req.body = f.chat(400, true).dump();
  int received = 0;
  req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
    received += count_pieces(std::string(data, n));
    return received < 3;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  client.send(req, res, error);
  CHECK(received >= 3);

  // The proxy closes its upstream connection: the upstream's writes fail long before its 400th.
  const auto s = up.wait_stream(0, 10);
  REQUIRE(s);
  for (int i = 0; i < 1000 && s->ended == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s->ended == 2);
  CHECK(s->written < 400);

  // The only slot is free again: the next request is answered, not refused with 429.
  httplib::Client next("127.0.0.1", port);
  next.set_read_timeout(30, 0);
  int status = 0;
  for (int i = 0; i < 50; ++i) {
    const auto r = next.Post("/v1/chat/completions", f.chat(2, false).dump(), "application/json");
    REQUIRE(r);
    status = r->status;
    if (status != 429) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(status == 200);
  CHECK(read_file(proxy->err).find("streamed, client gone") != std::string::npos);
}

TEST_CASE("SIGTERM with a streamed request in flight: it finishes, new requests get 503, exit 0") {
  Fixture f;
  // The upstream holds its status for 1 s: SIGTERM arrives before the proxy's stream has begun.
  DripUpstream up(std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
  auto proxy = f.proxy("sigterm", up.port, {"--max-concurrent", "2"});
  const int port = listening_port(*proxy);

  std::string streamed;
  int streamed_status = 0;
  std::thread in_flight([&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    const auto r = c.Post("/v1/chat/completions", f.chat(40, true).dump(), "application/json");
    if (r) {
      streamed_status = r->status;
      streamed = r->body;
    }
  });
  REQUIRE(up.wait_stream(0, 20));
  kill(proxy->pid, SIGTERM);
  for (int i = 0; i < 200 && read_file(proxy->err).find("SIGTERM") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));

  httplib::Client late("127.0.0.1", port);
  late.set_read_timeout(30, 0);
  const auto refused = late.Post("/v1/chat/completions", f.chat(2, false).dump(), "application/json");
  in_flight.join();
  REQUIRE_MESSAGE(refused, "the proxy stopped listening before its requests in flight finished");
  CHECK(refused->status == 503);
  CHECK(json::parse(refused->body)["error"]["code"] == "shutting_down");

  CHECK(streamed_status == 200);
  CHECK(count_pieces(streamed) == 40);
  CHECK(streamed.find("data: [DONE]") != std::string::npos);
  CHECK(proxy->wait_exit(30) == 0);
  CHECK(read_file(proxy->err).find("sgt serve: stopped") != std::string::npos);
}

TEST_CASE("a request that drips in gets a 408 at --request-read-timeout") {
  Fixture f;
  DripUpstream up(std::chrono::milliseconds(1));
  auto proxy = f.proxy("drip", up.port, {"--request-read-timeout", "2"});
  const int port = listening_port(*proxy);

  // Each byte comes 0.5 s after the last, well within the 10 s allowed for one read; 16 bytes of
  // a header would take 8 s. The server must answer after about 2 s.
  SUBCASE("the headers drip") {
    RawConnection c(port);
    REQUIRE(c.send_all("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: "));
    int dripped = 0;
    while (dripped < 16 && !c.readable(500) && c.send_all("a")) ++dripped;
    CHECK(dripped < 16);
    const std::string response = c.read_all(5);
    CHECK(response.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(response.find("\"request_timeout\"") != std::string::npos);
  }
  SUBCASE("the body drips") {
    RawConnection c(port);
    REQUIRE(c.send_all("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Type: application/json\r\nContent-Length: 64\r\n\r\n"));
    int dripped = 0;
    while (dripped < 16 && !c.readable(500) && c.send_all(" ")) ++dripped;
    CHECK(dripped < 16);
    const std::string response = c.read_all(5);
    CHECK(response.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(response.find("\"request_timeout\"") != std::string::npos);
  }
  CHECK(read_file(proxy->err).find("status=408") != std::string::npos);
}

TEST_CASE("a body the server did not read is never parsed as a request (no smuggling)") {
  Fixture f;
  DripUpstream up(std::chrono::milliseconds(1));
  const std::string keys = f.work + "/smuggle_keys.txt";
  REQUIRE(std::system(("echo good-key > '" + keys + "'").c_str()) == 0);
  auto proxy = f.proxy("smuggle", up.port, {"--api-key-file", keys});
  const int port = listening_port(*proxy);

  // The body is a complete request with a valid key. Read as the connection's next request, it
  // would be answered (a second status line) and logged as a second request.
  const std::string smuggled =
      "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer good-key\r\n\r\n";
  auto send = [&](const std::string& head) {
    RawConnection c(port);
    REQUIRE(c.send_all(head + "Content-Length: " + std::to_string(smuggled.size()) +
                       "\r\n\r\n" + smuggled));
    return c.read_all(5);  // returns early when the server closes the connection
  };
  auto status_lines = [](const std::string& r) {
    int n = 0;
    for (std::size_t p = 0; (p = r.find("HTTP/1.1 ", p)) != std::string::npos; ++p) ++n;
    return n;
  };
  SUBCASE("a POST with a wrong key: 401 before its body is read") {
    const std::string r = send("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Authorization: Bearer wrong\r\nContent-Type: application/json\r\n");
    CHECK(r.rfind("HTTP/1.1 401", 0) == 0);
    CHECK(status_lines(r) == 1);
  }
  SUBCASE("a GET that carries a body") {
    const std::string r = send("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    CHECK(r.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(status_lines(r) == 1);
  }
  CHECK(read_file(proxy->err).find("GET /v1/models") == std::string::npos);
}

TEST_CASE("a chunked body over --max-body-bytes gets a 413 before it is all read") {
  Fixture f;
  DripUpstream up(std::chrono::milliseconds(1));
  auto proxy = f.proxy("chunked", up.port, {"--max-body-bytes", "65536"});
  const int port = listening_port(*proxy);

  // 64 MiB offered in 16 KiB chunks; the server must answer once it has passed 64 KiB, and the
  // client stops sending when the answer is there (or the connection is closed).
  RawConnection c(port);
  REQUIRE(c.send_all("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk = "4000\r\n" + std::string(16384, ' ') + "\r\n";
  std::size_t sent = 0;
  while (sent < (std::size_t{64} << 20) && !c.readable(0) && c.send_all(chunk)) sent += 16384;
  const std::string response = c.read_all(5);
  CHECK(sent < (std::size_t{8} << 20));
  CHECK(response.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(response.find("\"request_too_large\"") != std::string::npos);
}

TEST_CASE("twice --max-concurrent clients: the excess get 429 at once, the others their answers") {
  Fixture f;
  DripUpstream up(std::chrono::milliseconds(50));
  auto proxy = f.proxy("busy", up.port, {"--max-concurrent", "2"});
  const int port = listening_port(*proxy);

  std::vector<int> statuses(4, 0);
  auto ask = [&](int i) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    const auto r = c.Post("/v1/chat/completions", f.chat(20, false).dump(), "application/json");
    statuses[static_cast<std::size_t>(i)] = r ? r->status : -1;
    if (r && r->status == 429)
      CHECK(json::parse(r->body)["error"]["code"] == "server_busy");
  };
  std::thread first(ask, 0), second(ask, 1);
  REQUIRE(up.wait_stream(1, 20));  // both slots taken: the upstream streams two answers
  std::thread third(ask, 2), fourth(ask, 3);
  third.join();
  fourth.join();
  first.join();
  second.join();
  CHECK(statuses[0] == 200);
  CHECK(statuses[1] == 200);
  CHECK(statuses[2] == 429);
  CHECK(statuses[3] == 429);
}
