// The two servers `sgt serve` runs (tools/sgt/cmd_serve.cpp parses their flags).
#pragma once

#include <string>

#include "http_service.hpp"

namespace sgt_cli::serve {

// The privacy proxy: SGT_DIR's transform in front of options.upstream.
int run_proxy(const std::string& sgt_dir, ServeOptions options);

// The Completions server over BASE_DIR's causal LM, answering as `name`.
int run_model_server(const std::string& base_dir, const std::string& name, ServeOptions options);

}  // namespace sgt_cli::serve
