// libFuzzer harness for the output writers' input checks (io/vllm_request_writer.hpp,
// io/torch_pt_writer.hpp, io/sequence_rows.hpp). The input picks a dtype, a small shape, an
// attention mask and a model name (any bytes). Expected: the body is produced, or sgt::Error.
// A produced body must parse as JSON whose "model" is the name given, and the .pt bytes must end
// with a ZIP end record; anything else (crash, other exception, wrong name) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

#include "fuzz_support.hpp"

namespace fuzz_output_writers {

int one_input(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  const sgt::DType dtype = data[0] % 3 == 0   ? sgt::DType::F32
                           : data[0] % 3 == 1 ? sgt::DType::BF16
                                              : sgt::DType::F16;
  const std::size_t B = 1 + data[1] % 3, S = 1 + data[2] % 5, H = data[3] % 9;
  data += 4;
  size -= 4;
  std::vector<std::uint8_t> mask;
  for (std::size_t i = 0; i < B * S && i < size; ++i) mask.push_back(data[i] & 1);
  if (mask.size() != B * S) mask.clear();
  const std::size_t used = mask.size();
  const std::string name(reinterpret_cast<const char*>(data + used), size - used);

  std::vector<float> batch(B * S * H);
  for (std::size_t i = 0; i < batch.size(); ++i) batch[i] = float(i) * 0.37f - 3.0f;
  try {
    std::vector<sgt::EncodedTensor> sequences;
    for (const auto& row : sgt::real_token_rows(batch, B, S, H, mask))
      sequences.push_back(sgt::encode_tensor(dtype, {H ? row.size() / H : 0, H}, row.data()));
    const auto pt = sgt::torch_save_bytes(sequences, name.empty() ? "archive" : name);
    if (pt.size() < 22 || pt[pt.size() - 22] != 'P' || pt[pt.size() - 21] != 'K') std::abort();
    sgt::VllmCompletionsRequest request;
    request.model = name;
    request.max_tokens = 1 + size % 100;
    const std::string body = sgt::vllm_completions_body(request, sequences);
    const auto j = nlohmann::json::parse(body);
    if (j.at("model").get<std::string>() != name) std::abort();
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_output_writers", one_input);

}  // namespace fuzz_output_writers
