// What the serve tests share: child processes with their output in files, the port a server
// prints, the demo chat.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace sgt_test_serve {

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  REQUIRE_MESSAGE(v != nullptr, name << " is not set");
  return v;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A child process with stdout and stderr in files.
struct Process {
  pid_t pid = -1;
  std::string out, err;

  Process(const std::vector<std::string>& args, const std::string& out_path,
          const std::string& err_path)
      : out(out_path), err(err_path) {
    // Not the previous run's: listening_port reads this file while the child starts.
    unlink(out_path.c_str());
    unlink(err_path.c_str());
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int o = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  // The exit status after waiting; -1 when it did not end within the time.
  int wait_exit(double seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  ~Process() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

// The port a server prints ("listening on http://127.0.0.1:PORT"), waiting for it.
inline int listening_port(const Process& p) {
  const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
  for (int i = 0; i < 1200; ++i) {
    std::smatch m;
    const std::string log = read_file(p.err);
    if (std::regex_search(log, m, re)) return std::stoi(m[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  FAIL("the server did not start: " << read_file(p.err));
  return 0;
}

// The messages of examples/chat.json.
inline nlohmann::json chat_messages(const std::string& root) {
  return nlohmann::json::parse(read_file(root + "/examples/chat.json"))["messages"];
}

}  // namespace sgt_test_serve
