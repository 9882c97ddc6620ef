// The proxy's client of the destination service (SPEC §4, api/weft/v1/destination.proto):
// for a target the application dialled, the endpoints behind it with their identity and metric
// labels, kept current by one streaming `Get` per target.
//
// Why not grpc++: the proxy does not link it (include/weft/grpc/wire.h says why); the stream is
// an ordinary HTTP/2 request on the proxy's own H2Client, and the few messages are decoded with
// the hand-written wire reader (tested against the generated code in test/proxy/discovery, and
// fuzzed: test/fuzz/destination_update_fuzz_test.cc).
//
// Behaviour:
//  - Only targets inside WEFT_PROXY_DESTINATION_NETWORKS are looked up; others go to their
//    original destination, as without a mesh.
//  - The first request for a target subscribes and waits for the first answer (bounded);
//    later requests use the cached answer, which the stream keeps current.
//  - An unknown target (NOT_FOUND) is answered at once and remembered for a few seconds.
//  - Controller down: the last known endpoints keep serving; the stream reconnects with
//    jittered back-off, and its first answer replaces them. A target never resolved fails
//    fast with "discovery_unavailable".
//  - A subscription unused for the idle timeout is cancelled.
//
// Threading: one client per worker, used only on that worker's thread (no locks).
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "weft/common/result.h"
#include "weft/config/values.h"
#include "weft/metrics/registry.h"

namespace weft::proxy {

struct DiscoveredEndpoint {
  asio::ip::tcp::endpoint addr;
  std::string identity;      // meshed: the identity its proxy must prove; empty otherwise
  uint16_t inbound_port = 0; // meshed and opaque: the peer proxy's inbound port (else 0)
  uint32_t weight = 10000;
  metrics::Labels labels;    // dst_* labels: the set's, then the address's
  // The Discovery version at which the address (re)joined the set: an address removed and later
  // added again gets a new one, so the balancer forgets what it learned about its earlier life.
  // 0 until published (applyUpdate leaves it 0 for a new address, keeps it for a present one).
  uint64_t since = 0;
};

struct Discovery {
  bool exists = false;  // false: the destination service does not know the target
  bool opaque = false;  // the target port is opaque
  std::vector<DiscoveredEndpoint> endpoints;
  uint64_t version = 0;  // distinct for every published state
};
using DiscoveryPtr = std::shared_ptr<const Discovery>;

struct DestinationSettings {
  asio::ip::tcp::endpoint addr;          // the destination service (plaintext gRPC for now)
  std::vector<config::Subnet> networks;  // targets inside these are looked up
  std::chrono::milliseconds first_answer_timeout{3000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds not_found_ttl{5000};
};

// Decodes one weft.destination.v1.Update and applies it to `state` (exposed for tests and the
// fuzz target). False on malformed input (the state is then unspecified: drop the stream).
bool applyUpdate(std::string_view update, Discovery& state);
// A new stream's first Update is the whole set (as Linkerd's destination sends it): it replaces
// what the previous stream said, so an address removed while the stream was down goes. `since`
// carries over for the addresses still there. False on malformed input, `state` untouched.
bool applyFirstUpdate(std::string_view update, Discovery& state);
// The GetDestination request message for `path` ("IP:port").
std::string encodeGetDestination(std::string_view path);

class DestinationClient : public std::enable_shared_from_this<DestinationClient> {
 public:
  DestinationClient(asio::any_io_executor ex, DestinationSettings settings);
  ~DestinationClient();
  DestinationClient(const DestinationClient&) = delete;
  DestinationClient& operator=(const DestinationClient&) = delete;

  [[nodiscard]] bool inScope(const asio::ip::tcp::endpoint& target) const;
  // The current discovery of `target`, or Error "discovery_unavailable".
  asio::awaitable<Result<DiscoveryPtr>> resolve(const asio::ip::tcp::endpoint& target);
  // Cancels every stream (graceful shutdown).
  void shutdown();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace weft::proxy
