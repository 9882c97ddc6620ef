// The operating-system side of `weft local`: running commands (ip, weft-init, weft-controller),
// starting daemons that outlive the CLI, finding and stopping the processes local mode started,
// atomic files, and a tiny HTTP probe for readiness. Nothing here knows about pods or YAML.
//
// Every process local mode starts carries WEFT_LOCAL_STATE=<state dir> in its environment (the
// "marker"): it is how `weft local down` recognises its own processes after a crash, and why a
// recorded PID that has since been reused by an unrelated process is never signalled.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "weft/common/result.h"

namespace weft::cli::local {

constexpr const char* kMarkerVar = "WEFT_LOCAL_STATE";

struct CommandResult {
  int status = -1;  // exit status, or 128+signal; -1 when it could not be started
  std::string out;
  std::string err;
  [[nodiscard]] bool ok() const { return status == 0; }
};

// Runs argv[0] (searched in PATH) to completion with the current environment, capturing stdout
// and stderr. Never throws.
CommandResult runCommand(const std::vector<std::string>& argv);

struct DaemonOptions {
  std::vector<std::string> argv;  // argv[0] searched in PATH
  std::vector<std::string> env;   // the complete environment, "K=V"
  std::string log_path;           // stdout and stderr, appended
  std::string cwd;                // empty: unchanged
};
// Starts a process in a session of its own (setsid), stdin /dev/null, stdout/stderr appended to
// log_path, so that it outlives the CLI. Returns its PID; an exec failure shows in the log and as
// an early exit (see exitedEarly).
Result<pid_t> startDaemon(const DaemonOptions& options);
// True when `pid`, a child of this process, has already exited; its status is described in
// `why` ("exit status 1", "killed by signal 9").
bool exitedEarly(pid_t pid, std::string* why);

// A running (not zombie) process.
bool processAlive(pid_t pid);
// The value of the marker in `pid`'s environment ("" when none or unreadable).
std::string markerOf(pid_t pid);
// Every running process whose marker is `state_dir` (every marked process when empty), with the
// marker value.
struct MarkedProcess {
  pid_t pid = 0;
  std::string state_dir;
};
std::vector<MarkedProcess> markedProcesses(const std::string& state_dir = "");
// SIGTERM, then SIGKILL to those still alive after `grace`; waits (bounded) until they are gone.
// Returns the PIDs still alive at the end (normally none).
std::vector<pid_t> stopProcesses(const std::vector<pid_t>& pids, std::chrono::milliseconds grace);

// Writes `content` to `path` through a temporary file in the same directory and rename(2), with
// `mode`; creates the parent directories (0755).
Status writeFileAtomic(const std::string& path, const std::string& content, unsigned mode = 0644);
Result<std::string> readFile(const std::string& path);

// HTTP/1.0 GET http://host:port/path; returns the status code, or an error when nothing answers
// within `timeout`. `body` receives the response body when not null.
Result<int> httpGet(const std::string& host, uint16_t port, const std::string& path,
                    std::chrono::milliseconds timeout, std::string* body = nullptr);
// True when something accepts TCP connections on host:port.
bool portOpen(const std::string& host, uint16_t port);

// True when a TCP socket listens on `port` in the network namespace of process `pid` (read from
// /proc/<pid>/net/tcp and tcp6, so no setns is needed).
bool listensOn(pid_t pid, uint16_t port);

// `name` next to the running `weft` binary, else in PATH; empty when not found.
std::string findBinary(const std::string& name);

// FNV-1a, for short stable names (netns, veth, pod template hash).
uint64_t fnv1a(const std::string& s);
std::string hexOf(uint64_t v, int digits);

}  // namespace weft::cli::local
