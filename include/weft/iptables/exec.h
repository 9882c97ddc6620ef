// Running the iptables tools: fork/exec with pipes, no shell, no system().
//
// Why a child process rather than a library: Debian ships libiptc and libnftables, but libiptc's
// API is explicitly unstable (no compatibility promise, legacy backend only) and libnftables
// speaks nft syntax, not iptables rules, so the nat REDIRECT rules would have to be written twice
// and kept in step with iptables-nft's own translation. `iptables-restore` is the stable,
// documented interface, atomic per table, and the one linkerd2-proxy-init, Istio and kube-proxy
// all use; sharing it means operators debug Weft with the tools they already know.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/result.h"

namespace weft::iptables {

struct CommandOutput {
  // The exit status, or 128 + signal number when the program was killed by a signal.
  int exit_status = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH, like execvp) with argv, feeding `input` to its stdin and
// collecting its stdout and stderr, and waits for it.
//
// A program that ran is a success whatever its exit status. Errors:
//  - kind "not_found" (sys_errno ENOENT) when argv[0] is not in PATH, or "exec_failed" when it
//    could not be started for another reason (sys_errno says why);
//  - kind "timeout" when it ran longer than `timeout`; it is then killed with SIGKILL.
//
// Precondition: SIGPIPE is ignored in this process (weft-init's main does it), since a child may
// exit without reading all of `input`. Blocking; single-threaded callers only (it forks).
Result<CommandOutput> runCommand(const std::vector<std::string>& argv, std::string_view input,
                                 std::chrono::milliseconds timeout);

// Whether capability number `cap` (e.g. 12, CAP_NET_ADMIN) is in the CapEff line of a
// /proc/<pid>/status text. Fails (kind "bad_proc_status") when there is no readable CapEff line.
Result<bool> hasEffectiveCapability(std::string_view proc_status, int cap);

}  // namespace weft::iptables
