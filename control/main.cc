// weft-controller: the control plane, one subcommand per component (SPEC §1). Today: `identity`
// (and its token tool `identity add-token`) and `destination`; `injector` and `policy` follow.
//
// Exit status: 0 done, 1 failed (e.g. an issuer refused at start), 2 bad usage.

#include <signal.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <asio/ip/address.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "control/destination/registry.h"
#include "control/destination/service.h"
#include "control/identity/authenticator.h"
#include "control/identity/issuer.h"
#include "control/identity/service.h"
#include "weft/admin/server.h"
#include "weft/common/assert.h"
#include "weft/config/values.h"
#include "weft/identity/certs.h"
#include "weft/metrics/registry.h"
#include "weft/runtime/time_source.h"
#include "weft/runtime/shutdown.h"
#include "weft/runtime/worker.h"

namespace weft::control {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;


struct IdentityFlags {
  std::string listen = "0.0.0.0:8080";
  std::string admin_listen = "0.0.0.0:9990";
  std::string issuer_cert;
  std::string issuer_key;
  std::string trust_anchors;
  std::string tokens;
  std::string leaf_lifetime = "24h";
  std::string backdate = "20s";
  std::string trust_domain = "cluster.local";
  std::string control_plane_ns = "weft";
  std::string log = "info";
};

struct DestinationFlags {
  std::string listen = "0.0.0.0:8086";
  std::string admin_listen = "0.0.0.0:9996";
  std::string state_dir;
  std::string cluster_domain = "cluster.local";
  std::string trust_domain = "cluster.local";
  std::string control_plane_ns = "weft";
  std::string log = "info";
};

struct AddTokenFlags {
  std::string tokens;
  std::string identity;
};

int usage(const std::string& command, const std::string& flag, const std::string& why) {
  std::cerr << "weft-controller " << command << ": " << flag << ": " << why
            << "\nRun with --help for more information.\n";
  return kExitUsage;
}

void setUpLogging(const std::string& name, spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%-5l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  spdlog::set_level(level);
}

// --- weft-controller identity add-token ---------------------------------------------------------

int runAddToken(const AddTokenFlags& flags) {
  if (!weft::identity::isValidIdentityName(flags.identity)) {
    return usage("identity add-token", "--identity",
                 "\"" + flags.identity +
                     "\" is not an identity name (lowercase DNS name, e.g. "
                     "web.default.serviceaccount.identity.weft.cluster.local)");
  }
  auto token = identity::generateToken();
  if (!token) {
    std::cerr << "weft-controller identity add-token: " << token.error().message() << "\n";
    return kExitFailed;
  }
  auto st = identity::upsertTokenDigest(flags.tokens, flags.identity, identity::hashToken(*token));
  if (!st) {
    std::cerr << "weft-controller identity add-token: cannot update " << flags.tokens << ": "
              << st.error().message() << "\n";
    return kExitFailed;
  }
  std::cout << *token << "\n";
  return kExitOk;
}

// --- weft-controller identity -------------------------------------------------------------------

struct IdentitySettings {
  identity::IdentityController::Options controller;
  config::HostPort admin_listen;
  spdlog::level::level_enum log_level = spdlog::level::info;
};

// Checks every flag's value; nullopt after printing the usage error.
// Flag checks shared by every subcommand; each returns why the value is refused, if it is.
std::optional<std::string> namespaceProblem(const std::string& ns) {
  if (weft::identity::isValidIdentityName(ns) && ns.find('.') == std::string::npos) return std::nullopt;
  return "\"" + ns + "\" is not a Kubernetes namespace name (a DNS label)";
}

std::optional<std::string> logLevelProblem(const std::string& level) {
  if (spdlog::level::from_str(level) != spdlog::level::off || level == "off") return std::nullopt;
  return "\"" + level + "\" is not trace, debug, info, warn, error or off";
}

std::optional<IdentitySettings> checkIdentityFlags(const IdentityFlags& f, int& exit_code) {
  const std::string cmd = "identity";
  auto bad = [&](const std::string& flag, const std::string& why) {
    exit_code = usage(cmd, flag, why);
    return std::nullopt;
  };
  IdentitySettings s;
  auto listen = config::parseHostPort(f.listen);
  if (!listen) return bad("--listen", listen.error().context);
  s.controller.listen = listen->toString();
  auto admin = config::parseHostPort(f.admin_listen);
  if (!admin) return bad("--admin-listen", admin.error().context);
  s.admin_listen = *admin;

  for (auto [flag, value] :
       {std::pair<const char*, const std::string*>{"--issuer-cert", &f.issuer_cert},
        {"--issuer-key", &f.issuer_key},
        {"--trust-anchors", &f.trust_anchors}}) {
    if (value->empty()) return bad(flag, "required: a PEM file");
  }
  if (f.tokens.empty()) {
    return bad("--tokens",
               "required: the tokens file of local mode (create entries with `weft-controller "
               "identity add-token`)");
  }

  auto lifetime = config::parseDuration(f.leaf_lifetime);
  if (!lifetime) return bad("--leaf-lifetime", lifetime.error().context);
  auto life = std::chrono::duration_cast<std::chrono::seconds>(*lifetime);
  if (life < std::chrono::seconds(10) || life > std::chrono::hours(24 * 365)) {
    return bad("--leaf-lifetime", "must be between 10s and 8760h (a year)");
  }
  auto backdate = config::parseDuration(f.backdate);
  if (!backdate) return bad("--backdate", backdate.error().context);
  auto back = std::chrono::duration_cast<std::chrono::seconds>(*backdate);
  if (back > std::chrono::hours(1)) return bad("--backdate", "must be at most 1h");
  s.controller.service.leaf_lifetime = life;
  s.controller.service.backdate = back;

  if (!weft::identity::isValidIdentityName(f.trust_domain)) {
    return bad("--trust-domain", "\"" + f.trust_domain + "\" is not a lowercase DNS name");
  }
  if (auto why = namespaceProblem(f.control_plane_ns)) return bad("--control-plane-namespace", *why);
  s.controller.service.trust_domain = f.trust_domain;
  s.controller.service.control_plane_ns = f.control_plane_ns;

  s.log_level = spdlog::level::from_str(f.log);
  if (auto why = logLevelProblem(f.log)) return bad("--log", *why);
  return s;
}

int runIdentity(const IdentityFlags& flags) {
  int exit_code = kExitOk;
  auto settings = checkIdentityFlags(flags, exit_code);
  if (!settings) return exit_code;
  setUpLogging("weft-identity", settings->log_level);

  const auto& time = runtime::RealTimeSource::instance();
  identity::IssuerFiles files{flags.issuer_cert, flags.issuer_key, flags.trust_anchors};
  auto watcher = identity::IssuerWatcher::open(files, time.wall());
  if (!watcher) {
    // SPEC §3: refuse to start with an issuer that is expired or not signed by the anchors,
    // saying which check failed and on which file.
    std::fprintf(stderr, "weft-controller identity: refusing to start: %s\n",
                 watcher.error().context.c_str());
    return kExitFailed;
  }
  auto authenticator = identity::LocalTokenAuthenticator::open(flags.tokens);
  if (!authenticator) {
    std::fprintf(stderr, "weft-controller identity: %s\n", authenticator.error().context.c_str());
    return kExitFailed;
  }
  {
    auto issuer = (*watcher)->current();
    spdlog::info("issuer \"{}\" from {}, valid until {}, sha256 {}", issuer->subject, files.cert,
                 identity::formatTime(issuer->not_after), issuer->fingerprint);
    if (issuer->not_after - time.wall() < settings->controller.service.leaf_lifetime) {
      spdlog::warn(
          "the issuer expires within one leaf lifetime ({}): leaves are cut short to "
          "its NotAfter; rotate it soon",
          identity::formatTime(issuer->not_after));
    }
  }

  runtime::ShutdownSignal shutdown;  // before any thread starts

  metrics::Registry registry;
  registry.addCollector([](std::string& out) {
    out += "# HELP weft_bug_total Internal invariant violations (each is a bug to report)\n";
    out += "# TYPE weft_bug_total counter\nweft_bug_total " + std::to_string(bugCounter().load()) +
           "\n";
  });
  registry.addCollector(metrics::renderProcessMetrics);

  auto controller =
      identity::IdentityController::start(settings->controller, std::move(watcher).value(),
                                          std::move(authenticator).value(), registry, time);
  if (!controller) {
    std::fprintf(stderr, "weft-controller identity: %s\n", controller.error().context.c_str());
    return kExitFailed;
  }
  identity::IdentityController& ctl = **controller;

  runtime::Worker admin_worker("weft-admin");
  admin::AdminHooks hooks;
  hooks.ready = [&ctl] { return ctl.ready(); };
  hooks.shutdown = [&shutdown] { shutdown.request(); };
  admin::useSpdlogLevel(hooks);
  admin::AdminServer admin(admin_worker.context(), registry, hooks);
  asio::ip::tcp::endpoint admin_ep(asio::ip::make_address(settings->admin_listen.host),
                                   settings->admin_listen.port);
  if (auto st = admin.listen(admin_ep); !st) {
    std::fprintf(stderr, "weft-controller identity: admin %s: %s\n",
                 settings->admin_listen.toString().c_str(), st.error().context.c_str());
    ctl.shutdown(std::chrono::seconds(0));
    return kExitFailed;
  }
  admin.start();
  admin_worker.start();
  spdlog::info("weft-controller identity ready: gRPC (TLS) on {} as {}, admin on {}",
               settings->controller.listen, ctl.servingName(), settings->admin_listen.toString());

  spdlog::info("shutting down on {}", shutdown.wait());
  // Certify is short: a few seconds let the calls in flight answer.
  ctl.shutdown(std::chrono::seconds(5));
  admin.stop();
  admin_worker.stopAndJoin();
  spdlog::info("stopped");
  return kExitOk;
}

// --- weft-controller destination ----------------------------------------------------------------

struct DestinationSettings {
  destination::DestinationController::Options controller;
  config::HostPort admin_listen;
  spdlog::level::level_enum log_level = spdlog::level::info;
};

// Checks every flag's value; nullopt after printing the usage error.
std::optional<DestinationSettings> checkDestinationFlags(const DestinationFlags& f,
                                                         int& exit_code) {
  auto bad = [&](const std::string& flag, const std::string& why) {
    exit_code = usage("destination", flag, why);
    return std::nullopt;
  };
  DestinationSettings s;
  auto listen = config::parseHostPort(f.listen);
  if (!listen) return bad("--listen", listen.error().context);
  s.controller.listen = listen->toString();
  auto admin = config::parseHostPort(f.admin_listen);
  if (!admin) return bad("--admin-listen", admin.error().context);
  s.admin_listen = *admin;
  if (f.state_dir.empty()) {
    return bad("--state-dir", "required: the local-mode state directory (the registry is "
                              "<state-dir>/registry)");
  }
  for (auto [flag, value] :
       {std::pair<const char*, const std::string*>{"--cluster-domain", &f.cluster_domain},
        {"--trust-domain", &f.trust_domain}}) {
    if (!weft::identity::isValidIdentityName(*value)) {
      return bad(flag, "\"" + *value + "\" is not a lowercase DNS name");
    }
  }
  if (auto why = namespaceProblem(f.control_plane_ns)) return bad("--control-plane-namespace", *why);
  s.controller.service.cluster_domain = f.cluster_domain;
  s.controller.service.trust_domain = f.trust_domain;
  s.controller.service.control_plane_ns = f.control_plane_ns;
  s.log_level = spdlog::level::from_str(f.log);
  if (auto why = logLevelProblem(f.log)) return bad("--log", *why);
  return s;
}

int runDestination(const DestinationFlags& flags) {
  int exit_code = kExitOk;
  auto settings = checkDestinationFlags(flags, exit_code);
  if (!settings) return exit_code;
  setUpLogging("weft-destination", settings->log_level);

  runtime::ShutdownSignal shutdown;  // before any thread starts

  metrics::Registry registry;
  registry.addCollector([](std::string& out) {
    out += "# HELP weft_bug_total Internal invariant violations (each is a bug to report)\n";
    out += "# TYPE weft_bug_total counter\nweft_bug_total " + std::to_string(bugCounter().load()) +
           "\n";
  });
  registry.addCollector(metrics::renderProcessMetrics);

  // The local-mode registry; the Kubernetes source will be chosen here instead (SPEC §1 modes).
  destination::LocalRegistry source(destination::LocalRegistry::Options{flags.state_dir});
  source.start();
  auto controller =
      destination::DestinationController::start(settings->controller, source, registry);
  if (!controller) {
    std::fprintf(stderr, "weft-controller destination: %s\n",
                 controller.error().context.c_str());
    return kExitFailed;
  }
  destination::DestinationController& ctl = **controller;

  runtime::Worker admin_worker("weft-admin");
  admin::AdminHooks hooks;
  hooks.ready = [&ctl] { return ctl.ready(); };
  hooks.shutdown = [&shutdown] { shutdown.request(); };
  admin::useSpdlogLevel(hooks);
  admin::AdminServer admin(admin_worker.context(), registry, hooks);
  asio::ip::tcp::endpoint admin_ep(asio::ip::make_address(settings->admin_listen.host),
                                   settings->admin_listen.port);
  if (auto st = admin.listen(admin_ep); !st) {
    std::fprintf(stderr, "weft-controller destination: admin %s: %s\n",
                 settings->admin_listen.toString().c_str(), st.error().context.c_str());
    ctl.shutdown(std::chrono::seconds(0));
    return kExitFailed;
  }
  admin.start();
  admin_worker.start();
  spdlog::info(
      "weft-controller destination ready: gRPC (plaintext) on {}, registry {}, admin on {}",
      settings->controller.listen, source.registryDir(), settings->admin_listen.toString());

  spdlog::info("shutting down on {}", shutdown.wait());
  // Streams are endless: they are told to end, and get a moment to flush.
  ctl.shutdown(std::chrono::seconds(1));
  source.stop();
  admin.stop();
  admin_worker.stopAndJoin();
  spdlog::info("stopped");
  return kExitOk;
}

int run(int argc, char** argv) {
  CLI::App app{"weft-controller: the Weft control plane. Run one component per process.",
               "weft-controller"};
  app.failure_message([](const CLI::App* failed, const CLI::Error& e) {
    std::string where = failed ? failed->get_name() : std::string();
    return "weft-controller" + (where.empty() || where == "weft-controller" ? "" : " " + where) +
           ": " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  app.require_subcommand(1);
  app.footer("Exit status: 0 success, 1 failure, 2 bad usage.");
  app.set_version_flag("--version", WEFT_VERSION " (" WEFT_GIT_SHA ")");

  IdentityFlags id;
  auto* identity_cmd = app.add_subcommand(
      "identity",
      "the identity service: issues each proxy its leaf certificate (gRPC Certify over TLS) "
      "from the issuer in --issuer-cert/--issuer-key, after checking the proxy's token");
  identity_cmd->require_subcommand(0, 1);
  identity_cmd
      ->add_option("--listen", id.listen, "gRPC (TLS) listen address, IPv4:PORT or [IPv6]:PORT")
      ->capture_default_str();
  identity_cmd
      ->add_option("--admin-listen", id.admin_listen, "admin HTTP address: /metrics, /live, /ready")
      ->capture_default_str();
  identity_cmd->add_option("--issuer-cert", id.issuer_cert,
                           "PEM issuer certificate (an ECDSA P-256 CA signed by a trust anchor); "
                           "reloaded when it changes");
  identity_cmd->add_option("--issuer-key", id.issuer_key, "PEM private key of the issuer");
  identity_cmd->add_option("--trust-anchors", id.trust_anchors,
                           "PEM bundle of trust anchors (roots); may hold several, for rotation");
  identity_cmd->add_option("--tokens", id.tokens,
                           "local-mode tokens file: `<identity> sha256:<hex>` per line; reloaded "
                           "when it changes");
  identity_cmd
      ->add_option("--leaf-lifetime", id.leaf_lifetime,
                   "lifetime of issued leaves (never past the issuer's NotAfter)")
      ->capture_default_str();
  identity_cmd
      ->add_option("--backdate", id.backdate,
                   "NotBefore of issued leaves is this far in the past, for clock skew")
      ->capture_default_str();
  identity_cmd->add_option("--trust-domain", id.trust_domain, "the mesh's trust domain")
      ->capture_default_str();
  identity_cmd
      ->add_option("--control-plane-namespace", id.control_plane_ns,
                   "the control plane's namespace (part of every identity name)")
      ->capture_default_str();
  identity_cmd->add_option("--log", id.log, "log level: trace, debug, info, warn, error, off")
      ->capture_default_str();

  AddTokenFlags add;
  auto* add_token_cmd = identity_cmd->add_subcommand(
      "add-token",
      "make a new token for --identity, record its SHA-256 in --tokens (replacing the "
      "identity's previous token), and print the token on stdout");
  add_token_cmd->add_option("--tokens", add.tokens, "the tokens file (created 0600 if missing)")
      ->required();
  add_token_cmd
      ->add_option("--identity", add.identity,
                   "identity name, e.g. web.default.serviceaccount.identity.weft."
                   "cluster.local")
      ->required();

  DestinationFlags dst;
  auto* destination_cmd = app.add_subcommand(
      "destination",
      "the destination service: streams each proxy the endpoints of the service or IP:port it "
      "connects to (gRPC Get), with identity, protocol hint and metric labels, from the "
      "local-mode registry in --state-dir");
  destination_cmd
      ->add_option("--listen", dst.listen,
                   "gRPC (plaintext for now) listen address, IPv4:PORT or [IPv6]:PORT")
      ->capture_default_str();
  destination_cmd
      ->add_option("--admin-listen", dst.admin_listen,
                   "admin HTTP address: /metrics, /live, /ready")
      ->capture_default_str();
  destination_cmd->add_option("--state-dir", dst.state_dir,
                              "local-mode state directory; services and workloads are read from "
                              "<state-dir>/registry and re-read every 500ms");
  destination_cmd
      ->add_option("--cluster-domain", dst.cluster_domain,
                   "DNS domain of services: <svc>.<ns>.svc.<cluster-domain>")
      ->capture_default_str();
  destination_cmd
      ->add_option("--trust-domain", dst.trust_domain,
                   "the mesh's trust domain (part of each endpoint's identity)")
      ->capture_default_str();
  destination_cmd
      ->add_option("--control-plane-namespace", dst.control_plane_ns,
                   "the control plane's namespace (part of each endpoint's identity)")
      ->capture_default_str();
  destination_cmd->add_option("--log", dst.log, "log level: trace, debug, info, warn, error, off")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11's own codes (105, 106, ...) would leak its internals; our contract is 0 or 2.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (add_token_cmd->parsed()) return runAddToken(add);
  if (identity_cmd->parsed()) return runIdentity(id);
  if (destination_cmd->parsed()) return runDestination(dst);
  return kExitUsage;  // require_subcommand(1) makes this unreachable
}

}  // namespace
}  // namespace weft::control

int main(int argc, char** argv) { return weft::control::run(argc, argv); }
