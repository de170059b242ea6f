// The tool built without `sgt serve` (SGT_SERVE=OFF, or without the text front end): the command
// exists, to say why it cannot run.
#include <sgt/core/error.hpp>

#include "commands.hpp"

namespace sgt_cli {

Command add_serve_command(CLI::App& sgt) {
  CLI::App* app = sgt.add_subcommand("serve", "(needs cpp-httplib and the text front end)")
                      ->allow_extras();
  return {app, []() -> int {
            throw sgt::Error("this sgt was built without `sgt serve` (SGT_SERVE=OFF or SGT_TEXT=OFF)");
          }};
}

}  // namespace sgt_cli
