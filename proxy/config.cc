#include "proxy/config.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <iterator>
#include <string_view>

namespace weft::proxy {
namespace {

constexpr std::string_view kDefaultOpaquePorts = "25,587,3306,4444,5432,6379,9300,11211";
// Linkerd's default clusterNetworks: private and shared address space.
constexpr std::string_view kDefaultDestinationNetworks =
    "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8";
constexpr std::array kLogLevels = {"trace", "debug", "info", "warn", "error", "off"};

// Every variable we read; anything else starting with WEFT_PROXY_ is reported as unknown.
constexpr std::array<std::string_view, 36> kKnown = {
    "WEFT_PROXY_IDENTITY_SVC_ADDR", "WEFT_PROXY_IDENTITY_SVC_NAME",
    "WEFT_PROXY_IDENTITY_LOCAL_NAME", "WEFT_PROXY_IDENTITY_TRUST_ANCHORS",
    "WEFT_PROXY_IDENTITY_TRUST_ANCHORS_FILE", "WEFT_PROXY_IDENTITY_TOKEN_FILE",
    "WEFT_PROXY_IDENTITY_MIN_REFRESH", "WEFT_PROXY_IDENTITY_MAX_REFRESH",
    "WEFT_PROXY_DESTINATION_STATIC_IDENTITIES",
    "WEFT_PROXY_INBOUND_LISTEN_ADDR", "WEFT_PROXY_OUTBOUND_LISTEN_ADDR",
    "WEFT_PROXY_ADMIN_LISTEN_ADDR",   "WEFT_PROXY_CONTROL_LISTEN_ADDR",
    "WEFT_PROXY_IPV6",                "WEFT_PROXY_DETECT_TIMEOUT",
    "WEFT_PROXY_OPAQUE_PORTS",        "WEFT_PROXY_INBOUND_CONNECT_TIMEOUT",
    "WEFT_PROXY_OUTBOUND_CONNECT_TIMEOUT", "WEFT_PROXY_INBOUND_TARGET_ADDR",
    "WEFT_PROXY_OUTBOUND_TARGET_ADDR", "WEFT_PROXY_CORES",
    "WEFT_PROXY_LOG",                 "WEFT_PROXY_SHUTDOWN_GRACE_PERIOD",
    "WEFT_PROXY_BUFFER_SIZE",         "WEFT_PROXY_IDENTITY_DISABLED",
    "WEFT_PROXY_DESTINATION_ADDR",    "WEFT_PROXY_TLS_HANDSHAKE_TIMEOUT",
    "WEFT_PROXY_DESTINATION_DISABLED", "WEFT_PROXY_DESTINATION_STATIC_ENDPOINTS",
    "WEFT_PROXY_HTTP_MAX_REQUEST_LINE", "WEFT_PROXY_HTTP_MAX_HEADER_BYTES",
    "WEFT_PROXY_HTTP_MAX_HEADERS",     "WEFT_PROXY_HTTP_HEAD_TIMEOUT",
    "WEFT_PROXY_INBOUND_REQUEST_TIMEOUT", "WEFT_PROXY_OUTBOUND_REQUEST_TIMEOUT",
    "WEFT_PROXY_DESTINATION_NETWORKS"};

Error named(std::string_view var, const Error& e) {
  return Error::internal("invalid_config", std::string(var) + ": " + e.context);
}

}  // namespace

Result<LoadedConfig> loadConfig(const Getenv& getenv, const std::vector<std::string>& environ_names) {
  LoadedConfig loaded;
  ProxyConfig& c = loaded.config;
  c.opaque_ports = config::PortSet::parse(kDefaultOpaquePorts).value();

  auto get = [&](std::string_view var) -> std::optional<std::string> {
    const char* v = getenv(std::string(var).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };

  struct Addr {
    std::string_view var;
    config::HostPort* out;
  };
  for (auto [var, out] : {Addr{"WEFT_PROXY_INBOUND_LISTEN_ADDR", &c.inbound_listen},
                          Addr{"WEFT_PROXY_OUTBOUND_LISTEN_ADDR", &c.outbound_listen},
                          Addr{"WEFT_PROXY_ADMIN_LISTEN_ADDR", &c.admin_listen},
                          Addr{"WEFT_PROXY_CONTROL_LISTEN_ADDR", &c.control_listen}}) {
    if (auto v = get(var)) {
      auto hp = config::parseHostPort(*v);
      if (!hp) return named(var, hp.error());
      *out = *hp;
    }
  }
  for (auto [var, out] : {std::pair{"WEFT_PROXY_INBOUND_TARGET_ADDR", &c.inbound_target},
                          std::pair{"WEFT_PROXY_OUTBOUND_TARGET_ADDR", &c.outbound_target}}) {
    if (auto v = get(var); v && !v->empty()) {
      auto hp = config::parseHostPort(*v);
      if (!hp) return named(var, hp.error());
      *out = *hp;
    }
  }
  struct Dur {
    std::string_view var;
    std::chrono::milliseconds* out;
  };
  for (auto [var, out] : {Dur{"WEFT_PROXY_DETECT_TIMEOUT", &c.detect_timeout},
                          Dur{"WEFT_PROXY_INBOUND_CONNECT_TIMEOUT", &c.inbound_connect_timeout},
                          Dur{"WEFT_PROXY_OUTBOUND_CONNECT_TIMEOUT", &c.outbound_connect_timeout},
                          Dur{"WEFT_PROXY_SHUTDOWN_GRACE_PERIOD", &c.shutdown_grace_period},
                          Dur{"WEFT_PROXY_IDENTITY_MIN_REFRESH", &c.identity_min_refresh},
                          Dur{"WEFT_PROXY_IDENTITY_MAX_REFRESH", &c.identity_max_refresh},
                          Dur{"WEFT_PROXY_TLS_HANDSHAKE_TIMEOUT", &c.tls_handshake_timeout},
                          Dur{"WEFT_PROXY_HTTP_HEAD_TIMEOUT", &c.http_head_timeout},
                          Dur{"WEFT_PROXY_INBOUND_REQUEST_TIMEOUT", &c.inbound_request_timeout},
                          Dur{"WEFT_PROXY_OUTBOUND_REQUEST_TIMEOUT", &c.outbound_request_timeout}}) {
    if (auto v = get(var)) {
      auto d = config::parseDuration(*v);
      if (!d) return named(var, d.error());
      if (d->count() == 0 && var != "WEFT_PROXY_SHUTDOWN_GRACE_PERIOD" &&
          var.find("REQUEST_TIMEOUT") == std::string_view::npos) {
        return Error::internal("invalid_config", std::string(var) + ": must be greater than 0");
      }
      *out = *d;
    }
  }
  if (auto v = get("WEFT_PROXY_OPAQUE_PORTS")) {
    auto ports = config::PortSet::parse(*v);
    if (!ports) return named("WEFT_PROXY_OPAQUE_PORTS", ports.error());
    c.opaque_ports = *ports;
  }
  auto parseInt = [](const std::string& s, long lo, long hi, long* out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && p == s.data() + s.size() && *out >= lo && *out <= hi;
  };
  if (auto v = get("WEFT_PROXY_CORES")) {
    long n = 0;
    if (!parseInt(*v, 1, 256, &n)) {
      return Error::internal("invalid_config", "WEFT_PROXY_CORES: \"" + *v +
                                                   "\" is not a number of worker threads from 1 to 256");
    }
    c.cores = static_cast<int>(n);
  }
  if (auto v = get("WEFT_PROXY_BUFFER_SIZE")) {
    long n = 0;
    if (!parseInt(*v, 1024, 1 << 20, &n)) {
      return Error::internal("invalid_config", "WEFT_PROXY_BUFFER_SIZE: \"" + *v +
                                                   "\" is not a byte count from 1024 to 1048576");
    }
    c.buffer_size = static_cast<std::size_t>(n);
  }
  struct Limit {
    std::string_view var;
    std::size_t* out;
    long lo;
    long hi;
  };
  for (auto [var, out, lo, hi] : {Limit{"WEFT_PROXY_HTTP_MAX_REQUEST_LINE", &c.http_max_request_line, 64, 1 << 20},
                                  Limit{"WEFT_PROXY_HTTP_MAX_HEADER_BYTES", &c.http_max_header_bytes, 256, 1 << 24},
                                  Limit{"WEFT_PROXY_HTTP_MAX_HEADERS", &c.http_max_headers, 8, 10000}}) {
    if (auto v = get(var)) {
      long n = 0;
      if (!parseInt(*v, lo, hi, &n)) {
        return Error::internal("invalid_config", std::string(var) + ": \"" + *v + "\" is not a number from " +
                                                     std::to_string(lo) + " to " + std::to_string(hi));
      }
      *out = static_cast<std::size_t>(n);
    }
  }
  if (auto v = get("WEFT_PROXY_LOG")) {
    if (std::find(kLogLevels.begin(), kLogLevels.end(), *v) == kLogLevels.end()) {
      return Error::internal("invalid_config",
                             "WEFT_PROXY_LOG: \"" + *v +
                                 "\" is not a log level: trace, debug, info, warn, error or off");
    }
    c.log_level = *v;
  }
  for (auto [var, out] : {std::pair{"WEFT_PROXY_IPV6", &c.ipv6},
                          std::pair{"WEFT_PROXY_IDENTITY_DISABLED", &c.identity_disabled}}) {
    if (auto v = get(var)) {
      auto b = config::parseBool(*v);
      if (!b) return named(var, b.error());
      *out = *b;
    }
  }
  if (auto v = get("WEFT_PROXY_DESTINATION_ADDR"); v && !v->empty()) {
    auto hp = config::parseHostPort(*v);
    if (!hp) return named("WEFT_PROXY_DESTINATION_ADDR", hp.error());
    c.destination_addr = *v;
  }
  {
    auto v = get("WEFT_PROXY_DESTINATION_NETWORKS");
    auto nets = config::parseSubnets(v ? *v : kDefaultDestinationNetworks);
    if (!nets) return named("WEFT_PROXY_DESTINATION_NETWORKS", nets.error());
    c.destination_networks = std::move(nets).value();
  }
  if (auto v = get("WEFT_PROXY_DESTINATION_STATIC_IDENTITIES")) c.static_identities = *v;
  if (auto v = get("WEFT_PROXY_DESTINATION_STATIC_ENDPOINTS")) c.static_endpoints = *v;

  if (!c.identity_disabled) {
    auto required = [&](std::string_view var, std::string* out) -> Status {
      auto v = get(var);
      if (!v || v->empty()) {
        return Error::internal(
            "invalid_config",
            std::string(var) + ": required unless WEFT_PROXY_IDENTITY_DISABLED=1 (identity is "
                               "how the proxy gets its mTLS certificate)");
      }
      *out = *v;
      return okStatus();
    };
    for (auto [var, out] : {std::pair{"WEFT_PROXY_IDENTITY_SVC_ADDR", &c.identity_svc_addr},
                            std::pair{"WEFT_PROXY_IDENTITY_LOCAL_NAME", &c.identity_local_name},
                            std::pair{"WEFT_PROXY_IDENTITY_TOKEN_FILE", &c.identity_token_file}}) {
      if (auto st = required(var, out); !st) return st.error();
    }
    if (auto hp = config::parseHostPort(c.identity_svc_addr); !hp) {
      return named("WEFT_PROXY_IDENTITY_SVC_ADDR", hp.error());
    }
    c.identity_svc_name = get("WEFT_PROXY_IDENTITY_SVC_NAME")
                              .value_or("identity.weft.serviceaccount.identity.weft.cluster.local");
    if (auto v = get("WEFT_PROXY_IDENTITY_TRUST_ANCHORS"); v && !v->empty()) {
      c.identity_trust_anchors = *v;
    } else if (auto f = get("WEFT_PROXY_IDENTITY_TRUST_ANCHORS_FILE"); f && !f->empty()) {
      std::ifstream in(*f);
      if (!in) {
        return Error::internal("invalid_config",
                               "WEFT_PROXY_IDENTITY_TRUST_ANCHORS_FILE: cannot read \"" + *f + "\"");
      }
      c.identity_trust_anchors.assign(std::istreambuf_iterator<char>(in), {});
    } else {
      return Error::internal("invalid_config",
                             "WEFT_PROXY_IDENTITY_TRUST_ANCHORS: required (PEM roots), or "
                             "WEFT_PROXY_IDENTITY_TRUST_ANCHORS_FILE, unless "
                             "WEFT_PROXY_IDENTITY_DISABLED=1");
    }
    if (c.identity_min_refresh > c.identity_max_refresh) {
      return Error::internal("invalid_config",
                             "WEFT_PROXY_IDENTITY_MIN_REFRESH: must not exceed "
                             "WEFT_PROXY_IDENTITY_MAX_REFRESH");
    }
  }

  for (const auto& name : environ_names) {
    if (name.rfind("WEFT_PROXY_", 0) == 0 &&
        std::find(kKnown.begin(), kKnown.end(), name) == kKnown.end()) {
      loaded.warnings.push_back("unknown setting " + name +
                                " is ignored (see docs/proxy-config.md for the list)");
    }
  }
  return loaded;
}

}  // namespace weft::proxy
