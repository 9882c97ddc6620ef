// weft-proxy's configuration: every setting comes from a WEFT_PROXY_* environment variable,
// documented in docs/proxy-config.md. Validated once at start-up; a bad value is an Error that
// names the variable and the accepted form, and main() exits 64 with it.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "weft/common/result.h"
#include "weft/config/values.h"

namespace weft::proxy {

struct ProxyConfig {
  config::HostPort inbound_listen{"0.0.0.0", 4143, false};
  config::HostPort outbound_listen{"127.0.0.1", 4140, false};
  config::HostPort admin_listen{"0.0.0.0", 4191, false};
  config::HostPort control_listen{"0.0.0.0", 4190, false};
  // Also listen on the IPv6 twin of a wildcard/loopback IPv4 listen address ([::] / [::1]),
  // so ip6tables-redirected connections are served too.
  bool ipv6 = true;

  std::chrono::milliseconds detect_timeout{std::chrono::seconds(10)};
  config::PortSet opaque_ports;  // defaults set by loadConfig
  std::chrono::milliseconds inbound_connect_timeout{std::chrono::seconds(1)};
  std::chrono::milliseconds outbound_connect_timeout{std::chrono::seconds(1)};

  // Benchmarks and bring-up: send every connection of a listener here instead of to its
  // original destination (no iptables needed).
  std::optional<config::HostPort> inbound_target;
  std::optional<config::HostPort> outbound_target;

  int cores = 1;
  std::string log_level = "info";
  std::chrono::milliseconds shutdown_grace_period{std::chrono::seconds(120)};
  std::size_t buffer_size = 16 * 1024;  // per direction per connection

  bool identity_disabled = false;
  // Identity (SPEC §3), required unless identity_disabled.
  std::string identity_svc_addr;       // WEFT_PROXY_IDENTITY_SVC_ADDR, IP:PORT
  std::string identity_svc_name;       // WEFT_PROXY_IDENTITY_SVC_NAME
  std::string identity_local_name;     // WEFT_PROXY_IDENTITY_LOCAL_NAME
  std::string identity_trust_anchors;  // PEM: WEFT_PROXY_IDENTITY_TRUST_ANCHORS(_FILE)
  std::string identity_token_file;     // WEFT_PROXY_IDENTITY_TOKEN_FILE
  std::chrono::milliseconds identity_min_refresh{std::chrono::seconds(10)};
  std::chrono::milliseconds identity_max_refresh{std::chrono::hours(24)};
  std::chrono::milliseconds tls_handshake_timeout{std::chrono::seconds(10)};
  // The static resolver's meshed endpoints: "IP[:PORT]=identity,...".
  std::string static_identities;

  // The static resolver's load-balanced services: "ADDR:PORT=EP,EP;..." (validated at start).
  std::string static_endpoints;
  // HTTP limits: request line (414), field section bytes and count (431).
  std::size_t http_max_request_line = 8 * 1024;
  std::size_t http_max_header_bytes = 64 * 1024;
  std::size_t http_max_headers = 100;
  std::chrono::milliseconds http_head_timeout{std::chrono::seconds(10)};
  // Request head -> response head; 0 = unbounded (then no 504 for slow responses).
  std::chrono::milliseconds inbound_request_timeout{0};
  std::chrono::milliseconds outbound_request_timeout{0};

  std::string destination_addr;  // empty: forward to the original destination
  // Targets inside these are looked up in the destination service (Linkerd's clusterNetworks).
  std::vector<config::Subnet> destination_networks;
};

using Getenv = std::function<const char*(const char*)>;

struct LoadedConfig {
  ProxyConfig config;
  std::vector<std::string> warnings;  // e.g. unknown WEFT_PROXY_* variables, said once at start
};

// Reads and validates every WEFT_PROXY_* variable. `environ_names` are the names of all set
// variables, used to warn about misspelt WEFT_PROXY_* ones.
Result<LoadedConfig> loadConfig(const Getenv& getenv, const std::vector<std::string>& environ_names);

}  // namespace weft::proxy
