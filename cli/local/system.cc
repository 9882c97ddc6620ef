#include "cli/local/system.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace weft::cli::local {
namespace {

namespace fs = std::filesystem;

std::vector<char*> cStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

int describeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Fork-safe: in the child, only async-signal-safe calls until exec.
[[noreturn]] void execOrDie(const std::vector<std::string>& argv, char** envp) {
  auto args = cStrings(argv);
  if (envp != nullptr) {
    execvpe(args[0], args.data(), envp);
  } else {
    execvp(args[0], args.data());
  }
  const char* msg = "weft local: cannot execute ";
  (void)!write(2, msg, std::strlen(msg));
  (void)!write(2, args[0], std::strlen(args[0]));
  (void)!write(2, ": ", 2);
  const char* why = std::strerror(errno);
  (void)!write(2, why, std::strlen(why));
  (void)!write(2, "\n", 1);
  _exit(127);
}

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv) {
  CommandResult r;
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return r;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return r;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    r.err = std::string("fork: ") + std::strerror(errno);
    return r;
  }
  if (pid == 0) {
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execOrDie(argv, nullptr);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.status = describeStatus(status);
  return r;
}

Result<pid_t> startDaemon(const DaemonOptions& o) {
  const int log = open(o.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    return Error::internal("io", "cannot open " + o.log_path + ": " + std::strerror(errno));
  }
  auto envp = cStrings(o.env);
  const pid_t pid = fork();
  if (pid < 0) {
    close(log);
    return Error::internal("fork", std::strerror(errno));
  }
  if (pid == 0) {
    setsid();
    // The CLI may have blocked or ignored signals; a daemon starts with the defaults.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(log, 1);
    dup2(log, 2);
    if (!o.cwd.empty() && chdir(o.cwd.c_str()) != 0) _exit(126);
    execOrDie(o.argv, envp.data());
  }
  close(log);
  return pid;
}

bool exitedEarly(pid_t pid, std::string* why) {
  int status = 0;
  const pid_t r = waitpid(pid, &status, WNOHANG);
  if (r != pid) return false;
  if (why != nullptr) {
    if (WIFEXITED(status)) {
      *why = "exit status " + std::to_string(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
      *why = "killed by signal " + std::to_string(WTERMSIG(status));
    } else {
      *why = "stopped";
    }
  }
  return true;
}

bool processAlive(pid_t pid) {
  if (pid <= 0) return false;
  // Reap it if it is our own exited child, so it does not linger as a zombie.
  int status = 0;
  (void)waitpid(pid, &status, WNOHANG);
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  // pid (comm) STATE ...; comm may contain spaces and parentheses: take the last ')'.
  const auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= line.size()) return false;
  const char state = line[close_paren + 2];
  return state != 'Z' && state != 'X';
}

std::string markerOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  if (!in) return {};
  std::string var;
  const std::string prefix = std::string(kMarkerVar) + "=";
  while (std::getline(in, var, '\0')) {
    if (var.compare(0, prefix.size(), prefix) == 0) return var.substr(prefix.size());
  }
  return {};
}

std::vector<MarkedProcess> markedProcesses(const std::string& state_dir) {
  std::vector<MarkedProcess> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  const pid_t self = getpid();
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid <= 0 || pid == self) continue;
    std::string marker = markerOf(static_cast<pid_t>(pid));
    if (marker.empty() || (!state_dir.empty() && marker != state_dir)) continue;
    if (!processAlive(static_cast<pid_t>(pid))) continue;
    out.push_back({static_cast<pid_t>(pid), std::move(marker)});
  }
  closedir(dir);
  return out;
}

std::vector<pid_t> stopProcesses(const std::vector<pid_t>& pids, std::chrono::milliseconds grace) {
  using clock = std::chrono::steady_clock;
  for (pid_t p : pids) {
    if (processAlive(p)) kill(p, SIGTERM);
  }
  auto alive = [&] {
    std::vector<pid_t> left;
    for (pid_t p : pids) {
      if (processAlive(p)) left.push_back(p);
    }
    return left;
  };
  const auto deadline = clock::now() + grace;
  std::vector<pid_t> left = alive();
  while (!left.empty() && clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    left = alive();
  }
  for (pid_t p : left) kill(p, SIGKILL);
  const auto kill_deadline = clock::now() + std::chrono::seconds(5);
  while (!left.empty() && clock::now() < kill_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    left = alive();
  }
  return left;
}

Status writeFileAtomic(const std::string& path, const std::string& content, unsigned mode) {
  std::error_code ec;
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  if (ec)
    return Error::internal("io", "cannot create " + p.parent_path().string() + ": " + ec.message());
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error::internal("io", "cannot write " + tmp + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      close(fd);
      unlink(tmp.c_str());
      return Error::internal("io", "cannot write " + tmp + ": " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  fchmod(fd, mode);
  fsync(fd);
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    unlink(tmp.c_str());
    return Error::internal("io", "cannot rename " + tmp + " to " + path + ": " + why);
  }
  return okStatus();
}

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::internal("io", "cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

int connectTo(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return -1;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      close(fd);
      return -1;
    }
    pollfd pfd{fd, POLLOUT, 0};
    if (poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) {
      close(fd);
      return -1;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

}  // namespace

Result<int> httpGet(const std::string& host, uint16_t port, const std::string& path,
                    std::chrono::milliseconds timeout, std::string* body) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int fd = connectTo(host, port, timeout);
  if (fd < 0) {
    return Error::internal("unreachable",
                           host + ":" + std::to_string(port) + ": " + std::strerror(errno));
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + host + ":" +
                          std::to_string(port) + "\r\nConnection: close\r\n\r\n";
  (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string resp;
  char buf[8192];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) != 1) break;
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<std::size_t>(n));
    if (resp.size() > (16u << 20)) break;
  }
  close(fd);
  if (resp.compare(0, 5, "HTTP/") != 0 || resp.size() < 12) {
    return Error::internal("bad_response",
                           "no HTTP response from " + host + ":" + std::to_string(port));
  }
  const int status = std::atoi(resp.c_str() + resp.find(' ') + 1);
  if (body != nullptr) {
    const auto head_end = resp.find("\r\n\r\n");
    *body = head_end == std::string::npos ? std::string() : resp.substr(head_end + 4);
  }
  return status;
}

bool portOpen(const std::string& host, uint16_t port) {
  const int fd = connectTo(host, port, std::chrono::milliseconds(500));
  if (fd < 0) return false;
  close(fd);
  return true;
}

bool listensOn(pid_t pid, uint16_t port) {
  for (const char* file : {"tcp", "tcp6"}) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/net/" + file);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      // "  0: 00000000:1F90 00000000:0000 0A ..." — local address:port (hex), remote, state.
      std::istringstream ss(line);
      std::string slot, local_addr, remote, state;
      ss >> slot >> local_addr >> remote >> state;
      const auto colon = local_addr.rfind(':');
      if (colon == std::string::npos || state != "0A") continue;
      if (std::strtoul(local_addr.c_str() + colon + 1, nullptr, 16) == port) return true;
    }
  }
  return false;
}

std::string findBinary(const std::string& name) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path sibling = self.parent_path() / name;
    if (access(sibling.c_str(), X_OK) == 0) return sibling.string();
  }
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string hexOf(uint64_t v, int digits) {
  static const char* kHex = "0123456789abcdef";
  std::string out(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = kHex[v & 0xf];
    v >>= 4;
  }
  return out;
}

}  // namespace weft::cli::local
