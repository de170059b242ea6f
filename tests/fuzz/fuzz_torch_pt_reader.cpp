// libFuzzer: the bytes of a torch.save'd tensor, as `sgt serve --model` reads a client's
// prompt_embeds (io/torch_pt_reader.hpp): the ZIP container, the restricted unpickler and the
// storage record. A tensor that reads must hold exactly its shape's elements. Any sgt::Error is a
// correct answer; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_support.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/torch_pt_reader.hpp"

namespace fuzz_torch_pt_reader {

int one_input(const std::uint8_t* data, std::size_t size) {
  sgt::TorchReadLimits limits;
  limits.max_elements = std::size_t{1} << 16;
  try {
    const sgt::EncodedTensor t = sgt::read_torch_tensor(data, size, limits);
    std::size_t numel = 1;
    for (const std::uint64_t d : t.shape) numel *= static_cast<std::size_t>(d);
    if (t.shape.size() > limits.max_rank || numel > limits.max_elements ||
        t.bytes.size() != numel * sgt::dtype_size(t.dtype))
      std::abort();  // the reader let through a tensor that is not what it says
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_torch_pt_reader", one_input);

}  // namespace fuzz_torch_pt_reader
