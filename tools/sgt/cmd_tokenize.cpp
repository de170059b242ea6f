// `sgt tokenize MODEL_DIR (--text T | --chat CHAT.json)`: the request text or a chat would make,
// as IN.json plus each token's byte span (text builds only).
#include <cstdio>
#include <memory>
#include <string>

#include <sgt/pipeline/prompt_source.hpp>

#include "commands.hpp"
#include "flags.hpp"
#include "prompt_source.hpp"

namespace sgt_cli {

namespace {
struct TokenizeArgs {
  std::string dir;
  PromptFlags prompt;
};
}  // namespace

Command add_tokenize_command(CLI::App& sgt) {
  CLI::App* app = sgt.add_subcommand("tokenize", "the ids and noise mask of text or a chat");
  app->allow_extras();
  auto args = std::make_shared<TokenizeArgs>();
  add_model_dir(*app, args->dir, "MODEL_DIR", "a directory with tokenizer.json");
  add_prompt_flags(*app, args->prompt);
  return {app, [args] {
            if (args->dir.empty()) throw UsageError("tokenize needs MODEL_DIR");
            check_prompt_flags(args->prompt, false, "tokenize");
            const auto e = sgt::encode_prompt(args->dir, prompt_source(args->prompt));
            std::printf("%s\n", sgt::tokenized_json(e).dump().c_str());
            return 0;
          }};
}

}  // namespace sgt_cli
