// The body of a vLLM Completions API request that sends protected embeddings instead of text:
//
//   {"model": "NAME", "prompt_embeds": "<base64>", "max_tokens": N}
//
// followed, when the request sets them, by "temperature", "top_p", "seed", "stream" and
// "stream_options": {"include_usage": true} (what `sgt serve`'s proxy forwards of a chat request;
// nothing of the prompt's text goes in the body).
//
// with one base64 string per sequence ("prompt_embeds" is a list when there is more than one).
// Each string is standard base64 (io/base64.hpp) of the bytes `torch.save(tensor, io.BytesIO())`
// writes for a (T, H) tensor (io/torch_pt_writer.hpp): vLLM decodes it with
// `b64decode(..., validate=True)` and `torch.load(..., weights_only=True)`, checks that H is the
// model's hidden size and casts it to the model's dtype. No chat template is applied server-side:
// the sequence is the whole templated prompt. Ready for `curl --data @body.json`.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/io/atomic_file.hpp"
#include "sgt/io/base64.hpp"
#include "sgt/io/encoded_tensor.hpp"
#include "sgt/io/torch_pt_writer.hpp"

namespace sgt {

struct VllmCompletionsRequest {
  std::string model;  // the server's model name (its --served-model-name)
  std::uint64_t max_tokens = 16;
  std::optional<double> temperature, top_p;
  std::optional<std::uint64_t> seed;
  bool stream = false;
  bool include_usage = false;  // with stream: the last chunk carries the usage
};

namespace detail {

// `s` as a JSON string literal; refuses text that is not UTF-8 (a server would refuse the body).
inline std::string json_string_literal(const std::string& s, const char* what) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    // The length of a valid UTF-8 sequence starting with c (0: invalid lead byte).
    const std::size_t n = c < 0x80                       ? 1
                          : (c >> 5) == 0x6 && c >= 0xc2 ? 2
                          : (c >> 4) == 0xe              ? 3
                          : c >= 0xf0 && c <= 0xf4       ? 4
                                                         : 0;
    bool ok = n != 0 && i + n <= s.size();
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (std::size_t k = 1; ok && k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // No overlong 3/4-byte forms, no surrogates, nothing past U+10FFFF.
    if (ok && ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
               (n == 4 && (cp < 0x10000 || cp > 0x10ffff))))
      ok = false;
    if (!ok)
      throw Error(std::string(what) + " is not valid UTF-8 (byte " + std::to_string(i) + ")");
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  return out + "\"";
}

}  // namespace detail

// The request body for one (T, H) tensor per sequence.
inline std::string vllm_completions_body(const VllmCompletionsRequest& request,
                                         const std::vector<EncodedTensor>& sequences) {
  if (sequences.empty()) throw Error("a completions request needs at least one sequence");
  if (request.max_tokens == 0) throw Error("max_tokens must be at least 1").at_key("max_tokens");
  std::string body = "{\"model\": " + detail::json_string_literal(request.model, "the model name") +
                     ", \"prompt_embeds\": ";
  if (sequences.size() > 1) body += '[';
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    if (sequences[i].shape.size() != 2 || sequences[i].shape[0] == 0)
      throw Error("sequence " + std::to_string(i) +
                  ": prompt embeddings must be (T, H) with at least one token");
    const std::vector<unsigned char> pt = torch_save_bytes(sequences[i], "archive");
    if (i) body += ", ";
    body += '"' + base64_encode(pt.data(), pt.size()) + '"';
  }
  if (sequences.size() > 1) body += ']';
  body += ", \"max_tokens\": " + std::to_string(request.max_tokens);
  // Doubles with the 17 significant digits that read back as the same double.
  auto number = [](double x) {
    if (!std::isfinite(x)) throw Error("a sampling parameter is not finite");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return std::string(buf);
  };
  if (request.temperature) body += ", \"temperature\": " + number(*request.temperature);
  if (request.top_p) body += ", \"top_p\": " + number(*request.top_p);
  if (request.seed) body += ", \"seed\": " + std::to_string(*request.seed);
  if (request.stream) {
    body += ", \"stream\": true";
    if (request.include_usage) body += ", \"stream_options\": {\"include_usage\": true}";
  }
  body += "}\n";
  return body;
}

// Writes the body to `path`, never leaving a partial file there.
inline void write_vllm_completions_body(const std::string& path,
                                        const VllmCompletionsRequest& request,
                                        const std::vector<EncodedTensor>& sequences) {
  std::string body;
  try {
    body = vllm_completions_body(request, sequences);
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
  write_file_atomically(path, body);
}

}  // namespace sgt
