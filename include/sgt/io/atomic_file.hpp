// Writing a whole file so that its name never holds a partial file.
//
// The bytes go to a temporary file in the same directory (same file system, so the rename is
// atomic), which is renamed over the target only once it is complete and closed. On any failure
// the temporary file is removed and sgt::Error names the target: a reader sees either the old
// file, the complete new one, or none -- never a truncated one. Every output writer of the library
// (safetensors, torch .pt, request bodies) ends here.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

#include <unistd.h>

#include "sgt/core/error.hpp"

namespace sgt {

inline void write_file_atomically(const std::string& path, const void* data, std::size_t size) {
  if (size != 0 && data == nullptr) throw Error("null data for a non-empty file").at_file(path);
  // pid + a process-wide counter: two writers in one process (threads) never share a temp name.
  static std::atomic<unsigned> counter{0};
  const std::string tmp =
      path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(std::string("cannot create: ") + std::strerror(errno)).at_file(path);
  const bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  int err = ok ? 0 : errno;
  const bool closed = std::fclose(f) == 0;
  if (ok && !closed) err = errno;
  const bool renamed = ok && closed && std::rename(tmp.c_str(), path.c_str()) == 0;
  if (ok && closed && !renamed) err = errno;
  if (!renamed) {
    std::remove(tmp.c_str());
    throw Error(std::string("cannot write: ") + std::strerror(err)).at_file(path);
  }
}

inline void write_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, text.data(), text.size());
}

}  // namespace sgt
