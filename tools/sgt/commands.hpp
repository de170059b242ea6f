// The commands of `sgt` (docs/format.md section 6). Each cmd_*.cpp declares its own flags on its
// subcommand and returns what runs it once the command line has parsed; main.cpp does the rest.
#pragma once

#include <functional>
#include <memory>

#include <CLI/CLI.hpp>

namespace sgt_cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // the exit status
};

// A subcommand whose flags `declare(app, args)` binds to an Args of its own; running it calls
// `check(args)` (the checks that need every flag) and then `run(args)`.
template <class Args, class Declare, class Check, class Run>
Command make_command(CLI::App& sgt, const char* name, const char* help, Declare declare,
                     Check check, Run run) {
  CLI::App* app = sgt.add_subcommand(name, help);
  app->allow_extras();  // main.cpp names the first unknown argument itself
  auto args = std::make_shared<Args>();
  declare(*app, *args);
  return {app, [args, check, run] {
            check(*args);
            return run(*args);
          }};
}

Command add_info_command(CLI::App& sgt);
Command add_tokenize_command(CLI::App& sgt);
Command add_transform_command(CLI::App& sgt);
Command add_audit_command(CLI::App& sgt);
Command add_generate_command(CLI::App& sgt);
Command add_import_gguf_command(CLI::App& sgt);
Command add_make_transform_command(CLI::App& sgt);
Command add_serve_command(CLI::App& sgt);

}  // namespace sgt_cli
