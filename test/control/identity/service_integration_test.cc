// The identity service in-process, on 127.0.0.1:0, called by a real gRPC client over TLS.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "control/identity/authenticator.h"
#include "control/identity/issuer.h"
#include "control/identity/service.h"
#include "test/control/identity/test_pki.h"
#include "weft/metrics/registry.h"
#include "weft/runtime/time_source.h"
#include "weft/v1/identity.grpc.pb.h"

namespace weft::control::identity {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace weft::control::identity::testing;  // NOLINT(google-build-using-namespace)
namespace v1 = ::weft::identity::v1;

constexpr const char* kWeb = "web.default.serviceaccount.identity.weft.cluster.local";
constexpr const char* kDb = "db.default.serviceaccount.identity.weft.cluster.local";

wid::SystemTime wallNow() { return runtime::RealTimeSource::instance().wall(); }
int64_t epoch(wid::SystemTime t) {
  return std::chrono::duration_cast<seconds>(t.time_since_epoch()).count();
}

// What a raw TLS 1.2+ client sees of the service: the negotiated version and the chain.
struct Handshake {
  bool ok = false;
  std::string version;
  std::vector<std::string> chain_der;  // leaf first
  std::string error;
};

// With root == nullptr the server's chain is not verified (to look at certificates valid only
// at a shifted time).
Handshake tlsHandshake(int port, X509* root, const std::string& name) {
  Handshake h;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (root != nullptr) {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), root);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    h.error = "connect failed";
  } else {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, name.c_str());
    SSL_set_tlsext_host_name(ssl, name.c_str());
    h.ok = SSL_connect(ssl) == 1;
    if (h.ok) {
      h.version = SSL_get_version(ssl);
      STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
      for (int i = 0; i < sk_X509_num(chain); ++i) {
        h.chain_der.push_back(wid::certToDer(sk_X509_value(chain, i)));
      }
      SSL_shutdown(ssl);
    } else {
      h.error = X509_verify_cert_error_string(SSL_get_verify_result(ssl));
    }
    SSL_free(ssl);
  }
  ::close(fd);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return h;
}

// The real clock, shifted by an offset a test moves forward.
class ShiftedTime final : public runtime::TimeSource {
 public:
  [[nodiscard]] std::chrono::steady_clock::time_point monotonic() const override {
    return std::chrono::steady_clock::now() + seconds(offset_s.load());
  }
  [[nodiscard]] std::chrono::system_clock::time_point wall() const override {
    return std::chrono::system_clock::now() + seconds(offset_s.load());
  }
  std::atomic<int64_t> offset_s{0};
};

class IdentityServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto now = wallNow();
    root_ = makeRoot("root-a.weft.cluster.local", now - hours(1));
    issuer_ = makeIssuer(root_, "issuer-a1.weft.cluster.local", now - hours(1), hours(24 * 30));
    pki_.writeIssuer(issuer_);
    pki_.writeAnchors({&root_});
    web_token_ = addToken(kWeb);
  }
  void TearDown() override {
    if (controller_) controller_->shutdown(std::chrono::seconds(0));
  }

  std::string addToken(const std::string& identity) {
    auto token = generateToken();
    EXPECT_TRUE(token.ok());
    auto st = upsertTokenDigest(tokens_, identity, hashToken(*token));
    EXPECT_TRUE(st.ok()) << st.error().message();
    return *token;
  }

  void start(seconds leaf_lifetime = hours(1),
             const runtime::TimeSource& time = runtime::RealTimeSource::instance()) {
    auto watcher = IssuerWatcher::open(pki_.files, wallNow());
    ASSERT_TRUE(watcher.ok()) << watcher.error().message();
    auto auth = LocalTokenAuthenticator::open(tokens_);
    ASSERT_TRUE(auth.ok()) << auth.error().message();
    IdentityController::Options options;
    options.listen = "127.0.0.1:0";
    options.service.leaf_lifetime = leaf_lifetime;
    options.service.poll_interval = std::chrono::milliseconds(50);
    auto controller = IdentityController::start(options, std::move(watcher).value(),
                                                std::move(auth).value(), registry_, time);
    ASSERT_TRUE(controller.ok()) << controller.error().message();
    controller_ = std::move(controller).value();
    ASSERT_GT(controller_->port(), 0);
  }

  std::unique_ptr<v1::Identity::Stub> stub(X509* root) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = wid::certToPem(root);
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride(controller_->servingName());
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a fresh connection per stub
    auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(controller_->port()),
                                             grpc::SslCredentials(tls), args);
    return v1::Identity::NewStub(channel);
  }

  struct Call {
    grpc::Status status;
    v1::CertifyResponse response;
  };
  Call certify(const std::string& identity, const std::string& token, const std::string& csr,
               X509* root = nullptr) {
    auto s = stub(root ? root : root_.cert.get());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CertifyRequest request;
    request.set_identity(identity);
    request.set_token(token);
    request.set_certificate_signing_request(csr);
    Call call;
    call.status = s->Certify(&context, request, &call.response);
    return call;
  }
  std::string csrFor(const std::string& identity, EVP_PKEY* key = nullptr) {
    if (key == nullptr) {
      leaf_key_ = p256();
      key = leaf_key_.get();
    }
    auto csr = wid::createCsr(key, identity);
    EXPECT_TRUE(csr.ok()) << csr.error().message();
    return csr.ok() ? *csr : std::string();
  }

  IdentityMetrics& metrics() { return controller_->metricsForTest(); }

  TempDir dir_;
  PkiFiles pki_{dir_};
  std::string tokens_ = dir_.file("tokens");
  Root root_;
  IssuerPair issuer_;
  std::string web_token_;
  wid::PKeyPtr leaf_key_;
  metrics::Registry registry_;
  std::unique_ptr<IdentityController> controller_;
};

TEST_F(IdentityServiceTest, IssuesALeafThatChainsToTheAnchor) {
  start(hours(1));
  const auto before = wallNow();
  Call call = certify(kWeb, web_token_, csrFor(kWeb));
  const auto after = wallNow();
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();

  auto leaf = wid::certFromDer(call.response.leaf_certificate());
  ASSERT_TRUE(leaf.ok());
  ASSERT_EQ(call.response.intermediate_certificates_size(), 1);
  EXPECT_EQ(call.response.intermediate_certificates(0), wid::certToDer(issuer_.cert.get()));
  auto intermediate = wid::certFromDer(call.response.intermediate_certificates(0));
  ASSERT_TRUE(intermediate.ok());
  auto verified = wid::verifyChain(leaf->get(), {intermediate->get()}, {root_.cert.get()}, after);
  EXPECT_TRUE(verified.ok()) << verified.error().message();

  wid::CertSummary s = wid::describe(leaf->get());
  EXPECT_THAT(s.dns_names, ElementsAre(kWeb));
  EXPECT_FALSE(s.is_ca);
  EXPECT_EQ(s.key_algorithm, "ECDSA P-256");
  // NotBefore = now - 20 s, NotAfter = now + lifetime; certificates carry whole seconds.
  EXPECT_GE(s.not_before, before - seconds(20) - seconds(1));
  EXPECT_LE(s.not_before, after - seconds(20));
  EXPECT_GE(s.not_after, before + hours(1) - seconds(1));
  EXPECT_LE(s.not_after, after + hours(1));
  EXPECT_EQ(call.response.valid_until().seconds(), epoch(s.not_after));

  EXPECT_EQ(metrics().issuedForTest(), 1U);
}

TEST_F(IdentityServiceTest, ClampsTheLeafToTheIssuersNotAfter) {
  const auto now = wallNow();
  IssuerPair short_lived = makeIssuer(root_, "issuer-short.weft.cluster.local", now - hours(1),
                                      hours(1) + std::chrono::minutes(10));
  pki_.writeIssuer(short_lived);
  start(hours(24));
  Call call = certify(kWeb, web_token_, csrFor(kWeb));
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  auto leaf = wid::certFromDer(call.response.leaf_certificate());
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(wid::describe(leaf->get()).not_after, wid::describe(short_lived.cert.get()).not_after);
}

TEST_F(IdentityServiceTest, RefusesAWrongToken) {
  std::string db_token = addToken(kDb);
  start();
  Call call = certify(kWeb, db_token, csrFor(kWeb));
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(call.status.error_message(), HasSubstr("does not match"));
  Call unknown = certify("api.default.serviceaccount.identity.weft.cluster.local", web_token_,
                         csrFor("api.default.serviceaccount.identity.weft.cluster.local"));
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(metrics().rejectedForTest("unauthenticated"), 2U);
  EXPECT_EQ(metrics().issuedForTest(), 0U);
}

TEST_F(IdentityServiceTest, RefusesACsrForAnotherIdentity) {
  start();
  Call call = certify(kWeb, web_token_, csrFor(kDb));
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(call.status.error_message(), HasSubstr("wrong_san"));
  EXPECT_EQ(metrics().rejectedForTest("wrong_san"), 1U);
  EXPECT_EQ(metrics().issuedForTest(), 0U);
}

TEST_F(IdentityServiceTest, RefusesAnRsaCsr) {
  start();
  auto rsa = rsaKey();
  Call call = certify(kWeb, web_token_, csrFor(kWeb, rsa.get()));
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(call.status.error_message(), HasSubstr("wrong_key_type"));
  EXPECT_EQ(metrics().rejectedForTest("wrong_key_type"), 1U);
}

TEST_F(IdentityServiceTest, RefusesGarbageForACsr) {
  start();
  Call call = certify(kWeb, web_token_, "not DER at all");
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(metrics().rejectedForTest("malformed_csr"), 1U);
}

TEST_F(IdentityServiceTest, UsesAnIssuerRotatedOnDiskWithoutRestart) {
  start();
  IssuerPair next = makeIssuer(root_, "issuer-a2.weft.cluster.local", wallNow() - hours(1));
  pki_.writeIssuer(next);
  ASSERT_TRUE(waitFor([&] { return metrics().reloadsForTest(true) == 1; }));

  Call call = certify(kWeb, web_token_, csrFor(kWeb));
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  ASSERT_EQ(call.response.intermediate_certificates_size(), 1);
  EXPECT_EQ(call.response.intermediate_certificates(0), wid::certToDer(next.cert.get()));
  auto leaf = wid::certFromDer(call.response.leaf_certificate());
  ASSERT_TRUE(leaf.ok());
  EXPECT_TRUE(wid::verifyChain(leaf->get(), {next.cert.get()}, {root_.cert.get()}, wallNow()).ok());

  // The service's own serving certificate moves to the new issuer too, for new connections.
  Handshake h;
  EXPECT_TRUE(waitFor([&] {
    h = tlsHandshake(controller_->port(), root_.cert.get(), controller_->servingName());
    return h.ok && h.chain_der.size() == 2 && h.chain_der[1] == wid::certToDer(next.cert.get());
  })) << h.error;
  EXPECT_EQ(metrics().reloadsForTest(false), 0U);
}

TEST_F(IdentityServiceTest, KeepsServingWithTheOldIssuerWhenTheNewOneIsInvalid) {
  start();
  const auto now = wallNow();
  Root other = makeRoot("root-b.weft.cluster.local", now - hours(1));
  pki_.writeIssuer(makeIssuer(other, "issuer-b.weft.cluster.local", now - hours(1)));
  ASSERT_TRUE(waitFor([&] { return metrics().reloadsForTest(false) == 1; }));

  Call call = certify(kWeb, web_token_, csrFor(kWeb));
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  EXPECT_EQ(call.response.intermediate_certificates(0), wid::certToDer(issuer_.cert.get()));
  EXPECT_TRUE(controller_->ready());
  EXPECT_EQ(metrics().reloadsForTest(true), 0U);

  // An expired pair is refused the same way, and counted once more.
  pki_.writeIssuer(
      makeIssuer(root_, "old.weft.cluster.local", now - hours(24 * 400), hours(24 * 365)));
  ASSERT_TRUE(waitFor([&] { return metrics().reloadsForTest(false) == 2; }));
  Call again = certify(kWeb, web_token_, csrFor(kWeb));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.response.intermediate_certificates(0), wid::certToDer(issuer_.cert.get()));
}

TEST_F(IdentityServiceTest, TlsHandshakeFailsForAClientThatDoesNotTrustTheAnchor) {
  start();
  Root other = makeRoot("root-b.weft.cluster.local", wallNow() - hours(1));
  Call call = certify(kWeb, web_token_, csrFor(kWeb), other.cert.get());
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(metrics().issuedForTest(), 0U);
  for (std::string_view reason : kRejectionReasons) {
    EXPECT_EQ(metrics().rejectedForTest(reason), 0U) << reason;
  }
  Handshake h = tlsHandshake(controller_->port(), other.cert.get(), controller_->servingName());
  EXPECT_FALSE(h.ok);
}

TEST_F(IdentityServiceTest, ServesTls13WithACertificateForItsOwnIdentityName) {
  start();
  EXPECT_EQ(controller_->servingName(), "identity.weft.serviceaccount.identity.weft.cluster.local");
  Handshake h = tlsHandshake(controller_->port(), root_.cert.get(), controller_->servingName());
  ASSERT_TRUE(h.ok) << h.error;
  EXPECT_EQ(h.version, "TLSv1.3");
  ASSERT_EQ(h.chain_der.size(), 2U);
  EXPECT_EQ(h.chain_der[1], wid::certToDer(issuer_.cert.get()));
  auto serving = wid::certFromDer(h.chain_der[0]);
  ASSERT_TRUE(serving.ok());
  EXPECT_THAT(wid::describe(serving->get()).dns_names, ElementsAre(controller_->servingName()));
}

TEST_F(IdentityServiceTest, RenewsItsServingCertificateAtSeventyPercentOfItsLife) {
  ShiftedTime time;
  start(hours(1), time);
  auto servingLeaf = [&] {
    Handshake h = tlsHandshake(controller_->port(), nullptr, controller_->servingName());
    EXPECT_TRUE(h.ok) << h.error;
    return h.chain_der.empty() ? std::string() : h.chain_der[0];
  };
  const std::string first = servingLeaf();
  ASSERT_FALSE(first.empty());

  // 41 of its 60 minutes: not yet. Let a few loop iterations pass to be sure.
  time.offset_s = 41 * 60;
  const uint64_t ticks = controller_->ticksForTest();
  ASSERT_TRUE(waitFor([&] { return controller_->ticksForTest() >= ticks + 3; }));
  EXPECT_EQ(servingLeaf(), first);

  // 43 minutes: past 70 %, renewed with a fresh certificate from the same issuer.
  time.offset_s = 43 * 60;
  std::string renewed;
  ASSERT_TRUE(waitFor([&] {
    renewed = servingLeaf();
    return !renewed.empty() && renewed != first;
  }));
  auto cert = wid::certFromDer(renewed);
  ASSERT_TRUE(cert.ok());
  auto s = wid::describe(cert->get());
  EXPECT_GE(s.not_before, wallNow() + std::chrono::minutes(43) - seconds(25));
  EXPECT_THAT(s.dns_names, ElementsAre(controller_->servingName()));
  EXPECT_TRUE(
      wid::verifyChain(cert->get(), {issuer_.cert.get()}, {root_.cert.get()}, time.wall()).ok());
}

TEST_F(IdentityServiceTest, MetricsReflectIssuanceRejectionsAndReloads) {
  start();
  ASSERT_TRUE(certify(kWeb, web_token_, csrFor(kWeb)).status.ok());
  ASSERT_TRUE(certify(kWeb, web_token_, csrFor(kWeb)).status.ok());
  ASSERT_FALSE(certify(kWeb, "wrong", csrFor(kWeb)).status.ok());
  auto rsa = rsaKey();
  ASSERT_FALSE(certify(kWeb, web_token_, csrFor(kWeb, rsa.get())).status.ok());
  Root other = makeRoot("root-b.weft.cluster.local", wallNow() - hours(1));
  pki_.writeIssuer(makeIssuer(other, "issuer-b.weft.cluster.local", wallNow() - hours(1)));
  ASSERT_TRUE(waitFor([&] { return metrics().reloadsForTest(false) == 1; }));
  IssuerPair next = makeIssuer(root_, "issuer-a2.weft.cluster.local", wallNow() - hours(1));
  pki_.writeIssuer(next);
  ASSERT_TRUE(waitFor([&] { return metrics().reloadsForTest(true) == 1; }));

  const std::string text = registry_.render();
  EXPECT_THAT(text, HasSubstr("# TYPE identity_certificates_issued_total counter\n"
                              "identity_certificates_issued_total 2\n"));
  EXPECT_THAT(text,
              HasSubstr("identity_certificate_rejections_total{reason=\"unauthenticated\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("identity_certificate_rejections_total{reason=\"wrong_key_type\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("identity_certificate_rejections_total{reason=\"no_issuer\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("identity_issuer_reloads_total{result=\"failure\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("identity_issuer_reloads_total{result=\"success\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("# TYPE identity_issuer_expiration_timestamp_seconds gauge\n"
                        "identity_issuer_expiration_timestamp_seconds " +
                        std::to_string(epoch(wid::describe(next.cert.get()).not_after)) + "\n"));
}

}  // namespace
}  // namespace weft::control::identity
