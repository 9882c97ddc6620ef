// `weft version`: the client's version and build, and the control plane's. Until the CLI can
// reach a control plane, the server side always reads "unavailable" (as `linkerd version` says
// when it finds no cluster), which is not a failure.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands/commands.h"

#ifndef WEFT_VERSION
#error "WEFT_VERSION must be defined by cli/CMakeLists.txt"
#endif
#ifndef WEFT_GIT_SHA
#error "WEFT_GIT_SHA must be defined by cli/CMakeLists.txt"
#endif

namespace weft::cli {
namespace {

struct VersionOptions {
  bool client_only = false;
  std::string output = "table";
};

void runVersion(const VersionOptions& o) {
  if (o.output == "json") {
    nlohmann::json j = {{"client", {{"version", WEFT_VERSION}, {"git_sha", WEFT_GIT_SHA}}}};
    if (!o.client_only) j["server"] = {{"version", nullptr}, {"status", "unavailable"}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("Client version: %s (git %s)\n", WEFT_VERSION, WEFT_GIT_SHA);
  if (!o.client_only) std::printf("Server version: unavailable\n");
}

}  // namespace

void addVersionCommand(CLI::App& app) {
  auto o = std::make_shared<VersionOptions>();
  CLI::App* cmd = app.add_subcommand(
      "version",
      "Print the version of this client and of the control plane. The control plane's is "
      "\"unavailable\" when it cannot be reached (for now, always).");
  cmd->add_flag("--client", o->client_only, "print the client version only");
  addOutputOption(cmd, o->output);
  cmd->callback([o] { runVersion(*o); });
}

}  // namespace weft::cli
