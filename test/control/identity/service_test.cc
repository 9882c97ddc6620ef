// Certifier's decisions without gRPC, at an injected time.
#include "control/identity/service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/control/identity/test_pki.h"

namespace weft::control::identity {
namespace {

using ::testing::HasSubstr;
using namespace weft::control::identity::testing;  // NOLINT(google-build-using-namespace)

const wid::SystemTime kNow = std::chrono::system_clock::from_time_t(1'900'000'000);
constexpr const char* kWeb = "web.default.serviceaccount.identity.weft.cluster.local";

class FakeTime final : public runtime::TimeSource {
 public:
  [[nodiscard]] std::chrono::steady_clock::time_point monotonic() const override {
    return std::chrono::steady_clock::time_point(wall_.time_since_epoch());
  }
  [[nodiscard]] std::chrono::system_clock::time_point wall() const override { return wall_; }
  wid::SystemTime wall_ = kNow;
};

// Accepts the token "good" for any identity.
class FakeAuthenticator final : public Authenticator {
 public:
  Status authenticate(std::string_view, std::string_view token) override {
    if (token == "good") return okStatus();
    return Error::downstream("unauthenticated", "bad token");
  }
};

class CertifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = makeRoot("root.weft.cluster.local", kNow - hours(1));
    issuer_ = makeIssuer(root_, "issuer.weft.cluster.local", kNow - hours(1), hours(48));
    pki_.writeIssuer(issuer_);
    pki_.writeAnchors({&root_});
    auto watcher = IssuerWatcher::open(pki_.files, kNow);
    ASSERT_TRUE(watcher.ok()) << watcher.error().message();
    watcher_ = std::move(watcher).value();
    certifier_ = std::make_unique<Certifier>(ServiceOptions{}, *watcher_, auth_, metrics_, time_);
  }

  std::string csr(const std::string& identity) {
    key_ = p256();
    auto der = wid::createCsr(key_.get(), identity);
    EXPECT_TRUE(der.ok());
    return der.ok() ? *der : std::string();
  }

  TempDir dir_;
  PkiFiles pki_{dir_};
  Root root_;
  IssuerPair issuer_;
  std::unique_ptr<IssuerWatcher> watcher_;
  FakeAuthenticator auth_;
  metrics::Registry registry_;
  IdentityMetrics metrics_{registry_};
  FakeTime time_;
  wid::PKeyPtr key_;
  std::unique_ptr<Certifier> certifier_;
};

TEST_F(CertifierTest, IssuesWithTheDefaultLifetimeAndBackdate) {
  auto out = certifier_->certify(kWeb, "good", csr(kWeb));
  ASSERT_TRUE(out.ok()) << out.error().message();
  auto leaf = wid::certFromDer(out->leaf_der);
  ASSERT_TRUE(leaf.ok());
  auto s = wid::describe(leaf->get());
  EXPECT_EQ(s.not_before, kNow - seconds(20));
  EXPECT_EQ(s.not_after, kNow + hours(24));
  EXPECT_EQ(out->valid_until, s.not_after);
  EXPECT_EQ(metrics_.issuedForTest(), 1U);
}

TEST_F(CertifierTest, AnExpiredIssuerMeansNoIssuer) {
  time_.wall_ = kNow + hours(48);
  auto out = certifier_->certify(kWeb, "good", csr(kWeb));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().kind, "no_issuer");
  EXPECT_THAT(out.error().context, HasSubstr("expired"));
  EXPECT_EQ(certifyStatusFor(out.error().kind), CertifyStatus::kUnavailable);
  EXPECT_EQ(metrics_.rejectedForTest("no_issuer"), 1U);
}

TEST_F(CertifierTest, AuthenticatesBeforeLookingAtTheCsr) {
  auto out = certifier_->certify(kWeb, "bad", "garbage");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().kind, "unauthenticated");
  EXPECT_EQ(metrics_.rejectedForTest("unauthenticated"), 1U);
  EXPECT_EQ(metrics_.rejectedForTest("malformed_csr"), 0U);
}

TEST_F(CertifierTest, RefusesNamesOutsideTheTrustDomain) {
  for (const char* name : {"web.default.serviceaccount.identity.other.cluster.local",
                           "web.serviceaccount.identity.weft.cluster.local",
                           "a.b.c.serviceaccount.identity.weft.cluster.local", "example.com"}) {
    auto out = certifier_->certify(name, "good", csr(name));
    ASSERT_FALSE(out.ok()) << name;
    EXPECT_EQ(out.error().kind, "wrong_san") << name;
  }
  EXPECT_EQ(metrics_.rejectedForTest("wrong_san"), 4U);
}

TEST_F(CertifierTest, RefusesAnOversizedCsrUnparsed) {
  auto out = certifier_->certify(kWeb, "good", std::string(20000, 'x'));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().kind, "malformed_csr");
  EXPECT_EQ(certifyStatusFor(out.error().kind), CertifyStatus::kInvalidArgument);
}

TEST(CertifyStatus, MapsEveryReason) {
  EXPECT_EQ(certifyStatusFor("unauthenticated"), CertifyStatus::kUnauthenticated);
  for (const char* kind :
       {"malformed_csr", "bad_signature", "wrong_key_type", "wrong_san", "forbidden_extension"}) {
    EXPECT_EQ(certifyStatusFor(kind), CertifyStatus::kInvalidArgument) << kind;
  }
  EXPECT_EQ(certifyStatusFor("no_issuer"), CertifyStatus::kUnavailable);
  EXPECT_EQ(certifyStatusFor("internal"), CertifyStatus::kInternal);
}

TEST(IdentityMetrics, ExportsEveryReasonFromTheStart) {
  metrics::Registry registry;
  IdentityMetrics m(registry);
  const std::string text = registry.render();
  for (std::string_view reason : kRejectionReasons) {
    EXPECT_THAT(text, HasSubstr("identity_certificate_rejections_total{reason=\"" +
                                std::string(reason) + "\"} 0\n"));
  }
  EXPECT_THAT(text, HasSubstr("identity_issuer_reloads_total{result=\"success\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("identity_issuer_reloads_total{result=\"failure\"} 0\n"));
}

}  // namespace
}  // namespace weft::control::identity
