// The server protocol as data (include/sgt/serve/): request validation of chat and completions
// requests (every refusal a 400 naming the field), the error shape, response and SSE chunk
// formats, the upstream SSE reader, stop strings, and the upstream body (prompt_embeds only).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/io/base64.hpp>
#include <sgt/io/torch_pt_reader.hpp>
#include <sgt/io/torch_pt_writer.hpp>
#include <sgt/serve/api_error.hpp>
#include <sgt/serve/api_keys.hpp>
#include <sgt/serve/chat_request.hpp>
#include <sgt/serve/completion_request.hpp>
#include <sgt/serve/openai_responses.hpp>
#include <sgt/serve/sse_reader.hpp>
#include <sgt/serve/stop_strings.hpp>
#include <sgt/serve/wiped_json.hpp>

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_serve_protocol {

using sgt::serve::ApiError;
using json = nlohmann::json;

namespace {

// The ApiError a parse throws: status and param ("" for none).
template <class F>
std::pair<int, std::string> refusal(F&& parse) {
  try {
    parse();
  } catch (const ApiError& e) {
    return {e.status(), e.param().value_or("")};
  }
  return {0, "(accepted)"};
}

std::pair<int, std::string> chat_refusal(const std::string& body) {
  return refusal([&] { (void)sgt::serve::parse_chat_request(body); });
}
std::pair<int, std::string> completion_refusal(const std::string& body) {
  return refusal([&] { (void)sgt::serve::parse_completion_request(body); });
}

const std::string kHello = R"({"model":"m","messages":[{"role":"user","content":"Hello"}])";

std::string with(const std::string& extra) {  // kHello plus fields
  return kHello + "," + extra + "}";
}

}  // namespace

TEST_CASE("a chat request: the honoured fields parse into the library's types") {
  const auto r = sgt::serve::parse_chat_request(with(
      R"("max_completion_tokens":7,"temperature":0.5,"top_p":0.9,"seed":42,"stop":["\n\n","END"],)"
      R"("stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function",)"
      R"("function":{"name":"f","parameters":{}}}],"tool_choice":"auto","n":1,"logprobs":false,)"
      R"("user":"u","unknown_field":{"x":1})"));
  CHECK(r.model == "m");
  CHECK(r.chat.messages.size() == 1);
  CHECK(r.chat.tools.size() == 1);
  CHECK(r.max_tokens == 7);
  CHECK(*r.sampling.temperature == 0.5);
  CHECK(*r.sampling.top_p == 0.9);
  CHECK(*r.sampling.seed == 42);
  CHECK(r.stop == std::vector<std::string>{"\n\n", "END"});
  CHECK(r.stream.stream);
  CHECK(r.stream.include_usage);
  // Defaults: max_tokens 256, sampling left to the upstream, no stream.
  const auto d = sgt::serve::parse_chat_request(kHello + "}");
  CHECK(d.max_tokens == 256);
  CHECK(!d.sampling.temperature);
  CHECK(!d.stream.stream);
  CHECK(sgt::serve::parse_chat_request(with(R"("max_tokens":9)")).max_tokens == 9);
  // Text parts, and every role.
  CHECK(chat_refusal(R"({"messages":[{"role":"system","content":"s"},{"role":"user","content":)"
                     R"([{"type":"text","text":"a"}]},{"role":"assistant","content":null,)"
                     R"("tool_calls":[{"id":"1","type":"function","function":{"name":"f",)"
                     R"("arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","content":"r"}]})")
            .first == 0);
}

TEST_CASE("a chat request: each wrong or unsupported field is a 400 naming it") {
  using P = std::pair<int, std::string>;
  CHECK(chat_refusal("{") == P{400, ""});
  CHECK(chat_refusal(R"({"messages":[]})") == P{400, "messages"});
  CHECK(chat_refusal(R"({"model":"m"})") == P{400, "messages"});
  CHECK(chat_refusal(R"({"messages":[{"role":"wizard","content":"x"}]})") ==
        P{400, "messages[0].role"});
  CHECK(chat_refusal(R"({"messages":[{"role":"user","content":7}]})") ==
        P{400, "messages[0].content"});
  CHECK(chat_refusal(R"({"messages":[{"role":"user","content":[{"type":"image_url",)"
                     R"("image_url":{"url":"x"}}]}]})") == P{400, "messages[0].content[0].type"});
  CHECK(chat_refusal(with(R"("n":2)")) == P{400, "n"});
  CHECK(chat_refusal(with(R"("logprobs":true)")) == P{400, "logprobs"});
  CHECK(chat_refusal(with(R"("top_logprobs":2)")) == P{400, "top_logprobs"});
  CHECK(chat_refusal(with(R"("presence_penalty":0.5)")) == P{400, "presence_penalty"});
  CHECK(chat_refusal(with(R"("response_format":{"type":"json_object"})")) ==
        P{400, "response_format"});
  CHECK(chat_refusal(with(R"("tool_choice":"required")")) == P{400, "tool_choice"});
  CHECK(chat_refusal(with(R"("temperature":"hot")")) == P{400, "temperature"});
  CHECK(chat_refusal(with(R"("temperature":3)")) == P{400, "temperature"});
  CHECK(chat_refusal(with(R"("top_p":0)")) == P{400, "top_p"});
  CHECK(chat_refusal(with(R"("seed":-1)")) == P{400, "seed"});
  CHECK(chat_refusal(with(R"("max_tokens":0)")) == P{400, "max_tokens"});
  CHECK(chat_refusal(with(R"("max_tokens":3,"max_completion_tokens":4)")) ==
        P{400, "max_completion_tokens"});
  CHECK(chat_refusal(with(R"("stop":["a","b","c","d","e"])")) == P{400, "stop"});
  CHECK(chat_refusal(with(R"("stop":[""])")) == P{400, "stop"});
  CHECK(chat_refusal(with(R"("stream":"yes")")) == P{400, "stream"});
  CHECK(chat_refusal(with(R"("stream_options":{"include_usage":true})")) ==
        P{400, "stream_options"});
  CHECK(chat_refusal(with(R"("tools":{})")) == P{400, "tools"});
  // Repeated keys: the JSON front door refuses them.
  CHECK(chat_refusal(R"({"messages":[],"messages":[]})") == P{400, ""});
}

TEST_CASE("a parsed chat is wiped: every string of the tree, values and keys, long and short") {
  const std::string secret(100, 'S');  // on the heap, past any small-string buffer
  sgt::serve::ChatCompletionRequest r = sgt::serve::parse_chat_request(
      R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":")" + secret +
      R"("}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{")" + secret +
      R"(":{"type":"string"}}}}],"chat_template_kwargs":{"k":"short"}})");
  std::vector<const std::string*> strings;  // every string the tree holds, keys included
  std::vector<const sgt::serve::ChatJson*> pending{&r.chat.messages, &r.chat.tools,
                                                   &r.chat.extra_context};
  while (!pending.empty()) {
    const sgt::serve::ChatJson* v = pending.back();
    pending.pop_back();
    if (v->is_string()) strings.push_back(v->get_ptr<const std::string*>());
    for (auto it = v->begin(); v->is_object() && it != v->end(); ++it) {
      strings.push_back(&it.key());
      pending.push_back(&it.value());
    }
    if (v->is_array())
      for (const auto& item : *v) pending.push_back(&item);
  }
  std::size_t with_secret = 0;
  for (const std::string* s : strings) with_secret += *s == secret;
  REQUIRE(with_secret == 2);  // the text part and the tool's parameter name
  REQUIRE(strings.size() > 10);
  sgt::serve::wipe_chat_input(r.chat);
  for (const std::string* s : strings) {
    CAPTURE(*s);
    CHECK(*s == std::string(s->size(), '\0'));
  }
}

TEST_CASE("a completions request: prompt, ids or prompt_embeds, exactly one") {
  using P = std::pair<int, std::string>;
  auto r = sgt::serve::parse_completion_request(R"({"prompt":"Hi","max_tokens":3,"seed":1})");
  CHECK(*r.prompt_text == "Hi");
  CHECK(r.max_tokens == 3);
  r = sgt::serve::parse_completion_request(R"({"prompt":[[1,2,3]]})");
  CHECK(*r.prompt_ids == std::vector<std::int64_t>{1, 2, 3});
  CHECK(r.max_tokens == 16);
  r = sgt::serve::parse_completion_request(R"({"prompt_embeds":"QUJD"})");
  CHECK(*r.prompt_embeds == "QUJD");
  CHECK(completion_refusal(R"({"prompt":"a","prompt_embeds":"QUJD"})").second == "prompt_embeds");
  CHECK(completion_refusal(R"({"max_tokens":3})") == P{400, "prompt"});
  CHECK(completion_refusal(R"({"prompt":["a","b"]})") == P{400, "prompt"});
  CHECK(completion_refusal(R"({"prompt":[1,-2]})") == P{400, "prompt"});
  CHECK(completion_refusal(R"({"prompt":"a","stop":"x"})") == P{400, "stop"});
  CHECK(completion_refusal(R"({"prompt":"a","echo":true})") == P{400, "echo"});
  CHECK(completion_refusal(R"({"prompt":"a","best_of":2})") == P{400, "best_of"});
}

TEST_CASE("prompt_embeds: torch.save bytes in base64 decode to f32 rows; bad payloads are 400s") {
  const float v[6] = {1, 2, 3, 4, 5, 6};
  const auto pt = sgt::torch_save_bytes(sgt::encode_tensor(sgt::DType::BF16, {2, 3}, v));
  const std::string b64 = sgt::base64_encode(pt.data(), pt.size());
  const auto e = sgt::serve::decode_prompt_embeds(b64, 3, 16);
  CHECK(e.seq_len == 2);
  CHECK(std::vector<float>(e.values.begin(), e.values.end()) ==
        std::vector<float>(v, v + 6));
  auto bad = [&](const std::string& s, std::size_t hidden, std::size_t max_tokens) {
    return refusal([&] { (void)sgt::serve::decode_prompt_embeds(s, hidden, max_tokens); });
  };
  using P = std::pair<int, std::string>;
  CHECK(bad(b64, 4, 16) == P{400, "prompt_embeds"});  // another hidden size
  CHECK(bad(b64, 3, 1) == P{400, "prompt_embeds"});   // more rows than allowed
  CHECK(bad("not base64!", 3, 16) == P{400, "prompt_embeds"});
  CHECK(bad(sgt::base64_encode("abcd", 4), 3, 16) == P{400, "prompt_embeds"});
  const float nan[3] = {1, NAN, 2};
  const auto pn = sgt::torch_save_bytes(sgt::encode_tensor(sgt::DType::F32, {1, 3}, nan));
  CHECK(bad(sgt::base64_encode(pn.data(), pn.size()), 3, 16) == P{400, "prompt_embeds"});
}

TEST_CASE("errors have OpenAI's shape") {
  const json j = json::parse(sgt::serve::error_body(sgt::serve::invalid_request("top_p", "bad")));
  CHECK(j == json::parse(
                 R"({"error":{"message":"bad","type":"invalid_request_error","param":"top_p","code":null}})"));
  const json u = json::parse(sgt::serve::error_body(sgt::serve::unauthorized()));
  CHECK(u["error"]["param"].is_null());
  CHECK(u["error"]["type"] == "authentication_error");
  CHECK(sgt::serve::body_too_large(10).status() == 413);
  CHECK(sgt::serve::upstream_unreachable("x").status() == 502);
  CHECK(sgt::serve::upstream_timeout(3).status() == 504);
  CHECK(sgt::serve::server_busy(2).status() == 429);
}

TEST_CASE("chat.completion and chunk formats") {
  const sgt::serve::ResponseIdentity who{"chatcmpl-1", 1700000000, "demo"};
  const json c = json::parse(sgt::serve::json_text(
      sgt::serve::chat_completion_json(who, "Hi there", "stop", {5, 2})));
  CHECK(c["object"] == "chat.completion");
  CHECK(c["id"] == "chatcmpl-1");
  CHECK(c["choices"][0]["message"] == json{{"role", "assistant"}, {"content", "Hi there"}});
  CHECK(c["choices"][0]["finish_reason"] == "stop");
  CHECK(c["usage"] == json{{"prompt_tokens", 5}, {"completion_tokens", 2}, {"total_tokens", 7}});
  const std::string event =
      sgt::serve::sse_event(sgt::serve::chat_chunk_json(who, {{"content", "Hi"}}, std::nullopt));
  REQUIRE(event.rfind("data: ", 0) == 0);
  REQUIRE(event.size() > 8);
  CHECK(event.substr(event.size() - 2) == "\n\n");
  const json k = json::parse(event.substr(6));
  CHECK(k["object"] == "chat.completion.chunk");
  CHECK(k["choices"][0]["delta"]["content"] == "Hi");
  CHECK(k["choices"][0]["finish_reason"].is_null());
  const json u = sgt::serve::chat_chunk_json(who, json::object(), std::nullopt,
                                             sgt::serve::Usage{3, 4});
  CHECK(u["choices"].empty());
  CHECK(u["usage"]["total_tokens"] == 7);
  CHECK(std::string(sgt::serve::kSseDone) == "data: [DONE]\n\n");
  CHECK(sgt::serve::random_response_id("chatcmpl-").size() == 9 + 24);
}

TEST_CASE("the SSE reader cuts events however the bytes arrive") {
  const std::string stream =
      "data: {\"choices\":[{\"text\":\"He\",\"finish_reason\":null}]}\n\n"
      ": a comment\r\n"
      "data: {\"choices\":[{\"text\":\"llo\",\"finish_reason\":\"length\"}]}\r\n\r\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\n"
      "data: [DONE]\n\n";
  for (std::size_t step : {1u, 3u, 1000u}) {
    std::vector<std::string> events;
    sgt::serve::SseReader reader([&](std::string_view d) { events.emplace_back(d); });
    for (std::size_t i = 0; i < stream.size(); i += step) reader.feed(stream.substr(i, step));
    REQUIRE(events.size() == 4);
    CHECK(events[3] == "[DONE]");
    const auto a = sgt::serve::parse_completion_piece(events[0]);
    const auto b = sgt::serve::parse_completion_piece(events[1]);
    const auto u = sgt::serve::parse_completion_piece(events[2]);
    CHECK(a.text + b.text == "Hello");
    CHECK(!a.finish_reason);
    CHECK(*b.finish_reason == "length");
    CHECK(u.usage->completion_tokens == 2);
  }
  sgt::serve::SseReader bounded([](std::string_view) {}, 16);
  CHECK_THROWS_AS(bounded.feed(std::string(40, 'x')), sgt::Error);
  CHECK_THROWS_AS(sgt::serve::parse_completion_piece(R"({"error":{"message":"boom"}})"),
                  sgt::Error);
}

TEST_CASE("stop strings end the answer, even split across pieces, and are not shown") {
  sgt::serve::StopStrings s({"END", "\n\n"});
  std::string shown;
  for (const char* piece : {"Hel", "lo E", "N", "D and more"}) shown += s.feed(piece);
  CHECK(s.stopped());
  CHECK(shown == "Hello ");
  sgt::serve::StopStrings t({"xyz"});
  std::string all = t.feed("ab x");
  all += t.feed("y");
  CHECK(all == "ab ");  // "xy" is held back: it may start "xyz"
  all += t.finish();
  CHECK(all == "ab xy");
  CHECK(!t.stopped());
}

TEST_CASE("API keys: one per line, Bearer only, every key compared") {
  const auto keys = sgt::serve::ApiKeys::parse("# keys\n  sk-one \r\n\nsk-two\n");
  CHECK(keys.accepts("Bearer sk-one"));
  CHECK(keys.accepts("Bearer sk-two"));
  CHECK(!keys.accepts("Bearer sk-on"));
  CHECK(!keys.accepts("Bearer sk-one2"));
  CHECK(!keys.accepts("Basic sk-one"));
  CHECK(!keys.accepts(""));
  CHECK(sgt::serve::ApiKeys().accepts(""));  // no keys: open
  CHECK_THROWS_AS(sgt::serve::ApiKeys::parse("\n# none\n"), sgt::Error);
  CHECK(sgt::serve::constant_time_equals("abc", "abc"));
  CHECK(!sgt::serve::constant_time_equals("abc", "abd"));
  CHECK(!sgt::serve::constant_time_equals("abc", ""));
  CHECK(!sgt::serve::constant_time_equals("", "a"));
  CHECK(sgt::serve::constant_time_equals("", ""));
}

}  // namespace test_serve_protocol
