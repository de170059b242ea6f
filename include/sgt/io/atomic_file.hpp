// Writing a whole file so that its name never holds a partial file, and so that writing it never
// touches anything but that name.
//
// The bytes go to a temporary file in the target's folder (same file system, so the rename is
// atomic), which is renamed over the target only once it is complete, flushed and closed. On any
// failure the temporary file is removed and sgt::Error names the target: a reader sees either the
// old file, the complete new one, or none -- never a truncated one. Every output writer of the
// library (safetensors, torch .pt, request bodies, PNG) ends here.
//
// What the target may be (docs/reliability.md, "Output files"):
//   - absent, or a regular file: replaced;
//   - anything else -- a symbolic link, a directory, a FIFO, a device (/dev/null, /dev/stdout), a
//     socket: refused. Renaming a regular file over it would replace it (as root, /dev/null
//     itself), and a link is neither replaced nor followed: replacing it breaks links such as
//     /dev/stdout, following it lets a link planted in an output folder redirect the write to any
//     file the process may write. FileWriteOptions::stream writes into an existing FIFO or device,
//     or through a link, instead: in place and without the atomicity above.
//
// The temporary file is created with O_CREAT | O_EXCL | O_NOFOLLOW, so it is always a new file:
// a symbolic link or file planted at its name makes the creation fail (and another name is tried),
// it is never followed. Its name is the target's name cut to 64 bytes, ".tmp-" and 16 random hex
// digits: unpredictable, recognisable as ours, and never longer than NAME_MAX however long the
// target's name is. Its mode is 0666 less the umask, as fopen gives.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sgt/core/error.hpp"

namespace sgt {

struct FileWriteOptions {
  // Write into a target that exists and is a FIFO, a character or block device, or a symbolic
  // link (a pipe to another program, /dev/stdout), by opening it for writing, links followed --
  // no temporary file, no rename, no atomicity: a failure can leave part of the bytes written.
  // An absent target or a regular file (not a link) is still written atomically; a directory or
  // socket is still refused. Off: every such target is refused with an error.
  bool stream = false;
  // fsync the temporary file before the rename (and the folder after it), so that after a power
  // loss the target holds the old or the new bytes, not an empty file. Costs a flush to the disk
  // (docs/reliability.md has the figure for 100 MB); a caller writing scratch files may turn it
  // off.
  bool sync = true;
};

namespace detail {

inline const char* file_kind(mode_t mode) noexcept {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

inline bool streamable(mode_t mode) noexcept {
  return S_ISFIFO(mode) || S_ISCHR(mode) || S_ISBLK(mode);
}

[[noreturn]] inline void throw_errno(const std::string& what, int err, const std::string& path) {
  throw Error(what + ": " + std::strerror(err)).at_file(path);
}

// 64 random bits for a temporary name. O_EXCL, not the name, is what keeps the write safe; an
// unpredictable name only stops another user from blocking a write by creating its file first.
inline std::uint64_t temp_name_bits() {
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t bits = 0;
  try {
    std::random_device rd;
    bits = (std::uint64_t(rd()) << 32) ^ rd();
  } catch (...) {  // no entropy source: still distinct per process, call and time
  }
  bits ^= std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) *
          0x9E3779B97F4A7C15ull;
  bits ^= (std::uint64_t(::getpid()) << 40) + counter.fetch_add(1) * 0xBF58476D1CE4E5B9ull;
  return bits;
}

// The target's folder with a trailing '/', or "" for a bare name; and its last component.
inline void split_path(const std::string& path, std::string& folder, std::string& name) {
  const std::size_t slash = path.rfind('/');
  folder = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  name = slash == std::string::npos ? path : path.substr(slash + 1);
}

inline std::string temp_name(const std::string& name, std::uint64_t bits) {
  std::size_t keep = name.size() < 64 ? name.size() : 64;
  // Cut at a UTF-8 character boundary, never inside a character.
  while (keep > 0 && keep < name.size() && (static_cast<unsigned char>(name[keep]) & 0xC0) == 0x80)
    --keep;
  static const char kHex[] = "0123456789abcdef";
  std::string out = name.substr(0, keep) + ".tmp-";
  for (int i = 15; i >= 0; --i) out.push_back(kHex[(bits >> (4 * i)) & 15]);
  return out;
}

// 0, or the errno of the first failed write.
inline int write_all(int fd, const void* data, std::size_t size) noexcept {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const std::size_t chunk = size < (std::size_t(1) << 30) ? size : (std::size_t(1) << 30);
    const ssize_t n = ::write(fd, p, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

inline void stream_to(const std::string& path, const void* data, std::size_t size) {
  // No O_CREAT: the target was seen to exist (a link to nothing is an error, not a new file).
  // O_TRUNC empties a regular file reached through a link and does nothing to a FIFO or device.
  // O_NOCTTY: a terminal given as the target does not become the controlling terminal.
  int fd;
  do fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_NOCTTY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("cannot open for streaming", errno, path);
  int err = write_all(fd, data, size);
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  if (err != 0) throw_errno("cannot stream", err, path);
}

}  // namespace detail

// Whether `path` may be written with these options: absent or a regular file (replaced
// atomically), or with options.stream a FIFO, a device or a symbolic link (written in place).
// Throws sgt::Error naming `path` otherwise. Returns true when the write goes into the target in
// place, false for an atomic replace. Nothing is opened: a FIFO is not blocked on.
inline bool check_output_target(const std::string& path, const FileWriteOptions& options = {}) {
  if (path.empty()) throw Error("an empty output file name");
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;  // a missing folder is reported when the file is created
    detail::throw_errno("cannot inspect the output", errno, path);
  }
  if (S_ISREG(st.st_mode)) return false;
  std::string what = detail::file_kind(st.st_mode);
  if (S_ISLNK(st.st_mode)) {
    struct stat target {};
    if (::stat(path.c_str(), &target) != 0)
      throw Error("refusing to write through a symbolic link that points to no file").at_file(path);
    if (options.stream && !S_ISDIR(target.st_mode) && !S_ISSOCK(target.st_mode)) return true;
    what = std::string("a symbolic link to ") +
           (S_ISREG(target.st_mode) ? "a regular file" : detail::file_kind(target.st_mode));
  } else if (options.stream && detail::streamable(st.st_mode)) {
    return true;
  }
  const bool could_stream = S_ISLNK(st.st_mode) || detail::streamable(st.st_mode);
  throw Error("refusing to replace " + what + ": an output must be a regular file or absent" +
              (could_stream ? " (writing into it in place is the stream option)" : ""))
      .at_file(path);
}

inline void write_file_atomically(const std::string& path, const void* data, std::size_t size,
                                  const FileWriteOptions& options = {}) {
  if (size != 0 && data == nullptr) throw Error("null data for a non-empty file").at_file(path);
  if (check_output_target(path, options)) {
    detail::stream_to(path, data, size);
    return;
  }
  std::string folder, name;
  detail::split_path(path, folder, name);
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 16; ++attempt) {
    tmp = folder + detail::temp_name(name, detail::temp_name_bits());
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST && errno != EINTR)
      detail::throw_errno("cannot create", errno, path);
  }
  if (fd < 0) throw Error("cannot create: every temporary name tried exists").at_file(path);
  int err = detail::write_all(fd, data, size);
  if (err == 0 && options.sync && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  const char* step = "cannot write";
  if (err == 0 && std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    step = "cannot replace";
  }
  if (err != 0) {
    ::unlink(tmp.c_str());
    detail::throw_errno(step, err, path);
  }
  if (options.sync) {  // the rename itself, durable; some file systems refuse a folder's fsync
    const char* dir_name = folder.empty() ? "." : folder.c_str();
    const int dir = ::open(dir_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }
}

inline void write_file_atomically(const std::string& path, const std::string& text,
                                  const FileWriteOptions& options = {}) {
  write_file_atomically(path, text.data(), text.size(), options);
}

}  // namespace sgt
