// The prompt flags as the library's PromptSource (text builds only).
#pragma once

#include <sgt/pipeline/prompt_source.hpp>

#include "flags.hpp"

namespace sgt_cli {

sgt::PromptSource prompt_source(const PromptFlags& p);

}  // namespace sgt_cli
