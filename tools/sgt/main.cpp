// sgt: the command-line tool of docs/format.md section 6. `sgt --help` and `sgt COMMAND --help`
// print the usage generated from the flags' declarations (flags.hpp, cmd_*.cpp).
//
// Exit status 0 on success. On any bad input: status 1 (2 for a bad command line), one line on
// stderr that names the problem, and no output file (every writer renames a finished temp file).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "flags.hpp"

namespace {

// One line on stderr, whatever the message holds.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// CLI11 keeps what it did not recognise; the first such argument is the error.
void check_no_extras(const CLI::App& sgt) {
  const std::vector<std::string> extras = sgt.remaining(true);
  if (extras.empty()) return;
  const std::string& a = extras.front();
  if (!a.empty() && a[0] == '-') throw sgt_cli::UsageError("unknown option " + a);
  throw sgt_cli::UsageError("unexpected argument '" + a + "'");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App sgt{"sgt: protect prompts with a Stained Glass Transform, and run and audit it", "sgt"};
  sgt.allow_extras();
  const std::vector<sgt_cli::Command> commands = {
      sgt_cli::add_info_command(sgt),          sgt_cli::add_tokenize_command(sgt),
      sgt_cli::add_transform_command(sgt),     sgt_cli::add_audit_command(sgt),
      sgt_cli::add_generate_command(sgt),      sgt_cli::add_import_gguf_command(sgt),
      sgt_cli::add_make_transform_command(sgt), sgt_cli::add_serve_command(sgt)};
  std::string names;
  for (const auto& c : commands) names += (names.empty() ? "" : ", ") + c.app->get_name();
  try {
    if (argc < 2)
      throw sgt_cli::UsageError(
          "usage: sgt info|tokenize|transform|audit|generate|import-gguf|make-transform ...");
    const std::string first = argv[1];
    bool known = first.empty() || first[0] == '-';
    for (const auto& c : commands) known = known || c.app->get_name() == first;
    if (!known) throw sgt_cli::UsageError("unknown command '" + first + "' (" + names + ")");
    sgt.parse(argc, argv);
    check_no_extras(sgt);
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run();
    throw sgt_cli::UsageError(
        "usage: sgt info|tokenize|transform|audit|generate|import-gguf|make-transform ...");
  } catch (const CLI::CallForHelp& e) {
    return sgt.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return sgt.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "sgt: %s (see sgt --help)\n", one_line(e.what()).c_str());
    return 2;
  } catch (const sgt_cli::UsageError& e) {
    std::fprintf(stderr, "sgt: %s (see sgt --help)\n", one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sgt: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
}
