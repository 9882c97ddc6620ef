// weft-proxy: wires configuration, metrics, workers, the inbound and outbound stacks and the
// admin server. The only place that names concrete implementations.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>

#include "weft/admin/server.h"
#include "proxy/config.h"
#include "proxy/http/http_proxy.h"
#include "proxy/identity/client.h"
#include "proxy/proxy_metrics.h"
#include "proxy/tcp/stack.h"
#include "weft/common/assert.h"
#include "weft/runtime/shutdown.h"
#include "weft/runtime/worker.h"
#include "weft/tls/context.h"

#include <asio/post.hpp>

extern char** environ;

namespace weft::proxy {
namespace {

constexpr int kExitConfig = 64;  // EX_USAGE: bad configuration, said once at start-up

std::vector<std::string> environNames() {
  std::vector<std::string> names;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    names.push_back(kv.substr(0, kv.find('=')));
  }
  return names;
}

std::optional<asio::ip::tcp::endpoint> toEndpoint(const std::optional<config::HostPort>& hp) {
  if (!hp) return std::nullopt;
  return asio::ip::tcp::endpoint(asio::ip::make_address(hp->host), hp->port);
}

StackSettings stackSettings(const ProxyConfig& c, Direction d,
                            std::shared_ptr<const MeshedEndpoints> meshed,
                            std::shared_ptr<const StaticEndpoints> endpoints) {
  StackSettings s;
  s.direction = d;
  const bool in = d == Direction::kInbound;
  s.listen = listenEndpoints(in ? c.inbound_listen : c.outbound_listen, c.ipv6);
  s.fixed_target = toEndpoint(in ? c.inbound_target : c.outbound_target);
  s.detect_timeout = c.detect_timeout;
  s.connect_timeout = in ? c.inbound_connect_timeout : c.outbound_connect_timeout;
  s.opaque_ports = c.opaque_ports;
  s.own_ports = {c.inbound_listen.port, c.outbound_listen.port, c.admin_listen.port,
                 c.control_listen.port};
  s.buffer_size = c.buffer_size;
  s.identity_enabled = !c.identity_disabled;
  s.tls_handshake_timeout = c.tls_handshake_timeout;
  s.meshed = std::move(meshed);
  s.mesh_port = c.inbound_listen.port;  // peers are assumed to use the same inbound port
  s.http1_limits.max_start_line = c.http_max_request_line;
  s.http1_limits.max_header_bytes = c.http_max_header_bytes;
  s.http1_limits.max_headers = c.http_max_headers;
  s.http_head_timeout = c.http_head_timeout;
  s.request_timeout = in ? c.inbound_request_timeout : c.outbound_request_timeout;
  if (!in) s.endpoints = std::move(endpoints);
  if (!in && !c.destination_addr.empty()) {
    auto hp = config::parseHostPort(c.destination_addr).value();  // validated by loadConfig
    DestinationSettings dest;
    dest.addr = asio::ip::tcp::endpoint(asio::ip::make_address(hp.host), hp.port);
    dest.networks = c.destination_networks;
    s.destination = dest;
  }
  return s;
}

int run() {
  auto loaded = loadConfig([](const char* n) { return std::getenv(n); }, environNames());
  if (!loaded) {
    std::fprintf(stderr, "weft-proxy: invalid configuration: %s\n", loaded.error().context.c_str());
    return kExitConfig;
  }
  const ProxyConfig& cfg = loaded->config;

  auto logger = spdlog::stderr_color_mt("weft-proxy");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%-5l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  for (const auto& w : loaded->warnings) spdlog::warn("{}", w);
  if (cfg.identity_disabled) {
    spdlog::warn("identity disabled by WEFT_PROXY_IDENTITY_DISABLED: connections are plaintext "
                 "(tls=\"disabled\"); for tests, benchmarks and bring-up only");
  }
  auto meshed = MeshedEndpoints::parse(cfg.static_identities);
  if (!meshed) {
    std::fprintf(stderr, "weft-proxy: invalid configuration: WEFT_PROXY_DESTINATION_STATIC_IDENTITIES: %s\n",
                 meshed.error().context.c_str());
    return kExitConfig;
  }
  auto meshed_ptr = std::make_shared<const MeshedEndpoints>(std::move(meshed).value());
  auto endpoints = StaticEndpoints::parse(cfg.static_endpoints);
  if (!endpoints) {
    std::fprintf(stderr, "weft-proxy: invalid configuration: WEFT_PROXY_DESTINATION_STATIC_ENDPOINTS: %s\n",
                 endpoints.error().context.c_str());
    return kExitConfig;
  }
  auto endpoints_ptr = std::make_shared<const StaticEndpoints>(std::move(endpoints).value());
  if (cfg.destination_addr.empty()) {
    spdlog::info("no destination service configured: forwarding to each connection's original "
                 "destination");
  } else {
    std::string nets;
    for (const auto& n : cfg.destination_networks) nets += (nets.empty() ? "" : ",") + n.toString();
    spdlog::info("destination service {}: looking up targets in {}", cfg.destination_addr, nets);
  }

  runtime::ShutdownSignal shutdown;  // before any thread starts

  metrics::Registry registry;
  ProxyMetrics metrics(registry);
  registry.addCollector([](std::string& out) {
    out += "# HELP proxy_build_info Proxy build info\n# TYPE proxy_build_info gauge\n";
    out += "proxy_build_info{version=\"" WEFT_VERSION "\",git_sha=\"" WEFT_GIT_SHA
           "\",profile=\"" WEFT_PROFILE "\",pgo=\"" WEFT_PGO "\",vendor=\"weft\"} 1\n";
    out += "# HELP weft_bug_total Internal invariant violations (each is a bug to report)\n";
    out += "# TYPE weft_bug_total counter\nweft_bug_total " + std::to_string(bugCounter().load()) + "\n";
  });
  registry.addCollector(metrics::renderProcessMetrics);

  TcpStack inbound(stackSettings(cfg, Direction::kInbound, meshed_ptr, endpoints_ptr), metrics);
  TcpStack outbound(stackSettings(cfg, Direction::kOutbound, meshed_ptr, endpoints_ptr), metrics);

  std::vector<std::unique_ptr<runtime::Worker>> workers;
  for (int i = 0; i < cfg.cores; ++i) {
    workers.push_back(std::make_unique<runtime::Worker>("weft-worker-" + std::to_string(i)));
    for (TcpStack* stack : {&inbound, &outbound}) {
      if (auto st = stack->bind(workers.back()->context()); !st) {
        std::fprintf(stderr, "weft-proxy: %s\n", st.error().context.c_str());
        return 1;
      }
    }
  }

  // Identity: each new certificate is posted to every worker's thread-local slot (no locks on
  // the data path); the admin server's /ready waits for the first one.
  std::unique_ptr<IdentityClient> identity;
  std::atomic<int> snapshots_pending{0};
  if (!cfg.identity_disabled) {
    IdentitySettings is;
    is.svc_addr = cfg.identity_svc_addr;
    is.svc_name = cfg.identity_svc_name;
    is.local_name = cfg.identity_local_name;
    is.trust_anchors_pem = cfg.identity_trust_anchors;
    is.token_file = cfg.identity_token_file;
    is.min_refresh = std::chrono::duration_cast<std::chrono::seconds>(cfg.identity_min_refresh);
    is.max_refresh = std::chrono::duration_cast<std::chrono::seconds>(cfg.identity_max_refresh);
    // Ready only once every worker holds the certificate: the count of workers still to install
    // the latest snapshot gates /ready.
    identity = std::make_unique<IdentityClient>(
        is, registry, [&workers, &snapshots_pending](tls::TlsSnapshotPtr snap) {
          snapshots_pending.fetch_add(static_cast<int>(workers.size()));
          for (auto& w : workers) {
            asio::post(w->context(), [snap, &snapshots_pending] {
              tls::setCurrentSnapshot(snap);
              snapshots_pending.fetch_sub(1);
            });
          }
        });
    if (auto st = identity->init(); !st) {
      std::fprintf(stderr, "weft-proxy: invalid configuration: %s\n", st.error().context.c_str());
      return kExitConfig;
    }
  }

  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};
  runtime::Worker admin_worker("weft-admin");
  admin::AdminHooks hooks;
  hooks.ready = [&] {
    return ready.load() && !draining.load() &&
           (!identity || (identity->ready() && snapshots_pending.load() == 0));
  };
  hooks.shutdown = [&shutdown] { shutdown.request(); };
  admin::useSpdlogLevel(hooks);
  admin::AdminServer admin(admin_worker.context(), registry, hooks);
  auto admin_ep = listenEndpoints(cfg.admin_listen, false).front();
  if (auto st = admin.listen(admin_ep); !st) {
    std::fprintf(stderr, "weft-proxy: %s\n", st.error().context.c_str());
    return 1;
  }
  admin.start();
  admin_worker.start();

  inbound.start();
  outbound.start();
  for (auto& w : workers) w->start();
  if (identity) identity->start();
  ready = true;
  spdlog::info("weft-proxy {} listening: inbound {}, outbound {}, admin {}, {} worker(s){}", WEFT_VERSION,
               cfg.inbound_listen.toString(), cfg.outbound_listen.toString(),
               cfg.admin_listen.toString(), cfg.cores,
               identity ? "; ready once the identity service has issued a certificate" : "");

  spdlog::info("shutting down on {}", shutdown.wait());

  // Graceful shutdown: stop accepting, let open connections finish, give up after the grace
  // period. A second signal ends the wait at once.
  draining = true;
  inbound.stopAccepting();
  outbound.stopAccepting();
  const auto deadline = std::chrono::steady_clock::now() + cfg.shutdown_grace_period;
  auto active = [&] { return inbound.activeConnections() + outbound.activeConnections(); };
  if (active() > 0) {
    spdlog::info("draining {} open connection(s), for at most {}", active(),
                 config::formatDuration(cfg.shutdown_grace_period));
  }
  while (active() > 0 && std::chrono::steady_clock::now() < deadline) {
    if (shutdown.anotherSignalWithin(std::chrono::milliseconds(100))) {
      spdlog::warn("second signal: not waiting for {} connection(s)", active());
      break;
    }
  }
  if (active() > 0) {
    spdlog::warn("grace period over: closing {} connection(s)", active());
  } else {
    spdlog::info("drained; exiting");
  }
  // Teardown order matters: join every loop, then drop the objects bound to the loops' contexts,
  // then the contexts themselves.
  if (identity) identity->stop();
  for (auto& w : workers) w->stopAndJoin();
  admin_worker.stopAndJoin();
  inbound.releaseAcceptors();
  outbound.releaseAcceptors();
  workers.clear();
  return 0;
}

}  // namespace
}  // namespace weft::proxy

// The allocator is chosen at link time (WEFT_MIMALLOC in CMakeLists.txt): nothing to set up here.
int main() { return weft::proxy::run(); }
