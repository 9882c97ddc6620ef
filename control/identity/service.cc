#include "control/identity/service.h"

#include <grpc/grpc_security.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <exception>
#include <optional>

#include "weft/runtime/worker.h"
#include "weft/v1/identity.grpc.pb.h"

namespace weft::control::identity {
namespace {

namespace wid = weft::identity;
namespace v1 = ::weft::identity::v1;
using std::chrono::seconds;

// A CSR is a few hundred bytes; anything far larger is not one and is refused before parsing.
constexpr std::size_t kMaxCsrBytes = 16 * 1024;
// gRPC refuses larger requests before they reach Certify.
constexpr int kMaxRequestBytes = 64 * 1024;
// SPEC §3: refresh at 70 % of lifetime, bounded 10 s..24 h.
constexpr double kRefreshFraction = 0.7;
constexpr seconds kMinRefresh{10};
constexpr seconds kMaxRefresh{24 * 3600};

int64_t epochSeconds(wid::SystemTime t) {
  return std::chrono::duration_cast<seconds>(t.time_since_epoch()).count();
}

bool isCsrReason(std::string_view kind) {
  return kind == "malformed_csr" || kind == "bad_signature" || kind == "wrong_key_type" ||
         kind == "wrong_san" || kind == "forbidden_extension";
}

// "<sa>.<ns>" + suffix, each of sa and ns one DNS label.
bool isIssuableName(std::string_view name, std::string_view suffix) {
  if (!wid::isValidIdentityName(name) || name.size() <= suffix.size() ||
      name.substr(name.size() - suffix.size()) != suffix) {
    return false;
  }
  std::string_view prefix = name.substr(0, name.size() - suffix.size());
  auto dot = prefix.find('.');
  return dot != std::string_view::npos && dot > 0 && dot + 1 < prefix.size() &&
         prefix.find('.', dot + 1) == std::string_view::npos;
}

}  // namespace

// --- metrics ------------------------------------------------------------------------------------

IdentityMetrics::IdentityMetrics(metrics::Registry& registry) {
  issued_ = registry
                .counter("identity_certificates_issued_total",
                         "Leaf certificates issued by the identity service")
                .get({});
  auto& rejections = registry.counter(
      "identity_certificate_rejections_total",
      "Certify requests refused, by reason (unauthenticated, malformed_csr, bad_signature, "
      "wrong_key_type, wrong_san, forbidden_extension, no_issuer)");
  for (std::string_view reason : kRejectionReasons) {
    rejections_.emplace_back(std::string(reason),
                             rejections.get({{"reason", std::string(reason)}}));
  }
  issuer_expiration_ = registry
                           .gauge("identity_issuer_expiration_timestamp_seconds",
                                  "NotAfter of the issuer certificate in use, in seconds since "
                                  "the Unix epoch")
                           .get({});
  auto& reloads = registry.counter(
      "identity_issuer_reloads_total",
      "Reloads of the issuer after its files changed, by result (a failed reload keeps the "
      "previous issuer)");
  reload_success_ = reloads.get({{"result", "success"}});
  reload_failure_ = reloads.get({{"result", "failure"}});
}

void IdentityMetrics::rejected(std::string_view reason) {
  for (auto& [name, counter] : rejections_) {
    if (name == reason) {
      counter->inc();
      return;
    }
  }
  rejected("malformed_csr");
}

uint64_t IdentityMetrics::rejectedForTest(std::string_view reason) const {
  for (const auto& [name, counter] : rejections_) {
    if (name == reason) return counter->value();
  }
  return 0;
}

void IdentityMetrics::issuerLoaded(const Issuer& issuer) {
  issuer_expiration_->set(epochSeconds(issuer.not_after));
}

// --- Certifier ----------------------------------------------------------------------------------

CertifyStatus certifyStatusFor(std::string_view error_kind) {
  if (error_kind == "unauthenticated") return CertifyStatus::kUnauthenticated;
  if (error_kind == "no_issuer") return CertifyStatus::kUnavailable;
  if (isCsrReason(error_kind)) return CertifyStatus::kInvalidArgument;
  return CertifyStatus::kInternal;
}

Certifier::Certifier(ServiceOptions options, const IssuerWatcher& issuer,
                     Authenticator& authenticator, IdentityMetrics& metrics,
                     const runtime::TimeSource& time)
    : options_(std::move(options)),
      suffix_(".serviceaccount.identity." + options_.control_plane_ns + "." +
              options_.trust_domain),
      issuer_(issuer),
      authenticator_(authenticator),
      metrics_(metrics),
      time_(time) {}

Error Certifier::reject(Error e) {
  metrics_.rejected(e.kind);
  return e;
}

Result<Certified> Certifier::certify(std::string_view identity, std::string_view token,
                                     std::string_view csr_der) {
  // Authentication first: a caller that proves nothing learns nothing else about the service.
  if (auto st = authenticator_.authenticate(identity, token); !st) {
    return reject(Error::downstream("unauthenticated", st.error().context));
  }
  // The tokens file is trusted, but a mistaken line must still not yield a name outside this
  // mesh's trust domain.
  if (!isIssuableName(identity, suffix_)) {
    return reject(Error::downstream(
        "wrong_san", "\"" + printableName(identity) +
                         "\" is not a name this service issues; names are <serviceaccount>."
                         "<namespace>" +
                         suffix_));
  }
  if (csr_der.size() > kMaxCsrBytes) {
    return reject(Error::downstream(
        "malformed_csr",
        "the CSR is " + std::to_string(csr_der.size()) + " bytes; a CSR is at most 16 KiB"));
  }
  auto csr = wid::validateCsr(csr_der, identity);
  if (!csr) {
    Error e = csr.error();
    if (!isCsrReason(e.kind)) e.kind = "malformed_csr";
    e.source = ErrorSource::kDownstream;
    return reject(std::move(e));
  }

  const auto now = time_.wall();
  IssuerSharedPtr issuer = issuer_.current();
  if (!issuer) return reject(Error::internal("no_issuer", "no issuer is loaded"));
  if (now >= issuer->not_after) {
    return reject(Error::internal("no_issuer", "the issuer expired at " +
                                                   formatTime(issuer->not_after) +
                                                   " and no valid replacement has been loaded"));
  }
  auto leaf = wid::issueLeaf(*csr, issuer->cert.get(), issuer->key.get(), options_.leaf_lifetime,
                             options_.backdate, now);
  if (!leaf) {
    return Error::internal("internal", "issuing the certificate failed: " + leaf.error().message());
  }
  metrics_.issued();
  Certified out;
  out.leaf_der = wid::certToDer(leaf->get());
  out.intermediates_der.push_back(issuer->cert_der);
  out.valid_until = wid::describe(leaf->get()).not_after;
  return out;
}

// --- the gRPC server ----------------------------------------------------------------------------

namespace {

// The serving key and chain, handed to gRPC through its certificate-config fetcher. gRPC calls
// fetch() before every TLS handshake, under its own lock, so it must be cheap: it builds a new
// config only when set() was called since the last fetch. gRPC makes one security connector per
// listening address and this service listens on one, so "delivered" means "to that connector".
class ServingCertSource {
 public:
  ServingCertSource() = default;
  ServingCertSource(const ServingCertSource&) = delete;
  ServingCertSource& operator=(const ServingCertSource&) = delete;
  ~ServingCertSource() { OPENSSL_cleanse(key_pem_.data(), key_pem_.size()); }

  // `roots_pem` is never used to verify anyone (clients are not asked for a certificate; the
  // token is their proof), but gRPC 1.51 asserts that a fetched config has roots.
  void set(std::string key_pem, std::string chain_pem, std::string roots_pem) {
    MutexLock lock(mu_);
    OPENSSL_cleanse(key_pem_.data(), key_pem_.size());
    key_pem_ = std::move(key_pem);
    chain_pem_ = std::move(chain_pem);
    roots_pem_ = std::move(roots_pem);
    ++generation_;
  }

  static grpc_ssl_certificate_config_reload_status fetch(
      void* user_data, grpc_ssl_server_certificate_config** config) {
    auto* self = static_cast<ServingCertSource*>(user_data);
    MutexLock lock(self->mu_);
    if (self->generation_ == 0) return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    if (self->generation_ == self->delivered_) return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    grpc_ssl_pem_key_cert_pair pair{self->key_pem_.c_str(), self->chain_pem_.c_str()};
    // Copies the strings; gRPC owns and destroys the config.
    *config = grpc_ssl_server_certificate_config_create(self->roots_pem_.c_str(), &pair, 1);
    if (*config == nullptr) return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    self->delivered_ = self->generation_;
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
  }

 private:
  Mutex mu_;
  std::string key_pem_ WEFT_GUARDED_BY(mu_);
  std::string chain_pem_ WEFT_GUARDED_BY(mu_);
  std::string roots_pem_ WEFT_GUARDED_BY(mu_);
  uint64_t generation_ WEFT_GUARDED_BY(mu_) = 0;
  uint64_t delivered_ WEFT_GUARDED_BY(mu_) = 0;
};

// grpc++ 1.51 has no C++ wrapper for SSL credentials with a config fetcher, so this adapts the C
// credentials object: ServerCredentials' extension point is AddPortToServer().
class FetcherServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit FetcherServerCredentials(ServingCertSource* source)
      : creds_(grpc_ssl_server_credentials_create_with_options(
            grpc_ssl_server_credentials_create_options_using_config_fetcher(
                GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, &ServingCertSource::fetch, source))) {}
  ~FetcherServerCredentials() override { grpc_server_credentials_release(creds_); }
  FetcherServerCredentials(const FetcherServerCredentials&) = delete;
  FetcherServerCredentials& operator=(const FetcherServerCredentials&) = delete;

  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  grpc_server_credentials* creds_;
};

grpc::StatusCode grpcCode(std::string_view kind) {
  switch (certifyStatusFor(kind)) {
    case CertifyStatus::kUnauthenticated:
      return grpc::StatusCode::UNAUTHENTICATED;
    case CertifyStatus::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case CertifyStatus::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case CertifyStatus::kInternal:
      break;
  }
  return grpc::StatusCode::INTERNAL;
}

class IdentityGrpcService final : public v1::Identity::Service {
 public:
  explicit IdentityGrpcService(Certifier& certifier) : certifier_(certifier) {}

  grpc::Status Certify(grpc::ServerContext* context, const v1::CertifyRequest* request,
                       v1::CertifyResponse* response) override {
    // Errors are values below; this only stops a bad_alloc or a library exception from unwinding
    // into gRPC.
    try {
      const std::string who = printableName(request->identity());
      auto result = certifier_.certify(request->identity(), request->token(),
                                       request->certificate_signing_request());
      if (!result) {
        const Error& e = result.error();
        if (e.kind == "internal") {
          spdlog::error("certify {} from {}: {}", who, context->peer(), e.message());
          return grpc::Status(grpc::StatusCode::INTERNAL, "internal error; see the log");
        }
        spdlog::info("certify {} from {}: refused: {}", who, context->peer(), e.message());
        return grpc::Status(grpcCode(e.kind), e.message());
      }
      response->set_leaf_certificate(std::move(result->leaf_der));
      for (auto& der : result->intermediates_der) {
        response->add_intermediate_certificates(std::move(der));
      }
      response->mutable_valid_until()->set_seconds(epochSeconds(result->valid_until));
      response->mutable_valid_until()->set_nanos(0);
      spdlog::info("certify {} from {}: issued, valid until {}", who, context->peer(),
                   formatTime(result->valid_until));
      return grpc::Status::OK;
    } catch (const std::exception& e) {
      spdlog::error("certify: unexpected exception: {}", e.what());
    } catch (...) {
      spdlog::error("certify: unexpected exception");
    }
    return grpc::Status(grpc::StatusCode::INTERNAL, "internal error; see the log");
  }

 private:
  Certifier& certifier_;
};

}  // namespace

// --- IdentityController -------------------------------------------------------------------------

struct IdentityController::State {
  State(Options opts, std::unique_ptr<IssuerWatcher> watcher, AuthenticatorPtr auth,
        metrics::Registry& registry, const runtime::TimeSource& ts)
      : options(std::move(opts)),
        issuer(std::move(watcher)),
        authenticator(std::move(auth)),
        time(ts),
        metrics(registry),
        certifier(options.service, *issuer, *authenticator, metrics, time),
        serving_name(wid::identityName("identity", options.service.control_plane_ns,
                                       options.service.control_plane_ns,
                                       options.service.trust_domain)),
        service(certifier) {}

  // Issues the serving certificate from the current issuer and hands it to gRPC.
  Status refreshServingCert(wid::SystemTime now);
  void tick();
  void schedule();

  const Options options;
  std::unique_ptr<IssuerWatcher> issuer;
  AuthenticatorPtr authenticator;
  const runtime::TimeSource& time;
  IdentityMetrics metrics;
  Certifier certifier;
  const std::string serving_name;
  IdentityGrpcService service;
  ServingCertSource serving;  // outlives `server`, which calls into it

  // Loop thread only (and start(), before the loop runs).
  IssuerSharedPtr serving_issuer;  // the issuer that signed the serving certificate
  wid::SystemTime serving_refresh_at{};
  bool serving_failing = false;

  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::atomic<bool> serving_started{false};
  std::atomic<bool> stopped{false};
  std::atomic<uint64_t> ticks{0};
  runtime::Worker worker{"weft-identity"};
  std::optional<asio::steady_timer> timer;
};

Status IdentityController::State::refreshServingCert(wid::SystemTime now) {
  IssuerSharedPtr current = issuer->current();
  if (now >= current->not_after) {
    return Error::internal("no_issuer", "the issuer expired at " + formatTime(current->not_after));
  }
  auto key = wid::generateP256Key();
  if (!key) return key.error();
  auto csr_der = wid::createCsr(key->get(), serving_name);
  if (!csr_der) return csr_der.error();
  auto csr = wid::validateCsr(*csr_der, serving_name);
  if (!csr) return csr.error();
  auto leaf = wid::issueLeaf(*csr, current->cert.get(), current->key.get(),
                             options.service.leaf_lifetime, options.service.backdate, now);
  if (!leaf) return leaf.error();
  const auto not_after = wid::describe(leaf->get()).not_after;
  serving.set(wid::privateKeyToPem(key->get()), wid::certToPem(leaf->get()) + current->cert_pem,
              current->anchors_pem);

  auto life = std::chrono::duration_cast<seconds>(not_after - now);
  auto refresh = std::clamp(seconds(static_cast<int64_t>(life.count() * kRefreshFraction)),
                            kMinRefresh, kMaxRefresh);
  serving_refresh_at = now + refresh;
  serving_issuer = std::move(current);
  spdlog::info("serving certificate for {} issued, valid until {}, renewal at {}", serving_name,
               formatTime(not_after), formatTime(serving_refresh_at));
  return okStatus();
}

void IdentityController::State::tick() {
  const auto now = time.wall();
  switch (issuer->poll(now)) {
    case IssuerWatcher::PollResult::kReloaded: {
      auto current = issuer->current();
      metrics.reload(true);
      metrics.issuerLoaded(*current);
      spdlog::info("issuer reloaded from {}: \"{}\", valid until {}, sha256 {}",
                   issuer->files().cert, current->subject, formatTime(current->not_after),
                   current->fingerprint);
      break;
    }
    case IssuerWatcher::PollResult::kRejected: {
      metrics.reload(false);
      auto current = issuer->current();
      auto error = issuer->lastError();
      spdlog::error(
          "the issuer files changed but the new issuer is refused ({}); still issuing "
          "with \"{}\", valid until {}",
          error ? error->message() : std::string("unknown reason"), current->subject,
          formatTime(current->not_after));
      break;
    }
    case IssuerWatcher::PollResult::kUnchanged:
    case IssuerWatcher::PollResult::kSettling:
      break;
  }
  if (issuer->current() != serving_issuer || now >= serving_refresh_at) {
    if (auto st = refreshServingCert(now); !st) {
      if (!serving_failing) {
        spdlog::error("cannot renew the serving certificate for {}: {}; retrying every {} ms",
                      serving_name, st.error().message(), options.service.poll_interval.count());
      }
      serving_failing = true;
    } else {
      serving_failing = false;
    }
  }
}

void IdentityController::State::schedule() {
  timer->expires_after(options.service.poll_interval);
  timer->async_wait([this](const asio::error_code& ec) {
    if (ec || stopped.load()) return;
    tick();
    ticks.fetch_add(1);
    schedule();
  });
}

Result<std::unique_ptr<IdentityController>> IdentityController::start(
    Options options, std::unique_ptr<IssuerWatcher> issuer, AuthenticatorPtr authenticator,
    metrics::Registry& registry, const runtime::TimeSource& time) {
  auto state = std::make_unique<State>(std::move(options), std::move(issuer),
                                       std::move(authenticator), registry, time);
  State& s = *state;
  s.metrics.issuerLoaded(*s.issuer->current());
  if (auto st = s.refreshServingCert(time.wall()); !st) {
    return Error::internal("serving_cert", "cannot issue the service's own certificate for " +
                                               s.serving_name + ": " + st.error().message());
  }

  grpc::ServerBuilder builder;
  auto creds = std::make_shared<FetcherServerCredentials>(&s.serving);
  builder.AddListeningPort(s.options.listen, creds, &s.port);
  builder.RegisterService(&s.service);
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  // gRPC sets SO_REUSEPORT by default, which would let a second identity service bind the same
  // port and silently take half the connections; a busy port must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  s.server = builder.BuildAndStart();
  if (!s.server || s.port == 0) {
    return Error::internal("listen", "cannot serve gRPC on " + s.options.listen +
                                         " (address in use, or not an address of this host)");
  }
  s.serving_started = true;

  s.timer.emplace(s.worker.context());
  s.schedule();
  s.worker.start();
  return std::unique_ptr<IdentityController>(new IdentityController(std::move(state)));
}

IdentityController::IdentityController(std::unique_ptr<State> state) : state_(std::move(state)) {}

IdentityController::~IdentityController() {
  if (state_) shutdown(std::chrono::seconds(0));
}

int IdentityController::port() const { return state_->port; }

const std::string& IdentityController::servingName() const { return state_->serving_name; }

bool IdentityController::ready() const {
  if (!state_->serving_started.load() || state_->stopped.load()) return false;
  return state_->time.wall() < state_->issuer->current()->not_after;
}

void IdentityController::shutdown(std::chrono::milliseconds grace) {
  if (state_->stopped.exchange(true)) return;
  if (state_->server) {
    state_->server->Shutdown(std::chrono::system_clock::now() + grace);
    state_->server->Wait();
  }
  state_->worker.stopAndJoin();
  state_->timer.reset();
  state_->server.reset();
  state_->serving_started = false;
}

IdentityMetrics& IdentityController::metricsForTest() { return state_->metrics; }

uint64_t IdentityController::ticksForTest() const { return state_->ticks.load(); }

const IssuerWatcher& IdentityController::issuerForTest() const { return *state_->issuer; }

}  // namespace weft::control::identity
