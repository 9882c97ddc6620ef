// `weft demo`: runs the demo application (demo/, demo/demo.yaml) meshed on local mode, prints where
// to look, and removes everything again on Ctrl-C. It drives `weft local` as subprocesses of this
// same binary (/proc/self/exe) rather than calling into it, so the demo exercises exactly the
// commands a user types, and `weft local`'s own messages (e.g. the unprivileged fallback) show.
//
// The manifest is compiled in (demo/CMakeLists.txt generates kDemoManifest from demo.yaml);
// @WEFT_BIN_DIR@ in it becomes the directory of the running `weft`, where the weft-demo-*
// binaries are built and installed.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/commands/commands.h"
#include "demo/demo_manifest.h"
#include "weft/config/values.h"

extern char** environ;

namespace weft::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kNamespace = "demo";
constexpr const char* kBinDirPlaceholder = "@WEFT_BIN_DIR@";

struct DemoOptions {
  bool down = false;
  bool detach = false;
  std::string state_dir;
  std::string manifest;  // a file to run instead of the built-in demo.yaml
  int timeout_s = 120;
  std::string run_for;  // "--for": stop (and clean up) after this long; empty = until Ctrl-C
  int stats_every_s = 30;  // foreground: print `weft viz stat` this often (0 = never)
};

// What each deployment of demo.yaml is, for the summary.
const std::map<std::string, std::string>& describe() {
  static const std::map<std::string, std::string> d = {
      {"web", "HTTP/1.1 front end; calls books and authors over gRPC, caches in redis"},
      {"books", "gRPC server; fails 5% of calls (UNAVAILABLE/INTERNAL)"},
      {"authors", "gRPC server; fails 2% of calls, ~20 ms latency"},
      {"redis", "redis-server; an opaque TCP protocol to the mesh"},
      {"traffic", "load generator: 10 requests/s to web, some for unknown ids (404)"},
  };
  return d;
}

// Signals that end the demo. Blocked in this process from the start, so a Ctrl-C is taken at a
// point of our choosing (never in the middle of writing state); children get them unblocked.
class Interrupts {
 public:
  Interrupts() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigprocmask(SIG_BLOCK, &set_, nullptr);
  }
  // Takes a pending SIGINT/SIGTERM, waiting up to `wait`; true if one came.
  bool take(std::chrono::milliseconds wait) {
    auto s = std::chrono::duration_cast<std::chrono::seconds>(wait);
    timespec ts{static_cast<time_t>(s.count()), static_cast<long>((wait - s).count()) * 1000000L};
    int sig = sigtimedwait(&set_, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) taken_ = true;
    return taken_;
  }
  [[nodiscard]] bool taken() const { return taken_; }

 private:
  sigset_t set_{};
  bool taken_ = false;
};

struct RunResult {
  int status = -1;  // the exit status, or 128 + signal
  std::string out;  // stdout, when captured
  std::string err;  // stderr, when captured
};

// How a child's output is treated: shown to the user as it comes, indented under our progress
// lines, or kept for parsing.
enum class Output { kShow, kCapture };

std::string selfExe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("/proc/self/exe") : p.string();
}

// Runs this binary with `args`. `own_session` puts the child in a session of its own, so a
// further Ctrl-C on the terminal does not reach it (used for the clean-up). If `interrupts`
// sees a SIGTERM/SIGINT meant for us alone while the child runs, the child gets SIGTERM.
RunResult runWeft(const std::vector<std::string>& args, Output mode, Interrupts& interrupts,
                  bool own_session = false) {
  RunResult r;
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (own_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attr, flags);

  const std::string exe = selfExe();
  std::vector<std::string> argv_s{"weft"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, exe.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    r.err = "cannot run " + exe + ": " + std::strerror(rc);
    return r;
  }

  // Shown output is relayed line by line, indented; stdout and stderr keep their streams.
  std::string pending[2];
  auto relay = [&](int which, bool flush_all) {
    std::string& buf = pending[which];
    FILE* to = which == 0 ? stdout : stderr;
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::fprintf(to, "    %.*s\n", static_cast<int>(nl - start), buf.data() + start);
    }
    buf.erase(0, start);
    if (flush_all && !buf.empty()) {
      std::fprintf(to, "    %s\n", buf.c_str());
      buf.clear();
    }
    std::fflush(to);
  };
  // Read until the child exits, not until EOF: a daemon it starts could inherit the pipes and
  // keep them open for ever. After the exit, whatever is already buffered is still read.
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  bool forwarded = false;
  bool exited = false;
  int wstatus = 0;
  while (open_fds > 0) {
    if (!exited) {
      pid_t w = ::waitpid(pid, &wstatus, WNOHANG);
      if (w == pid || (w < 0 && errno != EINTR)) {
        exited = true;
        for (auto& f : fds) {
          if (f.fd >= 0) ::fcntl(f.fd, F_SETFL, ::fcntl(f.fd, F_GETFL) | O_NONBLOCK);
        }
      }
    }
    int n = ::poll(fds, 2, exited ? 0 : 100);
    if (n < 0 && errno != EINTR) break;
    if (exited && n == 0) break;
    if (!forwarded && !exited && !own_session && interrupts.take(std::chrono::milliseconds(0))) {
      ::kill(pid, SIGTERM);
      forwarded = true;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      if (mode == Output::kCapture) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(got));
      } else {
        pending[i].append(buf, static_cast<size_t>(got));
        relay(i, false);
      }
    }
  }
  if (mode == Output::kShow) {
    relay(0, true);
    relay(1, true);
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  while (!exited && ::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  return r;
}

std::vector<std::string> withStateDir(std::vector<std::string> args, const DemoOptions& o) {
  if (!o.state_dir.empty()) {
    args.push_back("--state-dir");
    args.push_back(o.state_dir);
  }
  return args;
}

void progress(const std::string& line) {
  std::printf("weft demo: %s\n", line.c_str());
  std::fflush(stdout);
}

[[noreturn]] void failWith(const std::string& why) {
  std::fflush(stdout);
  std::fprintf(stderr, "weft demo: %s\n", why.c_str());
  exitWith(kExitFailed);
}

// `weft local status -o json`, parsed; null when it fails.
json localStatus(const DemoOptions& o, Interrupts& interrupts) {
  RunResult r =
      runWeft(withStateDir({"local", "status", "-o", "json"}, o), Output::kCapture, interrupts);
  if (r.status != 0) return json();
  json j = json::parse(r.out, nullptr, false);
  return j.is_discarded() ? json() : j;
}

std::vector<json> demoPods(const json& status) {
  std::vector<json> pods;
  if (!status.is_object() || !status.contains("pods") || !status["pods"].is_array()) return pods;
  for (const auto& p : status["pods"]) {
    if (p.value("namespace", "") == kNamespace) pods.push_back(p);
  }
  return pods;
}

std::string tailOf(const fs::path& file, size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "    " + all[i] + "\n";
  }
  return out;
}

int runDown(const DemoOptions& o, Interrupts& interrupts) {
  progress("removing everything local mode started (weft local down)...");
  RunResult r = runWeft(withStateDir({"local", "down"}, o), Output::kShow, interrupts,
                        /*own_session=*/true);
  if (r.status != 0) {
    std::fprintf(stderr, "weft demo: `weft local down` failed (exit %d)%s\n", r.status,
                 r.err.empty() ? "" : (": " + r.err).c_str());
    return kExitFailed;
  }
  progress("done; nothing is left running.");
  return kExitOk;
}

// The manifest to apply, with @WEFT_BIN_DIR@ replaced. Checks the binaries it names exist, so a
// missing build fails here and not as a pod that exits.
std::string manifestText(const DemoOptions& o) {
  std::string text;
  if (o.manifest.empty()) {
    text = weft::demo::kDemoManifest;
  } else {
    std::ifstream in(o.manifest);
    if (!in) failWith("cannot read " + o.manifest);
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const std::string bin_dir = fs::path(selfExe()).parent_path().string();
  for (size_t at; (at = text.find(kBinDirPlaceholder)) != std::string::npos;) {
    text.replace(at, std::strlen(kBinDirPlaceholder), bin_dir);
  }
  if (o.manifest.empty()) {
    for (const char* b :
         {"weft-demo-web", "weft-demo-books", "weft-demo-authors", "weft-demo-traffic"}) {
      if (::access((fs::path(bin_dir) / b).c_str(), X_OK) != 0) {
        failWith((fs::path(bin_dir) / b).string() +
                 " is missing: the demo's binaries must sit next to `weft` (build them with "
                 "`cmake --build build --target weft-demo-apps`)");
      }
    }
    if (::access("/usr/bin/redis-server", X_OK) != 0) {
      failWith(
          "/usr/bin/redis-server is missing: install it (apt-get install redis-server, or "
          "scripts/setup)");
    }
  }
  return text;
}

// Replaces the decimal number `from` where it stands alone (not inside a longer number).
void replaceNumber(std::string& text, std::string_view from, std::string_view to) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
    const size_t end = at + from.size();
    if ((at > 0 && digit(text[at - 1])) || (end < text.size() && digit(text[end]))) {
      at = end;
      continue;
    }
    text.replace(at, from.size(), to);
    at += to.size();
  }
}

// Unprivileged, local mode runs every pod as processes on 127.0.0.1 (docs/local.md): two books
// replicas would collide on one port, books' 9090 on Prometheus's, and service names resolve
// nowhere. So the built-in manifest is shifted to free loopback ports, books gets one replica and
// the apps dial each other's ports directly -- unmeshed between apps, which is all the fallback
// allows.
std::string loopbackManifest(std::string text) {
  const std::pair<const char*, const char*> names[] = {
      {"books.demo.svc.cluster.local:9090", "127.0.0.1:19090"},
      {"authors.demo.svc.cluster.local:9091", "127.0.0.1:19091"},
      {"redis.demo.svc.cluster.local:6379", "127.0.0.1:16379"},
      {"web.demo.svc.cluster.local:80", "127.0.0.1:18080"},
  };
  for (const auto& [from, to] : names) {
    for (size_t at; (at = text.find(from)) != std::string::npos;) {
      text.replace(at, std::strlen(from), to);
    }
  }
  replaceNumber(text, "9090", "19090");
  replaceNumber(text, "9091", "19091");
  replaceNumber(text, "6379", "16379");
  replaceNumber(text, "8080", "18080");
  for (size_t at; (at = text.find("replicas: 2")) != std::string::npos;) {
    text.replace(at, std::strlen("replicas: 2"), "replicas: 1");
  }
  return text;
}

fs::path writeManifest(const fs::path& state_dir, const std::string& text) {
  const fs::path dir = state_dir / "demo";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) failWith("cannot create " + dir.string() + ": " + ec.message());
  const fs::path file = dir / "demo.yaml";
  const fs::path tmp = dir / ".demo.yaml.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) failWith("cannot write " + tmp.string());
  }
  fs::rename(tmp, file, ec);
  if (ec) failWith("cannot write " + file.string() + ": " + ec.message());
  return file;
}

void printSummary(const json& status, const std::vector<json>& pods, const fs::path& state_dir,
                  bool detach) {
  std::map<std::string, std::vector<json>> by_deployment;
  for (const auto& p : pods) by_deployment[p.value("deployment", "?")].push_back(p);
  // demo.yaml's order (front to back), then anything else a -f manifest brought.
  std::vector<std::string> order = {"web", "books", "authors", "redis", "traffic"};
  for (const auto& [name, list] : by_deployment) {
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  }
  if (status.value("root", false)) {
    std::printf("\nThe demo runs in namespace %s, every pod meshed:\n", kNamespace);
  } else {
    std::printf(
        "\nThe demo runs in namespace %s, on loopback (no interception: the apps call "
        "each other directly):\n",
        kNamespace);
  }
  for (const auto& name : order) {
    auto it = by_deployment.find(name);
    if (it == by_deployment.end()) continue;
    const auto& list = it->second;
    auto d = describe().find(name);
    std::printf("  %-8s %zu pod%s  %s\n", name.c_str(), list.size(), list.size() == 1 ? " " : "s",
                d == describe().end() ? "" : d->second.c_str());
  }
  std::string prometheus;
  {
    // run/local.json is the contract (docs/local.md); the status output carries the same.
    std::ifstream in(state_dir / "run" / "local.json");
    json local = in ? json::parse(in, nullptr, false) : json();
    if (local.is_discarded() || !local.is_object()) local = status;
    if (local.contains("prometheus") && local["prometheus"].is_object()) {
      prometheus = local["prometheus"].value("address", "");
    }
  }
  std::printf("\nWhere to look:\n");
  std::printf("  weft viz stat deploy -n %s    golden metrics: success rate, RPS, latency\n",
              kNamespace);
  std::printf("  weft viz edges deploy -n %s   who calls whom, and with which mTLS identity\n",
              kNamespace);
  std::printf("  weft local status                pods, addresses, readiness\n");
  if (!prometheus.empty()) {
    std::printf("  http://%s            Prometheus (job weft-proxies)\n", prometheus.c_str());
  }
  if (auto web = by_deployment.find("web"); web != by_deployment.end() && !web->second.empty()) {
    const json& pod = web->second.front();
    // Root: the pod's own address (its iptables rules hand the connection to the inbound proxy).
    // Unprivileged: the inbound proxy's loopback port.
    std::string address = pod.value("inbound", "");
    if (address.empty() && !pod.value("ip", "").empty()) address = pod.value("ip", "") + ":8080";
    if (!address.empty()) {
      std::printf("  curl http://%s/        the front end, through its inbound proxy\n",
                  address.c_str());
    }
  }
  std::printf("  %s/pods/%s/<pod>/{app,proxy}.log\n", state_dir.c_str(), kNamespace);
  if (detach) {
    std::printf("\nLeft running. `weft demo --down` removes everything.\n");
  } else {
    std::printf("\nPress Ctrl-C to stop the demo and remove everything.\n");
  }
  std::fflush(stdout);
}

int runDemo(const DemoOptions& o) {
  Interrupts interrupts;
  if (o.down) return runDown(o, interrupts);

  const bool root = geteuid() == 0;
  std::string manifest = manifestText(o);
  if (!root && o.manifest.empty()) manifest = loopbackManifest(std::move(manifest));
  const auto started = Clock::now();
  // From here on, a failure or an interrupt cleans up (unless --detach: then what runs stays,
  // for inspection, and --down removes it).
  auto abandon = [&](const std::string& why) -> int {
    if (!why.empty()) std::fprintf(stderr, "weft demo: %s\n", why.c_str());
    if (o.detach && !interrupts.taken()) {
      std::fprintf(stderr,
                   "weft demo: left as it is for inspection; `weft demo --down` removes it\n");
      return kExitFailed;
    }
    int down = runDown(o, interrupts);
    return why.empty() ? down : kExitFailed;
  };

  if (!root) {
    progress(
        "not running as root. Pods need network namespaces, veths and iptables, so local "
        "mode falls back to processes on loopback: the application runs on shifted ports "
        "(web 18080, books 19090 with one replica, authors 19091, redis 16379) and calls "
        "its backends directly, not through the proxies. Run `sudo weft demo` for the "
        "meshed application.");
  }

  progress("starting the control plane and Prometheus (weft local up)...");
  RunResult up = runWeft(withStateDir({"local", "up"}, o), Output::kShow, interrupts);
  if (interrupts.taken()) return abandon("");
  if (up.status != 0)
    return abandon("`weft local up` failed (exit " + std::to_string(up.status) + ")");

  json status = localStatus(o, interrupts);
  if (!status.is_object() || !status.contains("stateDir")) {
    return abandon("`weft local status -o json` gave no state directory");
  }
  const fs::path state_dir = status["stateDir"].get<std::string>();
  const fs::path file = writeManifest(state_dir, manifest);

  progress("starting the application in namespace demo (weft local run -f " + file.string() +
           ")...");
  RunResult run =
      runWeft(withStateDir({"local", "run", "-f", file.string()}, o), Output::kShow, interrupts);
  if (interrupts.taken()) return abandon("");
  if (run.status != 0) {
    return abandon("`weft local run` failed (exit " + std::to_string(run.status) + ")");
  }

  progress("waiting for the pods to be ready...");
  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  std::vector<json> pods;
  size_t last_ready = static_cast<size_t>(-1);
  for (;;) {
    status = localStatus(o, interrupts);
    pods = demoPods(status);
    size_t ready = 0;
    for (const auto& p : pods) {
      if (!p.value("appRunning", false)) {
        const std::string name = p.value("name", "?");
        const fs::path log = state_dir / "pods" / kNamespace / name / "app.log";
        return abandon("pod " + std::string(kNamespace) + "/" + name +
                       ": the application exited; the end of " + log.string() + ":\n" +
                       tailOf(log, 15));
      }
      if (p.value("ready", false)) ++ready;
    }
    if (ready != last_ready) {
      progress(std::to_string(ready) + "/" + std::to_string(pods.size()) + " pods ready");
      last_ready = ready;
    }
    if (!pods.empty() && ready == pods.size()) break;
    if (Clock::now() > deadline) {
      return abandon("the pods are not ready after " + std::to_string(o.timeout_s) +
                     " s; see `weft local status` and " +
                     (state_dir / "pods" / kNamespace).string() + "/<pod>/proxy.log");
    }
    if (interrupts.take(std::chrono::milliseconds(1000))) return abandon("");
  }
  const auto tenths =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count() / 100;
  progress("ready in " + std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " s.");
  printSummary(status, pods, state_dir, o.detach);
  if (o.detach) return kExitOk;

  // In the foreground until interrupted (or --for has passed), showing the golden metrics now
  // and then. If someone else brings local mode down (e.g. `weft demo --down` in another
  // terminal), there is nothing left to wait for.
  std::optional<Clock::time_point> stop_at;
  if (!o.run_for.empty()) {
    auto d = config::parseDuration(o.run_for);
    if (!d) return abandon("--for: " + d.error().context);
    stop_at = Clock::now() + *d;
  }
  auto next_stats = Clock::now() + std::chrono::seconds(o.stats_every_s);
  for (;;) {
    auto wait = std::chrono::seconds(5);
    if (stop_at) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*stop_at - Clock::now());
      if (left.count() <= 0) {
        progress("ran for " + o.run_for + "; stopping.");
        break;
      }
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::seconds>(left) + std::chrono::seconds(1));
    }
    if (interrupts.take(wait)) break;
    if (root && o.stats_every_s > 0 && Clock::now() >= next_stats) {
      next_stats = Clock::now() + std::chrono::seconds(o.stats_every_s);
      progress("golden metrics over the last 30 s (weft viz stat deploy -n demo -t 30s):");
      runWeft(withStateDir({"viz", "stat", "deploy", "-n", std::string(kNamespace), "-t", "30s"}, o),
              Output::kShow, interrupts);
      if (interrupts.taken()) break;
    }
    json now = localStatus(o, interrupts);
    if (interrupts.taken()) break;
    if (!now.is_object() || !now.value("running", false) || demoPods(now).empty()) {
      progress("local mode was stopped elsewhere; exiting.");
      return kExitOk;
    }
  }
  std::printf("\n");
  return runDown(o, interrupts);
}

}  // namespace

void addDemoCommand(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Run a small meshed application on this machine and show where to look at it. Starts "
      "local mode (`weft local up`), then namespace demo: `web` (HTTP/1.1) calling `books` and "
      "`authors` (gRPC, failing a few percent of calls on purpose) and `redis` (an opaque TCP "
      "protocol), and `traffic`, a load generator. Stays in the foreground; Ctrl-C stops it and "
      "removes everything (`weft local down`). Needs root for pods (network namespaces); "
      "without it local mode runs processes on loopback.");
  auto* down = cmd->add_flag(
      "--down", o->down,
      "stop a demo left running by --detach and remove everything (`weft local down`)");
  cmd->add_flag("--detach", o->detach, "leave the demo running and return once it is ready")
      ->excludes(down);
  cmd->add_option("--state-dir", o->state_dir,
                  "local mode's state directory (default: $WEFT_STATE_DIR, else /var/lib/weft as "
                  "root and ~/.weft otherwise)");
  cmd->add_option("-f,--filename", o->manifest,
                  "run this manifest instead of the built-in demo/demo.yaml (@WEFT_BIN_DIR@ is "
                  "replaced by the directory of `weft`); its pods must be in namespace demo");
  cmd->add_option("--for", o->run_for,
                  "run for this long (e.g. 90s, 5m), then stop and remove everything as Ctrl-C "
                  "would; default: until Ctrl-C");
  cmd->add_option("--stats-every", o->stats_every_s,
                  "in the foreground, print `weft viz stat deploy -n demo` every this many "
                  "seconds (0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeout", o->timeout_s, "seconds to wait for the pods to be ready")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->callback([o] {
    int status = runDemo(*o);
    if (status != kExitOk) exitWith(status);
  });
}

}  // namespace weft::cli
