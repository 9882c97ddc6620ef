// The commands of the `weft` CLI (SPEC §6). Each file of cli/commands/ registers one command,
// its flags, help text and callback on the root CLI11 App; cli/main.cc only parses.
//
// Exit status (SPEC §9): 0 success, 1 a failed operation or check, 2 bad usage. A callback that
// fails prints why to stderr and calls exitWith(); usage errors found by CLI11 itself (unknown
// flags, failed validators) become 2 in main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace weft::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Ends the command with `status`: CLI11 carries the exception out of App::parse, and main.cc
// returns the code without printing anything more.
[[noreturn]] inline void exitWith(int status) { throw CLI::RuntimeError(status); }

// The -o/--output flag every reporting command takes.
inline CLI::Option* addOutputOption(CLI::App* command, std::string& output) {
  return command
      ->add_option("-o,--output", output, "output format: table (for people) or json (for scripts)")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
}

// `weft certs ...`: create and inspect the trust anchor, the identity issuer and webhook
// certificates (SPEC §3).
void addCertsCommand(CLI::App& app);
// `weft version`: the client's version, and the control plane's when reachable.
void addVersionCommand(CLI::App& app);
// `weft local up|run|status|down`: the mesh on one machine (docs/local.md).
void addLocalCommand(CLI::App& app);
// `weft viz stat|edges`: golden metrics and traffic edges from Prometheus (SPEC §7).
void addVizCommand(CLI::App& app);
// `weft check`: grouped health checks of the local mesh, each linked to docs/checks.md.
void addCheckCommand(CLI::App& app);

// `weft demo`: the demo application (demo/) meshed on local mode; Ctrl-C removes it.
void addDemoCommand(CLI::App& app);

}  // namespace weft::cli
