// weft: the command-line interface of the Weft service mesh (SPEC §6). Each command lives in
// cli/commands/ and registers itself here; this file parses and turns outcomes into the exit
// statuses of SPEC §9: 0 success, 1 a failed operation or check, 2 bad usage.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <string>

#include "cli/commands/commands.h"

int main(int argc, char** argv) {
  using namespace weft::cli;
  CLI::App app{
      "weft: operate the Weft service mesh. Weft gives every workload mutual TLS with an "
      "automatically issued and rotated identity, golden metrics and per-request load "
      "balancing, through a sidecar proxy.",
      "weft"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       std::string("weft ") + WEFT_VERSION + " (git " + WEFT_GIT_SHA + ")");
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "weft: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  app.footer(
      "Run `weft COMMAND --help` for a command's flags. Reporting commands take -o table|json.\n"
      "Exit status: 0 success, 1 a failed operation or check, 2 bad usage.");

  addCertsCommand(app);
  addVersionCommand(app);
  addLocalCommand(app);
  addVizCommand(app);
  addCheckCommand(app);
  addDemoCommand(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    // Raised by exitWith(): the command has said why already.
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with code 0; CLI11's own codes (105, 106, ...) would
    // leak its internals, so every other parse error is bad usage.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "weft: " << e.what() << "\n";
    return kExitFailed;
  }
  return kExitOk;
}
