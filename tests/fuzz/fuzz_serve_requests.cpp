// libFuzzer harness: the server's request parsers (serve/chat_request.hpp,
// serve/completion_request.hpp) on one input each, and prompt_embeds' decoder (base64 and the
// bounded torch.save reader, io/torch_pt_reader.hpp) on the input as base64 and as raw bytes.
// Only sgt::serve::ApiError and sgt::Error may escape.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/base64.hpp"
#include "sgt/io/torch_pt_reader.hpp"
#include "sgt/serve/api_error.hpp"
#include "sgt/serve/chat_request.hpp"
#include "sgt/serve/completion_request.hpp"
#include "sgt/serve/sse_reader.hpp"

namespace fuzz_serve_requests {

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)sgt::serve::parse_chat_request(text);
  } catch (const sgt::serve::ApiError&) {
  }
  try {
    (void)sgt::serve::parse_verification_request(text);
  } catch (const sgt::serve::ApiError&) {
  }
  try {
    const auto r = sgt::serve::parse_completion_request(text);
    if (r.prompt_embeds) (void)sgt::serve::decode_prompt_embeds(*r.prompt_embeds, 4, 64);
  } catch (const sgt::serve::ApiError&) {
  }
  try {
    sgt::TorchReadLimits limits;
    limits.max_elements = 1 << 16;
    (void)sgt::read_torch_tensor(data, size, limits);
  } catch (const sgt::Error&) {
  }
  try {
    (void)sgt::serve::decode_prompt_embeds(sgt::base64_encode(data, size), 4, 64);
  } catch (const sgt::serve::ApiError&) {
  }
  try {
    sgt::serve::SseReader sse([](std::string_view d) {
      try {
        (void)sgt::serve::parse_completion_piece(d);
      } catch (const sgt::Error&) {
      }
    }, 4096);
    sse.feed(text);
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_serve_requests", one_input);

}  // namespace fuzz_serve_requests
