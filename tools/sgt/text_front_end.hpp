// What the commands need from the text front end (sgt::text). Two implementations, one per build:
// text_front_end.cpp (SGT_TEXT, the default) and no_text_front_end.cpp, which takes IN.json only
// and says why for the rest; CMake picks one.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include <sgt/audit/report_json.hpp>
#include <sgt/io/request.hpp>

#include "flags.hpp"

namespace sgt_cli {

// The request: IN.json as it is, or text / a chat encoded with MODEL_DIR's tokenizer.
sgt::TransformInput load_request(const std::string& model_dir, const PromptFlags& p);

// The text of ids in MODEL_DIR's vocabulary, when it has a tokenizer.json (else an empty function).
sgt::TokenText token_text(const std::string& model_dir);

// What MODEL_DIR's tokenizer.json and tokenizer_config.json say (null when it has none).
nlohmann::ordered_json tokenizer_info(const std::string& model_dir);

}  // namespace sgt_cli
