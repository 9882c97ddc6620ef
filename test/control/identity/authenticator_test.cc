#include "control/identity/authenticator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "test/control/identity/test_pki.h"

namespace weft::control::identity {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using weft::control::identity::testing::TempDir;
using weft::control::identity::testing::writeFileAtomically;

constexpr const char* kWeb = "web.default.serviceaccount.identity.weft.cluster.local";
constexpr const char* kDb = "db.default.serviceaccount.identity.weft.cluster.local";

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class LocalTokenAuthenticatorTest : public ::testing::Test {
 protected:
  std::string addToken(const std::string& identity) {
    auto token = generateToken();
    EXPECT_TRUE(token.ok());
    auto st = upsertTokenDigest(path_, identity, hashToken(*token));
    EXPECT_TRUE(st.ok()) << st.error().message();
    return *token;
  }
  std::unique_ptr<LocalTokenAuthenticator> open() {
    auto auth = LocalTokenAuthenticator::open(path_);
    EXPECT_TRUE(auth.ok()) << auth.error().message();
    return auth.ok() ? std::move(auth).value() : nullptr;
  }

  TempDir dir_;
  std::string path_ = dir_.file("tokens");
};

TEST_F(LocalTokenAuthenticatorTest, AcceptsTheRightToken) {
  std::string token = addToken(kWeb);
  auto auth = open();
  EXPECT_TRUE(auth->authenticate(kWeb, token).ok());
  // A token read from a file with its newline still proves the identity.
  EXPECT_TRUE(auth->authenticate(kWeb, token + "\n").ok());
}

TEST_F(LocalTokenAuthenticatorTest, RefusesAWrongToken) {
  std::string web = addToken(kWeb);
  std::string db = addToken(kDb);
  auto auth = open();
  auto st = auth->authenticate(kWeb, db);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, "unauthenticated");
  EXPECT_THAT(st.error().context, HasSubstr("does not match"));
  EXPECT_THAT(st.error().context, ::testing::Not(HasSubstr(db)));
  EXPECT_FALSE(auth->authenticate(kWeb, web.substr(1)).ok());
  EXPECT_FALSE(auth->authenticate(kWeb, "").ok());
}

TEST_F(LocalTokenAuthenticatorTest, RefusesAnUnknownIdentity) {
  std::string token = addToken(kWeb);
  auto auth = open();
  auto st = auth->authenticate(kDb, token);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, "unauthenticated");
  EXPECT_THAT(st.error().context, HasSubstr("no token is registered"));
}

TEST_F(LocalTokenAuthenticatorTest, ReloadsWhenTheFileChanges) {
  std::string first = addToken(kWeb);
  auto auth = open();
  ASSERT_TRUE(auth->authenticate(kWeb, first).ok());

  std::string second = addToken(kWeb);  // replaces web's line
  std::string db = addToken(kDb);
  EXPECT_FALSE(auth->authenticate(kWeb, first).ok());
  EXPECT_TRUE(auth->authenticate(kWeb, second).ok());
  EXPECT_TRUE(auth->authenticate(kDb, db).ok());
  EXPECT_EQ(auth->sizeForTest(), 2U);
}

TEST_F(LocalTokenAuthenticatorTest, ARemovedFileRevokesEveryToken) {
  std::string token = addToken(kWeb);
  auto auth = open();
  ASSERT_TRUE(auth->authenticate(kWeb, token).ok());
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  auto st = auth->authenticate(kWeb, token);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().context, HasSubstr("cannot be read"));
  // And a recreated file is picked up again.
  std::string again = addToken(kWeb);
  EXPECT_TRUE(auth->authenticate(kWeb, again).ok());
}

TEST_F(LocalTokenAuthenticatorTest, SkipsMalformedLinesAndKeepsTheRest) {
  std::string token = "not-random-but-fine-for-this-test";
  writeFileAtomically(path_, "# tokens\n\n" + std::string(kDb) + " sha256:abc\n" + "garbage\n" +
                                 kWeb + " " + formatDigest(hashToken(token)) + "\n");
  auto auth = open();
  EXPECT_EQ(auth->sizeForTest(), 1U);
  EXPECT_TRUE(auth->authenticate(kWeb, token).ok());
  EXPECT_FALSE(auth->authenticate(kDb, token).ok());
}

TEST_F(LocalTokenAuthenticatorTest, OpenFailsWithoutTheFile) {
  auto auth = LocalTokenAuthenticator::open(dir_.file("missing"));
  ASSERT_FALSE(auth.ok());
  EXPECT_THAT(auth.error().context, HasSubstr("missing"));
}

TEST(Tokens, AreFortyThreeCharactersOfBase64Url) {
  auto a = generateToken();
  auto b = generateToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_THAT(*a, MatchesRegex("[A-Za-z0-9_-]{43}"));
  EXPECT_NE(*a, *b);
}

TEST(Tokens, DigestIsSha256OfTheText) {
  // printf abc | sha256sum
  EXPECT_EQ(formatDigest(hashToken("abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(LocalTokenAuthenticatorTest, UpsertKeepsOtherLinesAndWritesMode0600) {
  writeFileAtomically(
      path_, "# managed by weft\n" + std::string(kDb) + " sha256:" + std::string(64, '0') + "\n");
  ::chmod(path_.c_str(), 0644);
  addToken(kWeb);
  addToken(kWeb);
  std::string text = readAll(path_);
  EXPECT_THAT(text, ::testing::StartsWith("# managed by weft\n" + std::string(kDb) + " sha256:"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
}

}  // namespace
}  // namespace weft::control::identity
