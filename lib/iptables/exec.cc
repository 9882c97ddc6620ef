#include "weft/iptables/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <tuple>

#include "weft/common/assert.h"

namespace weft::iptables {
namespace {

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  ~Fd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

Result<Pipe> makePipe() {
  int fds[2];
  // O_CLOEXEC: the child keeps only what it dup2()s onto 0, 1 and 2.
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Error::internal("exec_failed", std::string("pipe2: ") + std::strerror(errno));
  }
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

// Only async-signal-safe calls between fork and exec: the child reports an exec failure by
// writing errno to `status_fd`, which closes by itself (O_CLOEXEC) when exec succeeds.
[[noreturn]] void runChild(char* const* argv, int in_fd, int out_fd, int err_fd, int status_fd) {
  if (::dup2(in_fd, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
      ::dup2(err_fd, STDERR_FILENO) < 0) {
    int e = errno;
    (void)!::write(status_fd, &e, sizeof(e));
    ::_exit(127);
  }
  // An ignored SIGPIPE survives exec; give the tool the default back.
  ::signal(SIGPIPE, SIG_DFL);
  ::execvp(argv[0], argv);
  int e = errno;
  (void)!::write(status_fd, &e, sizeof(e));
  ::_exit(127);
}

int statusToExit(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

}  // namespace

Result<CommandOutput> runCommand(const std::vector<std::string>& argv, std::string_view input,
                                 std::chrono::milliseconds timeout) {
  WEFT_ASSERT(!argv.empty(), "callers always name a program");
#ifndef WEFT_NDEBUG
  struct sigaction current {};
  ::sigaction(SIGPIPE, nullptr, &current);
  WEFT_ASSERT(current.sa_handler == SIG_IGN, "runCommand() requires SIGPIPE to be ignored");
#endif

  auto in = makePipe();
  if (!in) return in.error();
  auto out = makePipe();
  if (!out) return out.error();
  auto err = makePipe();
  if (!err) return err.error();
  auto status = makePipe();
  if (!status) return status.error();

  std::vector<char*> c_argv;
  c_argv.reserve(argv.size() + 1);
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return Error::internal("exec_failed", std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    runChild(c_argv.data(), in->read.get(), out->write.get(), err->write.get(),
             status->write.get());
  }

  in->read.reset();
  out->write.reset();
  err->write.reset();
  status->write.reset();

  // Did exec work? EOF (0 bytes) means yes: the status pipe closed on exec.
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(status->read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    std::string what = argv[0] + ": " + std::strerror(child_errno);
    if (child_errno == ENOENT) return Error::upstream("not_found", what, child_errno);
    return Error::upstream("exec_failed", what, child_errno);
  }

  // Feed stdin and drain stdout/stderr together: either side can fill a 64 KiB pipe buffer and
  // wait for the other, so doing them one after the other could deadlock.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (Fd* fd : {&in->write, &out->read, &err->read}) ::fcntl(fd->get(), F_SETFL, O_NONBLOCK);
  if (input.empty()) in->write.reset();
  CommandOutput result;
  std::size_t written = 0;
  bool timed_out = false;
  int poll_errno = 0;
  std::array<char, 16384> buf{};
  while (in->write.get() >= 0 || out->read.get() >= 0 || err->read.get() >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    std::array<pollfd, 3> pfds{{{in->write.get(), POLLOUT, 0},
                                {out->read.get(), POLLIN, 0},
                                {err->read.get(), POLLIN, 0}}};
    int ready = ::poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
    if (ready < 0) {
      if (errno == EINTR) continue;
      poll_errno = errno;
      break;
    }
    if (pfds[0].revents != 0) {
      ssize_t w = ::write(in->write.get(), input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      // EPIPE: the child stopped reading; its exit status and stderr will say why.
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        in->write.reset();
      }
    }
    for (auto [idx, fd, sink] :
         {std::tuple{1, &out->read, &result.out}, std::tuple{2, &err->read, &result.err}}) {
      if (pfds[static_cast<std::size_t>(idx)].revents == 0) continue;
      ssize_t r = ::read(fd->get(), buf.data(), buf.size());
      if (r > 0) {
        sink->append(buf.data(), static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        fd->reset();
      }
    }
  }
  if (timed_out || poll_errno != 0) ::kill(pid, SIGKILL);

  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return Error::upstream(
        "timeout", argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms");
  }
  if (poll_errno != 0) {
    return Error::internal("exec_failed", std::string("poll: ") + std::strerror(poll_errno));
  }
  result.exit_status = statusToExit(st);
  return result;
}

Result<bool> hasEffectiveCapability(std::string_view proc_status, int cap) {
  constexpr std::string_view kKey = "CapEff:";
  std::size_t pos = 0;
  while (pos < proc_status.size()) {
    auto nl = proc_status.find('\n', pos);
    std::string_view line = proc_status.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? proc_status.size() : nl + 1;
    if (line.substr(0, kKey.size()) != kKey) continue;
    line.remove_prefix(kKey.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    uint64_t mask = 0;
    auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), mask, 16);
    if (ec != std::errc() || ptr == line.data() || cap < 0 || cap > 63) break;
    return ((mask >> cap) & 1U) != 0;
  }
  return Error::internal("bad_proc_status", "no readable CapEff line in /proc/self/status");
}

}  // namespace weft::iptables
