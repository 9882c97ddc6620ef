#include "control/identity/issuer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/control/identity/test_pki.h"

namespace weft::control::identity {
namespace {

using ::testing::HasSubstr;
using namespace weft::control::identity::testing;  // NOLINT(google-build-using-namespace)
using Poll = IssuerWatcher::PollResult;

const wid::SystemTime kNow = std::chrono::system_clock::from_time_t(1'900'000'000);

class IssuerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = makeRoot("root-a.weft.cluster.local", kNow - hours(24 * 365 * 3));
    issuer_ = makeIssuer(root_, "issuer-a1.weft.cluster.local", kNow - hours(1));
    pki_.writeIssuer(issuer_);
    pki_.writeAnchors({&root_});
  }

  TempDir dir_;
  PkiFiles pki_{dir_};
  Root root_;
  IssuerPair issuer_;
};

TEST_F(IssuerTest, LoadsAValidPair) {
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  const Issuer& issuer = **loaded;
  EXPECT_EQ(issuer.cert_der, wid::certToDer(issuer_.cert.get()));
  EXPECT_EQ(issuer.not_after, wid::describe(issuer_.cert.get()).not_after);
  EXPECT_EQ(issuer.anchors.size(), 1U);
  EXPECT_THAT(issuer.subject, HasSubstr("issuer-a1"));
}

TEST_F(IssuerTest, AcceptsAnIssuerSignedByAnyAnchorOfTheBundle) {
  Root other = makeRoot("root-b.weft.cluster.local", kNow - hours(1));
  pki_.writeAnchors({&other, &root_});
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  EXPECT_EQ((*loaded)->anchors.size(), 2U);
}

TEST_F(IssuerTest, RefusesAnExpiredIssuerNamingTheFile) {
  IssuerPair expired =
      makeIssuer(root_, "old.weft.cluster.local", kNow - hours(24 * 400), hours(24 * 365));
  pki_.writeIssuer(expired);
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, "expired");
  EXPECT_THAT(loaded.error().context, HasSubstr(pki_.files.cert));
  EXPECT_THAT(loaded.error().context, HasSubstr("expired at"));
}

TEST_F(IssuerTest, RefusesAnIssuerNotYetValid) {
  IssuerPair future = makeIssuer(root_, "future.weft.cluster.local", kNow + hours(2));
  pki_.writeIssuer(future);
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, "not_yet_valid");
}

TEST_F(IssuerTest, RefusesAnIssuerSignedByAnotherRoot) {
  Root other = makeRoot("root-b.weft.cluster.local", kNow - hours(1));
  pki_.writeIssuer(makeIssuer(other, "issuer-b.weft.cluster.local", kNow - hours(1)));
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, "unknown_ca");
  EXPECT_THAT(loaded.error().context, HasSubstr(pki_.files.cert));
  EXPECT_THAT(loaded.error().context, HasSubstr(pki_.files.anchors));
}

TEST_F(IssuerTest, RefusesAKeyOfAnotherCertificate) {
  IssuerPair other = makeIssuer(root_, "other.weft.cluster.local", kNow - hours(1));
  writeFileAtomically(pki_.files.key, wid::privateKeyToPem(other.key.get()));
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, "key_mismatch");
  EXPECT_THAT(loaded.error().context, HasSubstr(pki_.files.key));
}

TEST_F(IssuerTest, RefusesAnRsaKey) {
  auto rsa = rsaKey();
  writeFileAtomically(pki_.files.key, wid::privateKeyToPem(rsa.get()));
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, "wrong_key_type");
  EXPECT_THAT(loaded.error().context, HasSubstr("RSA"));
}

TEST_F(IssuerTest, RefusesACertificateThatIsNotACa) {
  auto key = p256();
  auto server =
      wid::createServerCert(key.get(), {"not-a-ca", hours(24), {}}, {"not-a-ca.weft.cluster.local"},
                            root_.cert.get(), root_.key.get(), kNow - hours(1));
  ASSERT_TRUE(server.ok()) << server.error().message();
  writeFileAtomically(pki_.files.cert, wid::certToPem(server->get()));
  writeFileAtomically(pki_.files.key, wid::privateKeyToPem(key.get()));
  auto loaded = loadIssuer(pki_.files, kNow);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, "not_a_ca");
}

TEST_F(IssuerTest, RefusesMissingAndGarbageFiles) {
  writeFileAtomically(pki_.files.anchors, "not a certificate\n");
  auto garbage = loadIssuer(pki_.files, kNow);
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().kind, "malformed");
  EXPECT_THAT(garbage.error().context, HasSubstr(pki_.files.anchors));

  IssuerFiles missing = pki_.files;
  missing.key += ".missing";
  auto unreadable = loadIssuer(missing, kNow);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_EQ(unreadable.error().kind, "unreadable");
  EXPECT_THAT(unreadable.error().context, HasSubstr(missing.key));
}

// --- IssuerWatcher ------------------------------------------------------------------------------

class IssuerWatcherTest : public IssuerTest {
 protected:
  void SetUp() override {
    IssuerTest::SetUp();
    auto watcher = IssuerWatcher::open(pki_.files, kNow);
    ASSERT_TRUE(watcher.ok()) << watcher.error().message();
    watcher_ = std::move(watcher).value();
  }
  std::unique_ptr<IssuerWatcher> watcher_;
};

TEST_F(IssuerWatcherTest, UnchangedFilesAreNotReloaded) {
  auto before = watcher_->current();
  EXPECT_EQ(watcher_->poll(kNow), Poll::kUnchanged);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kUnchanged);
  EXPECT_EQ(watcher_->current(), before);
}

TEST_F(IssuerWatcherTest, SwapsInAValidNewPairOnceItHoldsStill) {
  IssuerPair next = makeIssuer(root_, "issuer-a2.weft.cluster.local", kNow - hours(1));
  pki_.writeIssuer(next);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kReloaded);
  EXPECT_EQ(watcher_->current()->cert_der, wid::certToDer(next.cert.get()));
  EXPECT_FALSE(watcher_->lastError().has_value());
  EXPECT_EQ(watcher_->poll(kNow), Poll::kUnchanged);
}

TEST_F(IssuerWatcherTest, AHalfWrittenRotationIsJudgedOnlyWhenComplete) {
  IssuerPair next = makeIssuer(root_, "issuer-a2.weft.cluster.local", kNow - hours(1));
  writeFileAtomically(pki_.files.cert, wid::certToPem(next.cert.get()));
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);  // new cert, old key
  writeFileAtomically(pki_.files.key, wid::privateKeyToPem(next.key.get()));
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);  // changed again: wait once more
  EXPECT_EQ(watcher_->poll(kNow), Poll::kReloaded);
  EXPECT_EQ(watcher_->current()->cert_der, wid::certToDer(next.cert.get()));
}

TEST_F(IssuerWatcherTest, ReloadToABadPairKeepsTheOldOne) {
  auto before = watcher_->current();
  Root other = makeRoot("root-b.weft.cluster.local", kNow - hours(1));
  pki_.writeIssuer(makeIssuer(other, "issuer-b.weft.cluster.local", kNow - hours(1)));
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kRejected);
  EXPECT_EQ(watcher_->current(), before);
  ASSERT_TRUE(watcher_->lastError().has_value());
  EXPECT_EQ(watcher_->lastError()->kind, "unknown_ca");
  // The same refused content is reported once, not once per poll.
  EXPECT_EQ(watcher_->poll(kNow), Poll::kUnchanged);
  EXPECT_EQ(watcher_->current(), before);
}

TEST_F(IssuerWatcherTest, ReloadToAnExpiredPairKeepsTheOldOne) {
  auto before = watcher_->current();
  pki_.writeIssuer(
      makeIssuer(root_, "old.weft.cluster.local", kNow - hours(24 * 400), hours(24 * 365)));
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kRejected);
  EXPECT_EQ(watcher_->current(), before);
  EXPECT_EQ(watcher_->lastError()->kind, "expired");
}

TEST_F(IssuerWatcherTest, RecoversWhenAGoodPairFollowsABadOne) {
  Root other = makeRoot("root-b.weft.cluster.local", kNow - hours(1));
  pki_.writeIssuer(makeIssuer(other, "issuer-b.weft.cluster.local", kNow - hours(1)));
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kRejected);
  IssuerPair next = makeIssuer(root_, "issuer-a2.weft.cluster.local", kNow - hours(1));
  pki_.writeIssuer(next);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kReloaded);
  EXPECT_EQ(watcher_->current()->cert_der, wid::certToDer(next.cert.get()));
}

TEST_F(IssuerWatcherTest, RemovedFilesKeepTheOldIssuer) {
  auto before = watcher_->current();
  ASSERT_EQ(std::remove(pki_.files.key.c_str()), 0);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kSettling);
  EXPECT_EQ(watcher_->poll(kNow), Poll::kRejected);
  EXPECT_EQ(watcher_->current(), before);
  EXPECT_EQ(watcher_->lastError()->kind, "unreadable");
}

}  // namespace
}  // namespace weft::control::identity
