// weft-init: installs (or, with --remove, deletes) the nat rules that redirect a pod's TCP
// traffic to its sidecar proxy, in the network namespace it runs in, for IPv4 and IPv6.
// SPEC §2 "Interception" and §9. The rules themselves are weft/iptables/rules.h; this file parses
// flags, checks privileges, and runs save -> plan -> restore once per family.
//
// Exit status: 0 done, 1 failed, 2 bad usage.

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "weft/config/values.h"
#include "weft/iptables/exec.h"
#include "weft/iptables/rules.h"

namespace {

using weft::iptables::Family;
using weft::iptables::Mode;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kCapNetAdmin = 12;
// iptables-restore holds the xtables lock (legacy) or one nft transaction; a minute is far beyond
// any healthy run and short enough that a wedged tool fails the init container visibly.
constexpr std::chrono::seconds kToolTimeout{60};
constexpr const char* kNeedsNetAdmin =
    "weft-init: needs CAP_NET_ADMIN in this network namespace (run as root, or give the init "
    "container NET_ADMIN and NET_RAW)";

struct Options {
  weft::iptables::Config rules;
  Mode mode = Mode::kNft;
  bool ipv6 = true;
  bool ipv6_explicit = false;  // --ipv6 given: IPv6 failures are errors, not warnings
  bool remove = false;
  bool dry_run = false;
};

void warn(const std::string& message) { std::cerr << "weft-init: warning: " << message << "\n"; }
void fail(const std::string& message) { std::cerr << "weft-init: " << message << "\n"; }

std::string firstLine(const std::string& text) {
  auto nl = text.find('\n');
  return nl == std::string::npos ? text : text.substr(0, nl);
}

std::string familyLabel(Family family) { return std::string(weft::iptables::familyName(family)); }

// The outcome of one family.
enum class Outcome { kDone, kSkipped, kFailed };

class FamilyRun {
 public:
  FamilyRun(const Options& options, Family family)
      : options_(options),
        family_(family),
        tools_(weft::iptables::toolsFor(options.mode, family)) {}

  Outcome run() {
    auto save = runTool({tools_.save, "-t", "nat"}, "");
    if (!save) return *save.error_outcome;
    auto table = weft::iptables::parseNatSave(save.output);
    if (!table) {
      fail(familyLabel(family_) + ": cannot read the output of " + tools_.save +
           " -t nat: " + table.error().message());
      return Outcome::kFailed;
    }
    for (const auto& w : table->warnings) {
      warn(familyLabel(family_) + ": " + tools_.save + " says \"" +
           w.substr(w.find_first_not_of("# ")) +
           "\": rules of the other iptables backend also apply to this namespace's traffic "
           "(see --iptables-mode)");
    }

    auto plan = options_.remove ? weft::iptables::planRemove(*table)
                                : weft::iptables::planApply(options_.rules, family_, *table);
    if (!plan.restore_input.empty()) {
      auto restored = runTool({tools_.restore, "--noflush", "--wait=10"}, plan.restore_input);
      if (!restored) return *restored.error_outcome;
    }
    std::cout << "weft-init: "
              << (options_.remove ? weft::iptables::describeRemove(family_, plan)
                                  : weft::iptables::describeApply(options_.rules, family_, plan))
              << "\n";
    return Outcome::kDone;
  }

 private:
  struct ToolResult {
    std::string output;
    std::optional<Outcome> error_outcome;  // set when the tool could not do its job
    explicit operator bool() const { return !error_outcome; }
  };

  ToolResult runTool(const std::vector<std::string>& argv, const std::string& input) {
    auto result = weft::iptables::runCommand(argv, input, kToolTimeout);
    if (!result) {
      const auto& e = result.error();
      if (e.kind == "not_found") {
        fail(argv[0] +
             ": not found in PATH; install the Debian package `iptables` (it provides "
             "the iptables-nft* and iptables-legacy* tools)");
      } else {
        fail(familyLabel(family_) + ": " + e.message());
      }
      return {{}, Outcome::kFailed};
    }
    if (result->exit_status != 0) {
      if (family_ == Family::kIpv6 && !options_.ipv6_explicit &&
          weft::iptables::looksLikeMissingKernelSupport(result->err)) {
        warn("ipv6: the ip6tables nat table is not available in this kernel (" + argv[0] + ": " +
             firstLine(result->err) +
             "); continuing with IPv4 only, so IPv6 TCP traffic is NOT intercepted. Pass "
             "--ipv6=false to skip IPv6 without this warning, or --ipv6=true to make it an error.");
        return {{}, Outcome::kSkipped};
      }
      std::string err = result->err.empty() ? result->out : result->err;
      while (!err.empty() && err.back() == '\n') err.pop_back();
      fail(familyLabel(family_) + ": " + argv[0] + " exited with status " +
           std::to_string(result->exit_status) + (err.empty() ? "" : ":\n" + err));
      return {{}, Outcome::kFailed};
    }
    return {std::move(result->out), std::nullopt};
  }

  const Options& options_;
  Family family_;
  weft::iptables::Tools tools_;
};

void printDryRun(const Options& options, Family family) {
  auto tools = weft::iptables::toolsFor(options.mode, family);
  weft::iptables::Plan plan;
  std::string assumption;
  if (options.remove) {
    plan = weft::iptables::planRemove(weft::iptables::appliedTable(options.rules, family));
    assumption = "a nat table holding the rules these flags install";
  } else {
    plan = weft::iptables::planApply(options.rules, family, weft::iptables::NatTable{});
    assumption = "a nat table without Weft rules";
  }
  // '#' lines are comments to iptables-restore, so this output can be fed to it as is.
  std::cout << "# weft-init --dry-run: " << familyLabel(family) << ", input for `" << tools.restore
            << " --noflush`, assuming " << assumption << "\n"
            << plan.restore_input;
}

// kExitOk when this process may change the nat table, else the exit status, message printed.
int checkNetAdmin() {
  std::ifstream file("/proc/self/status");
  std::stringstream text;
  text << file.rdbuf();
  auto has = weft::iptables::hasEffectiveCapability(text.str(), kCapNetAdmin);
  if (!has) {
    fail("cannot check capabilities: " + has.error().message());
    return kExitFailed;
  }
  if (!*has) {
    std::cerr << kNeedsNetAdmin << "\n";
    return kExitFailed;
  }
  return kExitOk;
}

// Parses the command line into `options`. Returns nothing to go on, or the exit status to stop
// with (0 after --help), having printed why.
std::optional<int> parseFlags(int argc, char** argv, Options& options) {
  CLI::App app{
      "weft-init: redirects this network namespace's TCP traffic to the Weft sidecar proxy.\n"
      "It installs nat chains WEFT_INBOUND (from PREROUTING, redirecting to --inbound-port) and\n"
      "WEFT_OUTBOUND (from OUTPUT, redirecting to --outbound-port), for IPv4 and IPv6, and can be\n"
      "run any number of times: the rules are rewritten whole, atomically per family, and rules\n"
      "not belonging to Weft are left alone. Needs CAP_NET_ADMIN (except --dry-run).",
      "weft-init"};
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "weft-init: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  app.footer(
      "Port lists are comma-separated ports and ranges, e.g. 25,587,8000-8010.\n"
      "Exit status: 0 success, 1 failure (nothing or only some families changed; the message\n"
      "says which), 2 bad usage.");

  auto& cfg = options.rules;
  int inbound_port = cfg.inbound_port;
  int outbound_port = cfg.outbound_port;
  std::string skip_inbound;
  std::string skip_outbound;
  std::string skip_subnets;
  std::string mode = "nft";

  app.add_option("--proxy-uid", cfg.proxy_uid,
                 "UID the proxy runs as; its own outbound connections are never redirected")
      ->capture_default_str()
      ->check(CLI::Range(0U, 4294967294U));
  app.add_option("--inbound-port", inbound_port,
                 "port the proxy's inbound listener accepts redirected inbound connections on")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--outbound-port", outbound_port,
                 "port the proxy's outbound listener accepts redirected outbound connections on")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--skip-inbound-ports", skip_inbound,
                 "inbound ports not redirected to the proxy. ADDED to 4190,4191 (the proxy's "
                 "control and admin ports), which are always skipped so probes and tap keep "
                 "reaching the proxy itself");
  app.add_option("--skip-outbound-ports", skip_outbound,
                 "outbound destination ports not redirected to the proxy (default: none)");
  app.add_option("--skip-subnets", skip_subnets,
                 "comma-separated destination CIDRs, IPv4 and IPv6 mixed, whose outbound "
                 "traffic is not redirected; each goes to the rules of its own family");
  app.add_flag("--remove", options.remove,
               "delete Weft's jumps and chains instead of installing them; succeeds when there "
               "is nothing to delete");
  auto* ipv6 = app.add_flag("--ipv6", options.ipv6,
                            "also set the IPv6 rules (--ipv6=false to skip them). Default: true; "
                            "if the kernel has no ip6tables nat table, weft-init warns and sets "
                            "IPv4 only, unless --ipv6=true was given explicitly, which makes that "
                            "an error")
                   ->capture_default_str();
  app.add_flag("--dry-run", options.dry_run,
               "print the iptables-restore input for each family and change nothing; reads "
               "nothing either, so it assumes a namespace without Weft rules (with --remove: one "
               "with them) and needs no capability");
  app.add_option("--iptables-mode", mode,
                 "iptables backend: nft (iptables-nft*, ip6tables-nft*) or legacy "
                 "(iptables-legacy*); use the one the node's kube-proxy/CNI uses")
      ->capture_default_str()
      ->check(CLI::IsMember({"nft", "legacy"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11's own codes (105, 106, ...) would leak its internals; our contract is 0 or 2.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  cfg.inbound_port = static_cast<uint16_t>(inbound_port);
  cfg.outbound_port = static_cast<uint16_t>(outbound_port);
  options.ipv6_explicit = ipv6->count() > 0;
  options.mode = mode == "legacy" ? Mode::kLegacy : Mode::kNft;

  auto usage = [](const std::string& flag, const weft::Error& e) -> std::optional<int> {
    std::cerr << "weft-init: " << flag << ": " << e.context
              << "\nRun with --help for more information.\n";
    return kExitUsage;
  };
  auto in_ports = weft::config::PortSet::parse(skip_inbound);
  if (!in_ports) return usage("--skip-inbound-ports", in_ports.error());
  cfg.skip_inbound_ports = std::move(in_ports).value();
  auto out_ports = weft::config::PortSet::parse(skip_outbound);
  if (!out_ports) return usage("--skip-outbound-ports", out_ports.error());
  cfg.skip_outbound_ports = std::move(out_ports).value();
  auto subnets = weft::config::parseSubnets(skip_subnets);
  if (!subnets) return usage("--skip-subnets", subnets.error());
  cfg.skip_subnets = std::move(subnets).value();
  return std::nullopt;
}

int run(int argc, char** argv) {
  Options options;
  if (auto stop = parseFlags(argc, argv, options)) return *stop;

  std::vector<Family> families{Family::kIpv4};
  if (options.ipv6) families.push_back(Family::kIpv6);

  if (options.dry_run) {
    for (auto family : families) printDryRun(options, family);
    return kExitOk;
  }
  if (int rc = checkNetAdmin(); rc != kExitOk) return rc;

  std::vector<std::string> done;
  for (auto family : families) {
    switch (FamilyRun(options, family).run()) {
      case Outcome::kDone:
        done.push_back(familyLabel(family));
        break;
      case Outcome::kSkipped:
        break;
      case Outcome::kFailed:
        if (!done.empty()) {
          fail("the " + done.front() + " rules were " + (options.remove ? "removed" : "installed") +
               " before this failure; running weft-init again is safe");
        }
        return kExitFailed;
    }
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // runCommand() precondition: a tool that exits before reading its input must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    // Only allocation failures and CLI11 misuse (a bug here) can get this far; flag parse
    // errors are handled in parseFlags().
    std::cerr << "weft-init: internal error: " << e.what() << "\n";
    return kExitFailed;
  }
}
