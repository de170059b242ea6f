// `sgt serve` end to end on loopback: the proxy on the demo SGT model in front of `sgt serve
// --model` on the demo base model, through a recording relay that keeps what the upstream
// receives. Checked: the answers (plain and streamed) equal `sgt generate --protect` with the same
// noise seed; /v1/stainedglass's fields, its transformed embeddings being exactly what went
// upstream; the error paths (401, 400 naming the field, 413, 429, 502, 504); privacy (the
// upstream gets prompt_embeds and sampling fields only, and no log line holds the prompt's text or
// ids); SIGTERM ends a server cleanly.
//
// Environment (tests/CMakeLists.txt sets it): SGT_BIN (the sgt binary), SGT_ROOT (the repository),
// SGT_WORK (a scratch folder).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <sgt/io/base64.hpp>
#include <sgt/io/torch_pt_reader.hpp>

#include "serve_support.hpp"

using json = nlohmann::json;

namespace {

using namespace sgt_test_serve;

// An in-process upstream: records every completions body, and relays it to `target` (when
// target_port > 0), or stalls (when stall_seconds > 0), or answers 500.
struct Relay {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mutex;
  std::vector<std::string> bodies;

  Relay(int target_port, int stall_seconds) {
    server.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"demo_base","object":"model"}]})",
                      "application/json");
    });
    server.Post("/v1/completions", [this, target_port, stall_seconds](const httplib::Request& req,
                                                                      httplib::Response& res) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        bodies.push_back(req.body);
      }
      if (stall_seconds > 0) {
        std::this_thread::sleep_for(std::chrono::seconds(stall_seconds));
        res.status = 500;
        return;
      }
      httplib::Client c("127.0.0.1", target_port);
      c.set_read_timeout(120, 0);
      const auto r = c.Post("/v1/completions", req.body, "application/json");
      if (!r) {
        res.status = 500;
        return;
      }
      res.status = r->status;
      res.set_content(r->body, r->get_header_value("Content-Type").c_str());
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~Relay() {
    server.stop();
    thread.join();
  }
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mutex);
    return bodies;
  }
};

// `sgt generate --protect` for the same chat and noise seed: its answer and new token count.
json reference_answer(const std::string& bin, const std::string& root, const std::string& work,
                      const std::vector<std::string>& extra) {
  std::vector<std::string> args{bin,         "generate",
                                root + "/examples/models/demo_base",
                                "--chat",    root + "/examples/chat.json",
                                "--protect", root + "/examples/models/demo",
                                "--noise-seed", "7",
                                "--max-new-tokens", "12",
                                "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  Process p(args, work + "/generate.out", work + "/generate.err");
  REQUIRE(p.wait_exit(120) == 0);
  return json::parse(read_file(work + "/generate.out"));
}

std::string streamed_content(const std::string& sse, json* usage, std::string* finish) {
  std::string content;
  std::size_t pos = 0;
  bool done = false;
  while ((pos = sse.find("data: ", pos)) != std::string::npos) {
    const std::size_t end = sse.find("\n\n", pos);
    const std::string data = sse.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json j = json::parse(data);
    CHECK(j["object"] == "chat.completion.chunk");
    if (j["choices"].empty()) {
      *usage = j["usage"];
      continue;
    }
    const json& c = j["choices"][0];
    if (c["delta"].contains("content")) content += c["delta"]["content"].get<std::string>();
    if (!c["finish_reason"].is_null()) *finish = c["finish_reason"];
  }
  CHECK(done);
  return content;
}

}  // namespace

TEST_CASE("sgt serve: the proxy in front of sgt serve --model, on loopback") {
  const std::string bin = env("SGT_BIN"), root = env("SGT_ROOT"), work = env("SGT_WORK");
  REQUIRE(std::system(("rm -rf '" + work + "' && mkdir -p '" + work + "'").c_str()) == 0);
  {
    std::ofstream(work + "/keys.txt") << "sk-test-key\n";
  }
  const std::string key = "Bearer sk-test-key";

  Process model({bin, "serve", "--model", root + "/examples/models/demo_base", "--port", "0",
                 "--threads", "2", "--max-concurrent", "2"},
                work + "/model.out", work + "/model.err");
  const int model_port = listening_port(model);
  Relay relay(model_port, 0);
  Process proxy({bin, "serve", root + "/examples/models/demo", "--upstream",
                 "http://127.0.0.1:" + std::to_string(relay.port), "--port", "0", "--seed", "7",
                 "--output-dtype", "f32", "--api-key-file", work + "/keys.txt", "--threads", "2",
                 "--max-concurrent", "2", "--max-body-bytes", "65536"},
                work + "/proxy.out", work + "/proxy.err");
  const int proxy_port = listening_port(proxy);
  httplib::Client client("127.0.0.1", proxy_port);
  client.set_read_timeout(120, 0);
  const httplib::Headers auth{{"Authorization", key}};
  const json messages = chat_messages(root);

  SUBCASE("health, readiness and the model list") {
    CHECK(client.Get("/livez")->status == 200);
    CHECK(client.Get("/readyz")->status == 200);
    const auto m = client.Get("/v1/models", auth);
    REQUIRE(m->status == 200);
    CHECK(json::parse(m->body)["data"][0]["id"] == "demo_base");
  }

  SUBCASE("greedy answers, plain and streamed, equal sgt generate --protect") {
    const json expected = reference_answer(bin, root, work, {});
    json request{{"model", "demo_base"}, {"messages", messages}, {"max_tokens", 12},
                 {"temperature", 0}};
    const auto plain = client.Post("/v1/chat/completions", auth, request.dump(), "application/json");
    REQUIRE(plain);
    REQUIRE_MESSAGE(plain->status == 200, plain->body);
    const json answer = json::parse(plain->body);
    CHECK(answer["object"] == "chat.completion");
    CHECK(answer["choices"][0]["message"]["content"] == expected["answer"]);
    CHECK(answer["usage"]["completion_tokens"] == expected["new_ids"].size());
    CHECK(answer["usage"]["prompt_tokens"] == expected["prompt_ids"].size());
    CHECK(answer["choices"][0]["finish_reason"] == (expected["stop"] == "eos" ? "stop" : "length"));

    request["stream"] = true;
    request["stream_options"] = {{"include_usage", true}};
    const auto streamed =
        client.Post("/v1/chat/completions", auth, request.dump(), "application/json");
    REQUIRE(streamed->status == 200);
    CHECK(streamed->get_header_value("Content-Type").find("text/event-stream") == 0);
    json usage;
    std::string finish;
    CHECK(streamed_content(streamed->body, &usage, &finish) == expected["answer"]);
    CHECK(usage["completion_tokens"] == expected["new_ids"].size());
    CHECK(finish == answer["choices"][0]["finish_reason"]);

    // Privacy: the upstream got protected embeddings and sampling fields, nothing else.
    const auto bodies = relay.received();
    REQUIRE(bodies.size() == 2);
    const std::string user_text = messages[1]["content"];
    const std::string ids = expected["prompt_ids"].dump();
    for (const std::string& b : bodies) {
      const json j = json::parse(b);
      for (auto it = j.begin(); it != j.end(); ++it)
        CHECK_MESSAGE((it.key() == "model" || it.key() == "prompt_embeds" ||
                       it.key() == "max_tokens" || it.key() == "temperature" ||
                       it.key() == "top_p" || it.key() == "seed" ||
                       it.key() == "stream" || it.key() == "stream_options"),
                      "the upstream received " << it.key());
      CHECK(b.find(user_text.substr(0, 20)) == std::string::npos);
      CHECK(b.find(ids.substr(1, ids.size() / 2)) == std::string::npos);
      CHECK(b.find("Summarize") == std::string::npos);
    }
    // ... and no log line carries the prompt's text or ids.
    for (const std::string& log : {read_file(proxy.err), read_file(model.err)}) {
      CHECK(log.find("req=") != std::string::npos);
      CHECK(log.find("Summarize") == std::string::npos);
      CHECK(log.find("clinical") == std::string::npos);
      CHECK(log.find(ids.substr(1, 12)) == std::string::npos);
    }
  }

  SUBCASE("seeded sampling through the proxy equals sgt generate --protect --seed") {
    const json expected =
        reference_answer(bin, root, work, {"--temperature", "0.8", "--top-p", "0.9", "--seed", "5"});
    const json request{{"messages", messages}, {"max_tokens", 12}, {"temperature", 0.8},
                       {"top_p", 0.9}, {"seed", 5}};
    const auto r = client.Post("/v1/chat/completions", auth, request.dump(), "application/json");
    REQUIRE(r->status == 200);
    CHECK(json::parse(r->body)["choices"][0]["message"]["content"] == expected["answer"]);
  }

  SUBCASE("/v1/stainedglass: the fields, and the transformed embeddings are what went upstream") {
    const json chat{{"messages", messages}, {"max_tokens", 2}, {"temperature", 0}};
    REQUIRE(client.Post("/v1/chat/completions", auth, chat.dump(), "application/json")->status ==
            200);
    const json request{{"messages", messages},
                       {"return_plain_text_embeddings", true},
                       {"return_transformed_embeddings", true},
                       {"return_reconstructed_prompt", true},
                       {"return_obfuscation_score", true}};
    const auto r = client.Post("/v1/stainedglass", auth, request.dump(), "application/json");
    REQUIRE_MESSAGE(r->status == 200, r->body);
    const json v = json::parse(r->body);
    const std::size_t T = v["tokenized_plain_text"].size();
    CHECK(T > 10);
    CHECK(v["plain_text_embeddings"].size() == T);
    CHECK(v["plain_text_embeddings"][0].size() == 256);
    CHECK(v["transformed_embeddings"].size() == T);
    CHECK(v["reconstructed_prompt"].is_string());
    CHECK(v["obfuscation_score"].get<double>() >= 0.0);
    CHECK(v["obfuscation_score"].get<double>() <= 1.0);
    // The same noise seed: the embeddings the upstream received (f32) are these, exactly.
    const auto bodies = relay.received();
    REQUIRE(!bodies.empty());
    const std::string b64 = json::parse(bodies.back())["prompt_embeds"];
    const auto bytes = sgt::base64_decode(b64, 1 << 24);
    const sgt::EncodedTensor sent = sgt::read_torch_tensor(bytes.data(), bytes.size());
    REQUIRE(sent.shape == std::vector<std::uint64_t>{T, 256});
    std::vector<float> values(T * 256);
    std::memcpy(values.data(), sent.bytes.data(), sent.bytes.size());
    bool same = true;
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t h = 0; h < 256; ++h)
        same = same && v["transformed_embeddings"][t][h].get<float>() == values[t * 256 + h];
    CHECK(same);
    // Without the flags: only the token pieces.
    const auto bare = client.Post("/v1/stainedglass", auth, json{{"messages", messages}}.dump(),
                                  "application/json");
    CHECK(json::parse(bare->body).size() == 1);
  }

  SUBCASE("error paths: 401, 400 naming the field, 413, 404") {
    const json ok{{"messages", messages}, {"max_tokens", 2}};
    auto no_key = client.Post("/v1/chat/completions", ok.dump(), "application/json");
    CHECK(no_key->status == 401);
    CHECK(json::parse(no_key->body)["error"]["type"] == "authentication_error");
    const httplib::Headers wrong{{"Authorization", "Bearer sk-test-kez"}};
    CHECK(client.Post("/v1/chat/completions", wrong, ok.dump(), "application/json")->status == 401);
    json n2 = ok;
    n2["n"] = 2;
    auto r = client.Post("/v1/chat/completions", auth, n2.dump(), "application/json");
    CHECK(r->status == 400);
    CHECK(json::parse(r->body)["error"]["param"] == "n");
    r = client.Post("/v1/chat/completions", auth, "{\"messages\": [", "application/json");
    CHECK(r->status == 400);
    json wrong_type = ok;
    wrong_type["temperature"] = "warm";
    r = client.Post("/v1/chat/completions", auth, wrong_type.dump(), "application/json");
    CHECK(json::parse(r->body)["error"]["param"] == "temperature");
    json image = ok;
    image["messages"][1]["content"] = json::array({{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}});
    r = client.Post("/v1/chat/completions", auth, image.dump(), "application/json");
    CHECK(r->status == 400);
    CHECK(json::parse(r->body)["error"]["param"] == "messages[1].content[0].type");
    r = client.Post("/v1/chat/completions", auth, std::string(70000, ' '), "application/json");
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(json::parse(r->body)["error"]["code"] == "request_too_large");
    r = client.Get("/v1/nothing", auth);
    CHECK(r->status == 404);
    CHECK(json::parse(r->body).contains("error"));
  }

  SUBCASE("the model server: prompt as text, ids and prompt_embeds; its own 400s") {
    httplib::Client m("127.0.0.1", model_port);
    m.set_read_timeout(120, 0);
    auto r = m.Post("/v1/completions", R"({"prompt":"Hello","max_tokens":3,"temperature":0})",
                    "application/json");
    REQUIRE(r->status == 200);
    const json text = json::parse(r->body);
    CHECK(text["object"] == "text_completion");
    CHECK(text["usage"]["completion_tokens"].get<int>() >= 1);
    r = m.Post("/v1/completions", R"({"prompt":[1,2,3],"max_tokens":2,"temperature":0})",
               "application/json");
    CHECK(r->status == 200);
    r = m.Post("/v1/completions", R"({"prompt":[99999999],"max_tokens":2})", "application/json");
    CHECK(r->status == 400);
    r = m.Post("/v1/completions", R"({"prompt_embeds":"AAAA","max_tokens":2})", "application/json");
    CHECK(r->status == 400);
    CHECK(json::parse(r->body)["error"]["param"] == "prompt_embeds");
  }

  SUBCASE("upstream faults: 502 when it is down, 504 when it stalls, 429 past --max-concurrent") {
    // A port nobody listens on: bound by a socket that is closed again.
    int dead_port = 0;
    {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
      socklen_t len = sizeof a;
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
      dead_port = ntohs(a.sin_port);
      close(fd);
    }
    Process down({bin, "serve", root + "/examples/models/demo", "--upstream",
                  "http://127.0.0.1:" + std::to_string(dead_port), "--upstream-model", "x",
                  "--port", "0", "--threads", "1"},
                 work + "/down.out", work + "/down.err");
    httplib::Client d("127.0.0.1", listening_port(down));
    d.set_read_timeout(60, 0);
    const json ok{{"messages", messages}, {"max_tokens", 2}};
    auto r = d.Post("/v1/chat/completions", ok.dump(), "application/json");
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(json::parse(r->body)["error"]["code"] == "upstream_error");
    const auto ready = d.Get("/readyz");
    REQUIRE(ready);
    CHECK(ready->status == 503);

    Relay stall(0, 4);
    Process slow({bin, "serve", root + "/examples/models/demo", "--upstream",
                  "http://127.0.0.1:" + std::to_string(stall.port), "--upstream-timeout", "1",
                  "--port", "0", "--threads", "1", "--max-concurrent", "1"},
                 work + "/slow.out", work + "/slow.err");
    const int slow_port = listening_port(slow);
    std::atomic<int> first_status{0};
    std::thread first([&] {
      httplib::Client s("127.0.0.1", slow_port);
      s.set_read_timeout(60, 0);
      const auto res = s.Post("/v1/chat/completions", ok.dump(), "application/json");
      first_status = res ? res->status : -1;
    });
    // While the first request holds the only slot, a second is refused at once.
    for (int i = 0; i < 200 && stall.received().empty(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    httplib::Client s2("127.0.0.1", slow_port);
    s2.set_read_timeout(60, 0);
    r = s2.Post("/v1/chat/completions", ok.dump(), "application/json");
    REQUIRE(r);
    CHECK(r->status == 429);
    first.join();
    CHECK(first_status == 504);
  }

  SUBCASE("--no-protection: the clean chat's embeddings go upstream, the answer is sgt generate's") {
    Process clean({bin, "serve", root + "/examples/models/demo", "--upstream",
                   "http://127.0.0.1:" + std::to_string(relay.port), "--port", "0",
                   "--output-dtype", "f32", "--no-protection", "--threads", "1"},
                  work + "/clean.out", work + "/clean.err");
    httplib::Client c("127.0.0.1", listening_port(clean));
    c.set_read_timeout(120, 0);
    // sgt generate on the clean chat, without --protect.
    Process generate({bin, "generate", root + "/examples/models/demo_base", "--chat",
                      root + "/examples/chat.json", "--max-new-tokens", "12", "--json"},
                     work + "/generate_clean.out", work + "/generate_clean.err");
    REQUIRE(generate.wait_exit(120) == 0);
    const json expected = json::parse(read_file(work + "/generate_clean.out"));
    const json request{{"messages", messages}, {"max_tokens", 12}, {"temperature", 0}};
    const auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == 200, r->body);
    CHECK(json::parse(r->body)["choices"][0]["message"]["content"] == expected["answer"]);
    // What went upstream is the embedding table's rows for the chat, exactly.
    const auto v = c.Post("/v1/stainedglass",
                          json{{"messages", messages}, {"return_plain_text_embeddings", true}}.dump(),
                          "application/json");
    REQUIRE(v->status == 200);
    const json plain = json::parse(v->body)["plain_text_embeddings"];
    const auto bodies = relay.received();
    REQUIRE(bodies.size() == 1);
    const auto bytes =
        sgt::base64_decode(json::parse(bodies[0])["prompt_embeds"].get<std::string>(), 1 << 24);
    const sgt::EncodedTensor sent = sgt::read_torch_tensor(bytes.data(), bytes.size());
    REQUIRE(sent.shape == std::vector<std::uint64_t>{plain.size(), 256});
    std::vector<float> values(plain.size() * 256);
    std::memcpy(values.data(), sent.bytes.data(), sent.bytes.size());
    bool same = true;
    for (std::size_t t = 0; t < plain.size(); ++t)
      for (std::size_t h = 0; h < 256; ++h)
        same = same && plain[t][h].get<float>() == values[t * 256 + h];
    CHECK(same);
    CHECK(read_file(clean.err).find("--no-protection") != std::string::npos);
  }

  SUBCASE("SIGTERM: the servers stop cleanly") {
    kill(proxy.pid, SIGTERM);
    CHECK(proxy.wait_exit(30) == 0);
    kill(model.pid, SIGTERM);
    CHECK(model.wait_exit(30) == 0);
    CHECK(read_file(model.err).find("sgt serve: stopped") != std::string::npos);
  }
}
