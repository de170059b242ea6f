// `sgt info MODEL_DIR`: the SGT model's config, tensors and what runs it here, as JSON.
#include <cstdio>
#include <memory>
#include <string>

#include <sgt/model/transform.hpp>
#include <sgt/model/transform_info.hpp>
#if defined(SGT_DISPATCH)
#include <sgt/dispatch/dispatch.hpp>
#endif

#include "commands.hpp"
#include "flags.hpp"
#include "text_front_end.hpp"

namespace sgt_cli {

namespace {

// The instruction sets this binary has and can run, with sgt::dispatch (null without).
nlohmann::ordered_json dispatch_info() {
#if defined(SGT_DISPATCH)
  return {{"compiled", sgt::dispatch::compiled_isas()},
          {"runnable", sgt::dispatch::runnable_isas()}};
#else
  return nullptr;
#endif
}

}  // namespace

Command add_info_command(CLI::App& sgt) {
  CLI::App* app = sgt.add_subcommand("info", "what an SGT model holds and what runs it here");
  app->allow_extras();
  auto dir = std::make_shared<std::string>();
  add_model_dir(*app, *dir, "MODEL_DIR", "the SGT model's directory");
  return {app, [dir] {
            if (dir->empty()) throw UsageError("info takes exactly one MODEL_DIR");
            const sgt::Transform model(*dir);
            const auto j = sgt::transform_info(model, dispatch_info(), tokenizer_info(*dir));
            std::printf("%s\n", j.dump(2).c_str());
            return 0;
          }};
}

}  // namespace sgt_cli
