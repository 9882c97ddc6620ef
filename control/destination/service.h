// The destination service (SPEC §4): the streaming Get RPC of api/weft/v1/destination.proto over
// an EndpointSource.
//
//  DestinationMetrics     destination_* Prometheus series.
//  UpdateBuilder          EndpointSource answers -> wire Updates (gRPC-free apart from the
//                         generated messages; unit-testable).
//  DestinationController  the running component: the gRPC server.
//
// Threads: each Get stream runs on a gRPC thread of its own for its whole life (grpc++'s
// synchronous API), waiting for diffs that the source's thread queues for it. The source and the
// metrics registry are shared and thread-safe. AdminServer runs elsewhere and only reads metrics
// and ready().
//
// Transport: plaintext gRPC for now. The proxies' destination client does not exist yet; it will
// come with mTLS (the controller serving a certificate from the issuer, as the identity service
// does), see control/README.md.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "control/destination/registry.h"
#include "weft/common/result.h"
#include "weft/metrics/registry.h"

namespace weft::destination::v1 {  // generated from destination.proto
class Update;
}

namespace weft::control::destination {

struct ServiceOptions {
  std::string cluster_domain = "cluster.local";
  // For endpoint identities: <sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>.
  std::string trust_domain = "cluster.local";
  std::string control_plane_ns = "weft";
  // How often a waiting stream checks for cancellation (grpc++'s synchronous API has no
  // notification for it); bounds how long a cancelled stream holds its subscription.
  std::chrono::milliseconds cancel_check{100};
};

// Lookup results of destination_lookups_total; all exported from start.
inline constexpr std::string_view kLookupResults[] = {"found", "not_found", "invalid_target"};

class DestinationMetrics {
 public:
  explicit DestinationMetrics(metrics::Registry& registry);

  void lookup(std::string_view result);
  void streamOpened() { streams_->add(); }
  void streamClosed() { streams_->sub(); }
  void updateSent() { updates_->inc(); }

  [[nodiscard]] uint64_t lookupsForTest(std::string_view result) const;
  [[nodiscard]] int64_t streamsForTest() const { return streams_->value(); }
  [[nodiscard]] uint64_t updatesForTest() const { return updates_->value(); }

 private:
  std::vector<std::pair<std::string, std::shared_ptr<metrics::Counter>>> lookups_;
  std::shared_ptr<metrics::Gauge> streams_;
  std::shared_ptr<metrics::Counter> updates_;
};

// Turns a source's answers into the Updates of one stream. Remembers which addresses the client
// holds, so that a diff that empties the set is sent as no_endpoints{exists: true}.
class UpdateBuilder {
 public:
  explicit UpdateBuilder(const ServiceOptions& options) : options_(options) {}

  // The first message(s) of a stream for a known target: add{all} or no_endpoints{true}, with
  // the service info.
  std::vector<weft::destination::v1::Update> initial(const Resolution& r);
  // The messages for one diff (possibly several: remove, then add), the first carrying the
  // service info when it changed. Empty when there is nothing to say.
  std::vector<weft::destination::v1::Update> diff(const EndpointDiff& d);

 private:
  void addLabels(::weft::destination::v1::Update& u) const;

  const ServiceOptions& options_;
  std::set<std::string> held_;  // Endpoint::address() of what the client holds
  bool ip_target_ = false;
  std::string ns_;
  std::string name_;
};

// The running destination service.
class DestinationController {
 public:
  struct Options {
    ServiceOptions service;
    std::string listen = "0.0.0.0:8086";  // gRPC address: "IPv4:port" or "[IPv6]:port"
  };

  // Starts serving. Fails when the address cannot be bound. `source` and `registry` must
  // outlive the controller.
  static Result<std::unique_ptr<DestinationController>> start(Options options,
                                                              EndpointSource& source,
                                                              metrics::Registry& registry);
  ~DestinationController();
  DestinationController(const DestinationController&) = delete;
  DestinationController& operator=(const DestinationController&) = delete;

  // The bound gRPC port (useful with port 0).
  [[nodiscard]] int port() const;
  // True while serving with a synced source.
  [[nodiscard]] bool ready() const;
  // Stops accepting and ends every open stream (clients see UNAVAILABLE or CANCELLED and
  // reconnect elsewhere; proxies keep their last state, SPEC §4). Waits up to `grace` for the
  // streams to end. Idempotent.
  void shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));

  [[nodiscard]] DestinationMetrics& metricsForTest();

 private:
  struct State;
  explicit DestinationController(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace weft::control::destination
