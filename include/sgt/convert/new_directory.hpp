// Writing a whole model directory so that its name never holds a partial one.
//
// Everything is written into a fresh sibling folder (same parent, so the rename is atomic), which
// is renamed to OUT_DIR only once complete; on any error that folder is removed. OUT_DIR must not
// exist -- or, where the caller allows it, be an empty directory, which the rename replaces (so
// `mktemp -d` can name it). A symbolic link or a non-empty directory is never replaced: the
// converters would otherwise mix their files with someone else's.
#pragma once

#include <atomic>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

#include "sgt/core/error.hpp"

namespace sgt {

struct NewDirectoryOptions {
  bool allow_empty = false;  // an existing empty directory is replaced
};

// Throws unless write_new_directory may write out_dir (it checks again): a caller whose work
// before writing is long calls it first.
inline void check_new_directory(const std::string& out_dir, const NewDirectoryOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_symlink(out_dir, ec))
    throw Error("already exists (a symbolic link; the command writes a new directory)")
        .at_file(out_dir);
  if (fs::exists(out_dir, ec)) {
    const bool empty_dir = fs::is_directory(out_dir, ec) && fs::is_empty(out_dir, ec) && !ec;
    if (!options.allow_empty || !empty_dir)
      throw Error(options.allow_empty
                      ? "already exists and is not an empty directory (the command writes a new "
                        "directory)"
                      : "already exists (the command writes a new directory)")
          .at_file(out_dir);
  }
}

// Calls write(tmp) on a fresh folder beside out_dir, then renames it to out_dir; returns what
// write returned. Errors from write propagate unchanged (with the folder removed).
template <class Write>
auto write_new_directory(const std::string& out_dir, Write&& write,
                         const NewDirectoryOptions& options = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  check_new_directory(out_dir, options);
  static std::atomic<unsigned> counter{0};
  std::string target = out_dir;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  const std::string tmp =
      target + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  if (!fs::create_directory(tmp, ec))
    throw Error("cannot create a temporary directory beside it: " +
                (ec ? ec.message() : std::string("it exists")))
        .at_file(out_dir);
  try {
    auto result = write(tmp);
    fs::rename(tmp, target, ec);
    if (ec)
      throw Error("cannot rename the finished directory into place: " + ec.message())
          .at_file(out_dir);
    return result;
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace sgt
