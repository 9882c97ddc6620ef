// The identity service (SPEC §3): the Certify RPC of api/weft/v1/identity.proto, served over TLS.
//
//  Certifier           Certify's logic, free of gRPC: authenticate -> validate the CSR -> issue.
//  IdentityMetrics     identity_* Prometheus series.
//  IdentityController  the running component: the gRPC server (TLS, with a serving certificate it
//                      issues itself and rotates), and a loop that polls the issuer files.
//
// Threads: gRPC's own threads run Certify (concurrently); one worker thread, "weft-identity", runs
// the loop; AdminServer runs elsewhere and only reads metrics and ready().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "control/identity/authenticator.h"
#include "control/identity/issuer.h"
#include "weft/common/result.h"
#include "weft/metrics/registry.h"
#include "weft/runtime/time_source.h"

namespace weft::control::identity {

struct ServiceOptions {
  std::chrono::seconds leaf_lifetime{std::chrono::hours(24)};
  std::chrono::seconds backdate{20};
  std::string trust_domain = "cluster.local";
  std::string control_plane_ns = "weft";
  // How often the issuer files are read for changes (a change is applied after it holds still
  // for one more interval, see IssuerWatcher::poll).
  std::chrono::milliseconds poll_interval{1000};
};

// Reasons of identity_certificate_rejections_total; each is also the Error kind Certifier
// returns, and every one is exported from start (at 0).
inline constexpr std::string_view kRejectionReasons[] = {
    "unauthenticated", "malformed_csr",       "bad_signature", "wrong_key_type",
    "wrong_san",       "forbidden_extension", "no_issuer",
};

class IdentityMetrics {
 public:
  explicit IdentityMetrics(metrics::Registry& registry);

  void issued() { issued_->inc(); }
  // `reason` is one of kRejectionReasons; anything else is counted as malformed_csr.
  void rejected(std::string_view reason);
  void issuerLoaded(const Issuer& issuer);
  void reload(bool success) { (success ? reload_success_ : reload_failure_)->inc(); }

  [[nodiscard]] uint64_t issuedForTest() const { return issued_->value(); }
  [[nodiscard]] uint64_t rejectedForTest(std::string_view reason) const;
  [[nodiscard]] uint64_t reloadsForTest(bool success) const {
    return (success ? reload_success_ : reload_failure_)->value();
  }

 private:
  std::shared_ptr<metrics::Counter> issued_;
  std::vector<std::pair<std::string, std::shared_ptr<metrics::Counter>>> rejections_;
  std::shared_ptr<metrics::Gauge> issuer_expiration_;
  std::shared_ptr<metrics::Counter> reload_success_;
  std::shared_ptr<metrics::Counter> reload_failure_;
};

struct Certified {
  std::string leaf_der;
  std::vector<std::string> intermediates_der;  // the issuer first
  weft::identity::SystemTime valid_until;
};

// Thread-safe; every dependency must outlive it.
class Certifier {
 public:
  Certifier(ServiceOptions options, const IssuerWatcher& issuer, Authenticator& authenticator,
            IdentityMetrics& metrics, const runtime::TimeSource& time);

  // The leaf for `identity`, or an Error whose kind is the rejection reason (one of
  // kRejectionReasons, counted) or "internal" (a bug or resource failure, logged, not counted).
  // Inputs are untrusted.
  Result<Certified> certify(std::string_view identity, std::string_view token,
                            std::string_view csr_der);

  // The names this service may issue end with this: ".serviceaccount.identity.<cp-ns>.<td>".
  [[nodiscard]] const std::string& suffix() const { return suffix_; }

 private:
  Error reject(Error e);

  const ServiceOptions options_;
  const std::string suffix_;
  const IssuerWatcher& issuer_;
  Authenticator& authenticator_;
  IdentityMetrics& metrics_;
  const runtime::TimeSource& time_;
};

// gRPC status codes Certify answers with, by Error kind (the proto's contract).
enum class CertifyStatus { kUnauthenticated, kInvalidArgument, kUnavailable, kInternal };
CertifyStatus certifyStatusFor(std::string_view error_kind);

// The running identity service.
//
// Its own TLS: at start, on every issuer reload, and at 70 % of the current certificate's life,
// it issues itself a serving certificate for servingName() from the current issuer, with a fresh
// P-256 key that never leaves memory. The gRPC server takes it through a certificate-config
// fetcher (grpc_ssl_server_credentials_create_options_using_config_fetcher), which gRPC consults
// before each TLS handshake: a new certificate applies to the next connection, with no restart
// and no effect on connections already open.
class IdentityController {
 public:
  struct Options {
    ServiceOptions service;
    std::string listen = "0.0.0.0:8080";  // gRPC address: "IPv4:port" or "[IPv6]:port"
  };

  // Starts serving. Fails when the serving certificate cannot be issued or the address cannot be
  // bound. Everything passed in must outlive the controller except what it takes ownership of.
  static Result<std::unique_ptr<IdentityController>> start(Options options,
                                                           std::unique_ptr<IssuerWatcher> issuer,
                                                           AuthenticatorPtr authenticator,
                                                           metrics::Registry& registry,
                                                           const runtime::TimeSource& time);
  ~IdentityController();
  IdentityController(const IdentityController&) = delete;
  IdentityController& operator=(const IdentityController&) = delete;

  // The bound gRPC port (useful with port 0).
  [[nodiscard]] int port() const;
  // identity.<cp-ns>.serviceaccount.identity.<cp-ns>.<trust-domain>
  [[nodiscard]] const std::string& servingName() const;
  // True while serving with an issuer that has not expired.
  [[nodiscard]] bool ready() const;
  // Stops accepting, lets RPCs in flight finish for up to `grace`, stops the loop. Idempotent.
  void shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));

  [[nodiscard]] IdentityMetrics& metricsForTest();
  // Loop iterations run so far (each polls the issuer and renews the serving cert if due).
  [[nodiscard]] uint64_t ticksForTest() const;
  [[nodiscard]] const IssuerWatcher& issuerForTest() const;

 private:
  struct State;
  explicit IdentityController(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace weft::control::identity
