// Warnings the library wants a human to see (an unknown config key, say) go through one
// replaceable handler. The default prints "sgt: warning: ..." on stderr; an application can route
// them into its own log, or silence them, with set_log_handler.
#pragma once

#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

namespace sgt {

using LogHandler = std::function<void(const std::string& message)>;

namespace detail {
struct LogState {
  std::mutex mutex;
  LogHandler handler = [](const std::string& m) {
    std::fprintf(stderr, "sgt: warning: %s\n", m.c_str());
  };
};
inline LogState& log_state() {
  static LogState state;
  return state;
}
}  // namespace detail

// Replaces the warning handler; an empty handler silences warnings. Returns the previous one.
inline LogHandler set_log_handler(LogHandler handler) {
  auto& s = detail::log_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::swap(s.handler, handler);
  return handler;
}

inline void log_warning(const std::string& message) {
  auto& s = detail::log_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.handler) s.handler(message);
}

}  // namespace sgt
