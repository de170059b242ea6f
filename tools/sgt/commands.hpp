// The commands of `sgt` (docs/format.md section 6). Each cmd_*.cpp declares its own flags on its
// subcommand and returns what runs it once the command line has parsed; main.cpp does the rest.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace sgt_cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // the exit status
};

Command add_info_command(CLI::App& sgt);
Command add_tokenize_command(CLI::App& sgt);
Command add_transform_command(CLI::App& sgt);
Command add_audit_command(CLI::App& sgt);
Command add_generate_command(CLI::App& sgt);

}  // namespace sgt_cli
