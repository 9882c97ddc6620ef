#include "proxy/identity/client.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <random>
#include <sstream>

#include "weft/grpc/unary_client.h"
#include "weft/grpc/wire.h"
#include "weft/identity/certs.h"

namespace weft::proxy {

using Clock = std::chrono::system_clock;

struct IdentityClient::Impl {
  identity::PKeyPtr key;
  std::string csr_der;
  std::vector<identity::X509Ptr> roots;
  Clock::time_point not_after{};
  std::mt19937_64 rng{std::random_device{}()};
};

IdentityClient::IdentityClient(IdentitySettings settings, metrics::Registry& registry,
                               std::function<void(tls::TlsSnapshotPtr)> publish)
    : settings_(std::move(settings)),
      publish_(std::move(publish)),
      impl_(std::make_unique<Impl>()),
      expiry_(registry
                  .gauge("identity_cert_expiration_timestamp_seconds",
                         "Time when this proxy's current mTLS identity certificate expires (in "
                         "seconds since the UNIX epoch)")
                  .get({})),
      refreshes_(registry
                     .counter("identity_cert_refresh_count",
                              "The total number of times this proxy's mTLS identity certificate "
                              "has been refreshed by the Identity service")
                     .get({})),
      failures_(registry.counter("identity_cert_refresh_errors_total",
                                 "Failed certificate requests, by error")) {}

IdentityClient::~IdentityClient() { stop(); }

Status IdentityClient::init() {
  auto roots = identity::certsFromPem(settings_.trust_anchors_pem);
  if (!roots) {
    return Error::internal("invalid_config",
                           "WEFT_PROXY_IDENTITY_TRUST_ANCHORS: " + roots.error().message());
  }
  impl_->roots = std::move(roots).value();
  auto key = identity::generateP256Key();
  if (!key) return key.error();
  impl_->key = std::move(key).value();
  auto csr = identity::createCsr(impl_->key.get(), settings_.local_name);
  if (!csr) return csr.error();
  impl_->csr_der = std::move(csr).value();
  return okStatus();
}

void IdentityClient::start() {
  thread_ = std::make_unique<Thread>("weft-identity", [this] { run(); });
}

void IdentityClient::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.reset();
}

Result<Clock::time_point> IdentityClient::refresh() {
  std::ifstream token_in(settings_.token_file, std::ios::binary);
  if (!token_in) return Error::internal("token_unreadable", "cannot read " + settings_.token_file);
  std::stringstream token;
  token << token_in.rdbuf();
  std::string tok = token.str();
  while (!tok.empty() && (tok.back() == '\n' || tok.back() == '\r')) tok.pop_back();

  // weft.identity.v1.CertifyRequest (api/weft/v1/identity.proto), encoded by hand: see wire.h.
  std::string req;
  grpc::wire::putBytes(req, 1, settings_.local_name);
  grpc::wire::putBytes(req, 2, tok);
  grpc::wire::putBytes(req, 3, impl_->csr_der);
  grpc::UnaryTarget target{settings_.svc_addr, settings_.svc_name, settings_.trust_anchors_pem,
                           std::chrono::duration_cast<std::chrono::milliseconds>(settings_.request_timeout)};
  auto rsp = grpc::unaryCall(target, "/weft.identity.v1.Identity/Certify", req);
  if (!rsp) return Error::upstream("unavailable", rsp.error().message());
  if (rsp->grpc_status != 0) {
    // gRPC status codes: 16 UNAUTHENTICATED, 3 INVALID_ARGUMENT, 4 DEADLINE_EXCEEDED.
    std::string kind = rsp->grpc_status == 16 ? "unauthenticated"
                       : rsp->grpc_status == 3 ? "rejected"
                       : rsp->grpc_status == 4 ? "timeout"
                                               : "unavailable";
    return Error::upstream(kind, rsp->grpc_message);
  }

  tls::Credentials creds;
  creds.identity = settings_.local_name;
  std::string leaf_der;
  std::vector<std::string> intermediates_der;
  bool parsed = grpc::wire::forEachField(rsp->message, [&](const grpc::wire::Field& f) {
    if (f.type != grpc::wire::kLengthDelimited) return true;  // unknown scalar: skip
    if (f.number == 1) leaf_der = f.bytes;
    if (f.number == 2) intermediates_der.emplace_back(f.bytes);
    return true;
  });
  if (!parsed || leaf_der.empty()) return Error::upstream("bad_certificate", "malformed CertifyResponse");
  auto leaf = identity::certFromDer(leaf_der);
  if (!leaf) return Error::upstream("bad_certificate", leaf.error().message());
  creds.leaf = std::move(leaf).value();
  for (const auto& der : intermediates_der) {
    auto c = identity::certFromDer(der);
    if (!c) return Error::upstream("bad_certificate", c.error().message());
    creds.intermediates.push_back(std::move(c).value());
  }
  // Never trust what came back blindly: it must chain to our anchors and name us.
  std::vector<X509*> inter;
  for (auto& c : creds.intermediates) inter.push_back(c.get());
  std::vector<X509*> roots;
  for (auto& r : impl_->roots) roots.push_back(r.get());
  if (auto v = identity::verifyChain(creds.leaf.get(), inter, roots, Clock::now()); !v) {
    return Error::upstream("bad_certificate", v.error().message());
  }
  if (!identity::hasDnsSan(creds.leaf.get(), settings_.local_name)) {
    return Error::upstream("bad_certificate", "the certificate does not name " + settings_.local_name);
  }
  // The key is reused across refreshes: it never leaves this process's memory.
  creds.key.reset(impl_->key.get());
  EVP_PKEY_up_ref(impl_->key.get());
  for (auto& r : impl_->roots) {
    X509_up_ref(r.get());
    creds.roots.emplace_back(r.get());
  }
  auto snap = tls::TlsSnapshot::build(creds);
  if (!snap) return snap.error();
  const auto not_after = (*snap)->notAfter();
  publish_(std::move(snap).value());
  return not_after;
}

void IdentityClient::run() {
  int failures = 0;
  for (;;) {
    auto result = refresh();
    auto now = Clock::now();
    Clock::time_point next;
    if (result) {
      failures = 0;
      impl_->not_after = *result;
      ready_ = true;
      refreshes_->inc();
      expiry_->set(std::chrono::duration_cast<std::chrono::seconds>(result->time_since_epoch()).count());
      auto life = std::chrono::duration_cast<std::chrono::seconds>(*result - now);
      auto in = std::clamp(life * 7 / 10, settings_.min_refresh, settings_.max_refresh);
      next = now + in;
      spdlog::info("identity: certified as {}, valid until {}s from now; refreshing in {}s",
                   settings_.local_name, life.count(), in.count());
    } else {
      ++failures;
      failures_.get({{"error", result.error().kind}})->inc();
      // 1 s, 2 s, 4 s ... 60 s, each scaled by a random 50-100 % so a fleet does not retry in step.
      auto base = std::chrono::milliseconds(1000LL << std::min(failures - 1, 6));
      base = std::min<std::chrono::milliseconds>(base, std::chrono::seconds(60));
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      next = now + std::chrono::duration_cast<Clock::duration>(base * jitter(impl_->rng));
      spdlog::warn("identity: certificate request failed ({}); retrying", result.error().message());
    }
    // Wake at the refresh time, or at expiry if that comes first, to stop using an expired leaf.
    for (;;) {
      auto wake_at = next;
      if (ready_ && impl_->not_after < wake_at) wake_at = impl_->not_after;
      {
        MutexLock lock(mu_);
        wake_.wait_until(mu_, wake_at, [this]() WEFT_REQUIRES(mu_) { return stopping_; });
        if (stopping_) return;
      }
      if (ready_ && Clock::now() >= impl_->not_after) {
        spdlog::error("identity: certificate expired without a replacement; not serving mTLS");
        ready_ = false;
        publish_(nullptr);
      }
      if (Clock::now() >= next) break;
    }
  }
}

}  // namespace weft::proxy
