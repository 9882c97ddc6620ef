// The proxy's side of identity (SPEC §3): a P-256 key generated at start and kept in memory, a
// CSR for our identity, Certify() against the identity service over TLS (verified against the
// trust anchors and the service's own identity), and a refresh at 70 % of each leaf's life
// (bounded by the min/max refresh settings), with exponential back-off and jitter on failure.
//
// Runs on its own thread (blocking gRPC calls are fine there). Each new certificate becomes a
// TlsSnapshot handed to `publish`, which posts it to every worker. When the current leaf
// expires before a replacement arrives, `publish(nullptr)` is called: an expired leaf is never
// presented, and /ready turns 503.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <string>

#include "weft/common/result.h"
#include "weft/common/thread.h"
#include "weft/metrics/registry.h"
#include "weft/tls/context.h"

namespace weft::proxy {

struct IdentitySettings {
  std::string svc_addr;              // host:port of the identity service
  std::string svc_name;              // the identity service's own identity (TLS name)
  std::string local_name;            // our identity
  std::string trust_anchors_pem;     // the trust bundle (one or more roots)
  std::string token_file;            // proof of identity; re-read before every request
  std::chrono::seconds min_refresh{10};
  std::chrono::seconds max_refresh{std::chrono::hours(24)};
  std::chrono::seconds request_timeout{10};
};

class IdentityClient {
 public:
  IdentityClient(IdentitySettings settings, metrics::Registry& registry,
                 std::function<void(tls::TlsSnapshotPtr)> publish);
  ~IdentityClient();

  // Parses the anchors and makes the key and CSR; a bad setting fails here, at start-up.
  Status init();
  void start();
  void stop();
  // True while a valid certificate is held.
  [[nodiscard]] bool ready() const { return ready_.load(); }

 private:
  struct Impl;
  void run();
  // One Certify round trip; on success, the leaf's NotAfter.
  Result<std::chrono::system_clock::time_point> refresh();

  IdentitySettings settings_;
  std::function<void(tls::TlsSnapshotPtr)> publish_;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> ready_{false};
  Mutex mu_;
  std::condition_variable_any wake_;
  bool stopping_ WEFT_GUARDED_BY(mu_) = false;
  std::unique_ptr<Thread> thread_;
  std::shared_ptr<metrics::Gauge> expiry_;
  std::shared_ptr<metrics::Counter> refreshes_;
  metrics::Family<metrics::Counter>& failures_;
};

}  // namespace weft::proxy
