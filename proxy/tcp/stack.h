// The layer-4 stack of one direction: listener -> original destination -> loop guard ->
// protocol detection -> connect -> bidirectional forwarding. Inbound and outbound each build one
// (proxy/inbound/stack.cc, proxy/outbound/stack.cc) with their own settings.
//
// Threading: a TcpStack is shared, read-only after construction, by every worker; each worker
// runs its own acceptor (SO_REUSEPORT) and owns the connections it accepts. The only shared
// mutable state is the atomic connection count and the metric families (see registry.h).
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <atomic>
#include <map>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/discovery/destination_client.h"
#include "proxy/proxy_metrics.h"
#include "weft/config/values.h"
#include "weft/http1/codec.h"

namespace weft::proxy {

enum class Direction { kInbound, kOutbound };
std::string_view directionName(Direction d);

// "IP:PORT" ("[IP]:PORT" for IPv6), IPv4-mapped addresses shown as IPv4: the target_addr label.
std::string addrString(const asio::ip::tcp::endpoint& ep);

// The `tls` label and its companion (client_id, server_id or no_tls_reason) of a connection.
using TlsLabels = std::vector<std::pair<std::string, std::string>>;

class StaticEndpoints;
class HttpProxy;

// Which endpoints are Weft proxies, and with what identity: "IP=identity" applies to every port
// of that IP, "IP:PORT=identity" to one port (it wins). The static resolver behind
// WEFT_PROXY_DESTINATION_STATIC_IDENTITIES, until the destination service provides this.
class MeshedEndpoints {
 public:
  static Result<MeshedEndpoints> parse(std::string_view text);
  // The identity the endpoint must present, or nullptr when it is not meshed.
  [[nodiscard]] const std::string* identityFor(const asio::ip::tcp::endpoint& ep) const;
  [[nodiscard]] bool empty() const { return by_ip_.empty() && by_endpoint_.empty(); }

 private:
  std::map<asio::ip::address, std::string> by_ip_;
  std::map<asio::ip::tcp::endpoint, std::string> by_endpoint_;
};

struct StackSettings {
  Direction direction = Direction::kInbound;
  std::vector<asio::ip::tcp::endpoint> listen;        // first is the configured one
  std::optional<asio::ip::tcp::endpoint> fixed_target;  // instead of SO_ORIGINAL_DST
  std::chrono::milliseconds detect_timeout{10'000};
  std::chrono::milliseconds connect_timeout{1'000};
  config::PortSet opaque_ports;
  std::vector<uint16_t> own_ports;  // every port this proxy listens on, for the loop guard
  std::size_t buffer_size = 16 * 1024;
  // Identity on: inbound terminates mesh TLS addressed to us, outbound originates it to meshed
  // endpoints. Off: every connection is plaintext and labelled tls="disabled".
  bool identity_enabled = false;
  std::chrono::milliseconds tls_handshake_timeout{10'000};
  // Outbound: the identity each meshed endpoint must prove (static resolver until discovery).
  std::shared_ptr<const MeshedEndpoints> meshed;
  // Outbound: meshed endpoints are dialled on their proxy's inbound port, with the transport
  // header naming the application's port (so opaque ports need no detection on the far side).
  // Inbound: the port of our own inbound listener, where only mesh TLS is accepted.
  uint16_t mesh_port = 4143;

  // HTTP (docs/dev/http.md).
  http1::Limits http1_limits;
  std::chrono::milliseconds http_head_timeout{10'000};
  // Time from a request's head to its response's head; 0 = unbounded. Past it: 504.
  std::chrono::milliseconds request_timeout{0};
  // Outbound: load-balanced services of the static resolver (tests, bring-up).
  std::shared_ptr<const StaticEndpoints> endpoints;
  // Outbound: the destination service, for targets inside its networks (SPEC §4).
  std::optional<DestinationSettings> destination;
  std::size_t max_connections_per_endpoint = 10'000;
  // Peak-EWMA (SPEC §2): the latency assumed for an endpoint not yet measured, and the decay.
  std::chrono::milliseconds ewma_default_rtt{30};
  std::chrono::milliseconds ewma_decay{10'000};
};

class TcpStack {
 public:
  TcpStack(StackSettings settings, ProxyMetrics& metrics);
  ~TcpStack();

  // Binds this worker's acceptors (SO_REUSEPORT, so every worker binds the same addresses).
  // Fails with the address and the system's reason, e.g. "address already in use".
  Status bind(asio::io_context& worker);
  // Starts accepting on every acceptor bound so far.
  void start();
  // Stops accepting (graceful shutdown); connections already accepted go on. Thread-safe.
  void stopAccepting();

  // Destroys the acceptors. Call only once every worker loop has been stopped and joined, and
  // before the workers' io_contexts are destroyed.
  void releaseAcceptors() { acceptors_.clear(); }

  [[nodiscard]] int64_t activeConnections() const { return active_->load(); }
  [[nodiscard]] const StackSettings& settings() const { return settings_; }

  class TargetCache;

 private:
  struct Acceptor;
  StackSettings settings_;
  ProxyMetrics& metrics_;
  std::shared_ptr<std::atomic<int64_t>> active_;
  std::vector<std::shared_ptr<Acceptor>> acceptors_;  // written only before start()
};

// Builds the endpoints to listen on: the configured one and, when ipv6 is set and the address is
// 0.0.0.0 or 127.0.0.1, its IPv6 twin ([::] or [::1]).
std::vector<asio::ip::tcp::endpoint> listenEndpoints(const config::HostPort& hp, bool ipv6);

}  // namespace weft::proxy
