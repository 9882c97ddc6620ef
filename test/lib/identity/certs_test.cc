#include "weft/identity/certs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace weft::identity {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// 2030-03-17T17:46:40Z: every test runs at a fixed, injected time.
const SystemTime kNow = std::chrono::system_clock::from_time_t(1'900'000'000);
constexpr const char* kIdentity = "web.default.serviceaccount.identity.weft.cluster.local";

// --- helpers ------------------------------------------------------------------------------------

PKeyPtr p256() {
  auto key = generateP256Key();
  EXPECT_TRUE(key.ok());
  return std::move(key).value();
}

PKeyPtr ecKey(const char* group) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* key = nullptr;
  EXPECT_EQ(EVP_PKEY_keygen_init(ctx), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_group_name(ctx, group), 1);
  EXPECT_EQ(EVP_PKEY_generate(ctx, &key), 1);
  EVP_PKEY_CTX_free(ctx);
  return PKeyPtr(key);
}

PKeyPtr rsaKey() {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* key = nullptr;
  EXPECT_EQ(EVP_PKEY_keygen_init(ctx), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
  EXPECT_EQ(EVP_PKEY_generate(ctx, &key), 1);
  EVP_PKEY_CTX_free(ctx);
  return PKeyPtr(key);
}

time_t timeT(const ASN1_TIME* t) {
  std::tm tm{};
  EXPECT_EQ(ASN1_TIME_to_tm(t, &tm), 1);
  return timegm(&tm);
}
time_t timeT(SystemTime t) { return std::chrono::system_clock::to_time_t(t); }

bool extensionIsCritical(X509* cert, int nid) {
  const int index = X509_get_ext_by_NID(cert, nid, -1);
  EXPECT_GE(index, 0) << OBJ_nid2sn(nid);
  return index >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, index)) == 1;
}

std::string asn1Bytes(const ASN1_OCTET_STRING* s) {
  if (s == nullptr) return {};
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<std::size_t>(ASN1_STRING_length(s))};
}

std::string commonName(X509_NAME* name) {
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
          static_cast<std::size_t>(ASN1_STRING_length(data))};
}

// A CSR built field by field, so tests can ask for what createCsr() would never produce.
struct CsrSpec {
  EVP_PKEY* key = nullptr;
  std::string common_name = kIdentity;
  // Each entry becomes one extension, in OpenSSL config syntax ("DNS:a,IP:1.2.3.4").
  std::vector<std::pair<int, std::string>> extensions;
  const EVP_MD* md = EVP_sha256();
};

std::string makeCsr(const CsrSpec& spec) {
  X509_REQ* req = X509_REQ_new();
  EXPECT_EQ(X509_REQ_set_version(req, X509_REQ_VERSION_1), 1);
  if (!spec.common_name.empty()) {
    EXPECT_EQ(
        X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(spec.common_name.data()),
                                   static_cast<int>(spec.common_name.size()), -1, 0),
        1);
  }
  if (!spec.extensions.empty()) {
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    for (const auto& [nid, value] : spec.extensions) {
      X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, nullptr, nid, value.c_str());
      EXPECT_NE(ext, nullptr) << value;
      sk_X509_EXTENSION_push(exts, ext);
    }
    EXPECT_EQ(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  EXPECT_EQ(X509_REQ_set_pubkey(req, spec.key), 1);
  EXPECT_GT(X509_REQ_sign(req, spec.key, spec.md), 0);
  const int n = i2d_X509_REQ(req, nullptr);
  std::string der(static_cast<std::size_t>(n), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509_REQ(req, &p);
  X509_REQ_free(req);
  return der;
}

std::string sanCsr(EVP_PKEY* key, const std::string& san) {
  return makeCsr({key, kIdentity, {{NID_subject_alt_name, san}}});
}

// The trust anchor and issuer most tests stand on.
class Pki : public ::testing::Test {
 protected:
  void SetUp() override {
    root_key_ = p256();
    auto root = createRootCa(root_key_.get(), {"root.weft.cluster.local", hours(87600), {}}, kNow);
    ASSERT_TRUE(root.ok()) << root.error().message();
    root_ = std::move(root).value();
    issuer_key_ = p256();
    auto issuer =
        createIntermediateCa(issuer_key_.get(), {"identity.weft.cluster.local", hours(8760), {}},
                             root_.get(), root_key_.get(), kNow);
    ASSERT_TRUE(issuer.ok()) << issuer.error().message();
    issuer_ = std::move(issuer).value();
  }

  X509Ptr issue(const std::string& identity = kIdentity, SystemTime now = kNow,
                seconds lifetime = hours(24)) {
    leaf_key_ = p256();
    auto csr = createCsr(leaf_key_.get(), identity);
    EXPECT_TRUE(csr.ok());
    auto validated = validateCsr(*csr, identity);
    EXPECT_TRUE(validated.ok()) << validated.error().message();
    auto leaf = issueLeaf(*validated, issuer_.get(), issuer_key_.get(), lifetime, seconds(20), now);
    EXPECT_TRUE(leaf.ok()) << leaf.error().message();
    return leaf.ok() ? std::move(leaf).value() : nullptr;
  }

  Status verify(X509* leaf, SystemTime now = kNow) {
    return verifyChain(leaf, {issuer_.get()}, {root_.get()}, now);
  }

  PKeyPtr root_key_;
  X509Ptr root_;
  PKeyPtr issuer_key_;
  X509Ptr issuer_;
  PKeyPtr leaf_key_;
};

// --- names --------------------------------------------------------------------------------------

TEST(IdentityName, FollowsTheSpecLayout) {
  EXPECT_EQ(identityName("web", "default"), kIdentity);
  EXPECT_EQ(identityName("db", "prod", "weft-cp", "example.org"),
            "db.prod.serviceaccount.identity.weft-cp.example.org");
}

TEST(IsValidIdentityName, AcceptsLowercaseDnsNames) {
  EXPECT_TRUE(isValidIdentityName(kIdentity));
  EXPECT_TRUE(isValidIdentityName("a"));
  EXPECT_TRUE(isValidIdentityName("a-b.c0.9"));
  EXPECT_TRUE(isValidIdentityName(std::string(63, 'a') + ".b"));
  // 253 characters: four labels of 63 and one of 1, joined by dots.
  const std::string label(63, 'x');
  EXPECT_TRUE(isValidIdentityName(label + "." + label + "." + label + "." + label.substr(0, 61)));
}

TEST(IsValidIdentityName, RefusesEverythingElse) {
  for (const std::string bad :
       {"", ".", "a.", ".a", "a..b", "-a.b", "a-.b", "A.b", "a_b.c", "a b", "*.a", "a/b", "a:1"}) {
    EXPECT_FALSE(isValidIdentityName(bad)) << bad;
  }
  EXPECT_FALSE(isValidIdentityName(std::string("a\0b", 3)));
  EXPECT_FALSE(isValidIdentityName(std::string(64, 'a') + ".b"));
  const std::string label(63, 'x');
  EXPECT_FALSE(isValidIdentityName(label + "." + label + "." + label + "." + label.substr(0, 62)));
}

// --- keys ---------------------------------------------------------------------------------------

TEST(Keys, P256KeyRoundTripsThroughPkcs8Pem) {
  PKeyPtr key = p256();
  EXPECT_TRUE(isP256(key.get()));
  EXPECT_EQ(keyAlgorithm(key.get()), "ECDSA P-256");
  const std::string pem = privateKeyToPem(key.get());
  EXPECT_THAT(pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));
  auto back = privateKeyFromPem(pem);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(EVP_PKEY_eq(key.get(), back->get()), 1);
}

TEST(Keys, NamesOtherAlgorithms) {
  PKeyPtr p384 = ecKey("P-384");
  PKeyPtr rsa = rsaKey();
  EXPECT_EQ(keyAlgorithm(p384.get()), "ECDSA P-384");
  EXPECT_EQ(keyAlgorithm(rsa.get()), "RSA 2048");
  EXPECT_EQ(keyAlgorithm(nullptr), "none");
  EXPECT_FALSE(isP256(p384.get()));
  EXPECT_FALSE(isP256(rsa.get()));
  EXPECT_FALSE(isP256(nullptr));
}

TEST(Keys, RefusesGarbageAndEncryptedKeysWithoutPrompting) {
  EXPECT_EQ(privateKeyFromPem("not a key").error().kind, "malformed_key");
  PKeyPtr key = p256();
  BIO* bio = BIO_new(BIO_s_mem());
  static char pass[] = "secret";
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio, key.get(), EVP_aes_256_cbc(), nullptr, 0, nullptr, pass),
            1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  const std::string encrypted(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  ASSERT_THAT(encrypted, HasSubstr("ENCRYPTED"));
  auto result = privateKeyFromPem(encrypted);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().kind, "malformed_key");
}

// --- CA certificates ----------------------------------------------------------------------------

TEST_F(Pki, RootIsASelfSignedCaWithCriticalConstraints) {
  X509* root = root_.get();
  EXPECT_EQ(X509_check_issued(root, root), X509_V_OK);
  EXPECT_NE(X509_get_extension_flags(root) & EXFLAG_CA, 0U);
  EXPECT_EQ(X509_get_pathlen(root), -1);
  EXPECT_EQ(X509_get_key_usage(root), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_TRUE(extensionIsCritical(root, NID_basic_constraints));
  EXPECT_TRUE(extensionIsCritical(root, NID_key_usage));
  ASSERT_NE(X509_get0_subject_key_id(root), nullptr);
  EXPECT_EQ(asn1Bytes(X509_get0_authority_key_id(root)), asn1Bytes(X509_get0_subject_key_id(root)));
  EXPECT_EQ(commonName(X509_get_subject_name(root)), "root.weft.cluster.local");
  EXPECT_EQ(timeT(X509_get0_notBefore(root)), timeT(kNow));
  EXPECT_EQ(timeT(X509_get0_notAfter(root)), timeT(kNow + hours(87600)));
  EXPECT_EQ(describe(root).signature_algorithm, "ecdsa-with-SHA256");
  EXPECT_EQ(describe(root).key_algorithm, "ECDSA P-256");
}

TEST_F(Pki, SerialsAre128BitRandom) {
  auto other = createRootCa(root_key_.get(), {"root", hours(1), {}}, kNow);
  ASSERT_TRUE(other.ok());
  BIGNUM* a = ASN1_INTEGER_to_BN(X509_get0_serialNumber(root_.get()), nullptr);
  BIGNUM* b = ASN1_INTEGER_to_BN(X509_get0_serialNumber(other->get()), nullptr);
  EXPECT_LE(BN_num_bits(a), 128);
  EXPECT_GT(BN_num_bits(a), 64);  // fails with probability 2^-64
  EXPECT_FALSE(BN_is_negative(a));
  EXPECT_NE(BN_cmp(a, b), 0);
  BN_free(a);
  BN_free(b);
}

TEST_F(Pki, IssuerIsAnIntermediateWithPathlenZero) {
  X509* issuer = issuer_.get();
  EXPECT_EQ(X509_check_issued(root_.get(), issuer), X509_V_OK);
  EXPECT_NE(X509_get_extension_flags(issuer) & EXFLAG_CA, 0U);
  EXPECT_EQ(X509_get_pathlen(issuer), 0);
  EXPECT_EQ(X509_get_key_usage(issuer), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_TRUE(extensionIsCritical(issuer, NID_basic_constraints));
  EXPECT_TRUE(extensionIsCritical(issuer, NID_key_usage));
  EXPECT_EQ(asn1Bytes(X509_get0_authority_key_id(issuer)),
            asn1Bytes(X509_get0_subject_key_id(root_.get())));
  EXPECT_EQ(describe(issuer).issuer, "CN=root.weft.cluster.local");
  EXPECT_TRUE(verifyChain(issuer, {}, {root_.get()}, kNow).ok());
}

TEST_F(Pki, IssuerNotAfterIsClampedToTheAnchor) {
  auto short_root = createRootCa(root_key_.get(), {"short", hours(10), {}}, kNow);
  ASSERT_TRUE(short_root.ok());
  PKeyPtr key = p256();
  auto issuer = createIntermediateCa(key.get(), {"issuer", hours(8760), {}}, short_root->get(),
                                     root_key_.get(), kNow);
  ASSERT_TRUE(issuer.ok());
  EXPECT_EQ(timeT(X509_get0_notAfter(issuer->get())), timeT(kNow + hours(10)));
}

TEST_F(Pki, IssuerCannotSignAnotherCa) {
  PKeyPtr key = p256();
  auto sub = createIntermediateCa(key.get(), {"sub", hours(1), {}}, issuer_.get(),
                                  issuer_key_.get(), kNow);
  ASSERT_FALSE(sub.ok());
  EXPECT_EQ(sub.error().kind, "issuer_not_ca");
}

TEST_F(Pki, RefusesAParentKeyThatDoesNotMatch) {
  PKeyPtr key = p256();
  auto issuer =
      createIntermediateCa(key.get(), {"issuer", hours(1), {}}, root_.get(), key.get(), kNow);
  ASSERT_FALSE(issuer.ok());
  EXPECT_EQ(issuer.error().kind, "key_mismatch");
}

TEST_F(Pki, RefusesBadOptions) {
  EXPECT_EQ(createRootCa(root_key_.get(), {"", hours(1), {}}, kNow).error().kind,
            "invalid_argument");
  EXPECT_EQ(createRootCa(root_key_.get(), {std::string(65, 'a'), hours(1), {}}, kNow).error().kind,
            "invalid_argument");
  EXPECT_EQ(createRootCa(root_key_.get(), {"root", seconds(0), {}}, kNow).error().kind,
            "invalid_argument");
  EXPECT_EQ(createRootCa(root_key_.get(), {"root", hours(24 * 365 * 101), {}}, kNow).error().kind,
            "invalid_argument");
}

TEST_F(Pki, ServerCertificateNamesItsDnsNames) {
  PKeyPtr key = p256();
  auto cert = createServerCert(key.get(), {"", hours(8760), {}},
                               {"weft-injector.weft.svc", "weft-injector.weft.svc.cluster.local"},
                               root_.get(), root_key_.get(), kNow);
  ASSERT_TRUE(cert.ok()) << cert.error().message();
  const CertSummary s = describe(cert->get());
  EXPECT_THAT(s.dns_names,
              ElementsAre("weft-injector.weft.svc", "weft-injector.weft.svc.cluster.local"));
  EXPECT_EQ(s.subject, "CN=weft-injector.weft.svc");
  EXPECT_FALSE(s.is_ca);
  EXPECT_EQ(X509_get_extended_key_usage(cert->get()), static_cast<uint32_t>(XKU_SSL_SERVER));
  EXPECT_TRUE(verifyChain(cert->get(), {}, {root_.get()}, kNow).ok());

  auto bad = createServerCert(key.get(), {"", hours(1), {}}, {"Bad_Name"}, root_.get(),
                              root_key_.get(), kNow);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, "invalid_argument");
}

// --- encodings ----------------------------------------------------------------------------------

TEST_F(Pki, CertificatesRoundTripThroughPemAndDer) {
  const std::string pem = certToPem(root_.get());
  EXPECT_THAT(pem, HasSubstr("-----BEGIN CERTIFICATE-----"));
  auto from_pem = certFromPem(pem);
  ASSERT_TRUE(from_pem.ok());
  EXPECT_EQ(X509_cmp(from_pem->get(), root_.get()), 0);

  const std::string der = certToDer(root_.get());
  auto from_der = certFromDer(der);
  ASSERT_TRUE(from_der.ok());
  EXPECT_EQ(X509_cmp(from_der->get(), root_.get()), 0);
  EXPECT_EQ(certFromDer(der + "x").error().kind, "malformed_certificate");
  EXPECT_EQ(certFromDer(der.substr(0, der.size() - 1)).error().kind, "malformed_certificate");
  EXPECT_EQ(certFromDer("").error().kind, "malformed_certificate");
  EXPECT_EQ(certFromPem("garbage").error().kind, "malformed_certificate");
}

TEST_F(Pki, BundlesKeepOrderAndSkipOtherBlocks) {
  const std::string bundle = "# comment\n" + certToPem(issuer_.get()) +
                             privateKeyToPem(issuer_key_.get()) + certToPem(root_.get());
  auto certs = certsFromPem(bundle);
  ASSERT_TRUE(certs.ok()) << certs.error().message();
  ASSERT_EQ(certs->size(), 2U);
  EXPECT_EQ(X509_cmp((*certs)[0].get(), issuer_.get()), 0);
  EXPECT_EQ(X509_cmp((*certs)[1].get(), root_.get()), 0);
}

TEST_F(Pki, BundlesRefuseEmptyOrDamagedInput) {
  EXPECT_EQ(certsFromPem("").error().kind, "malformed_certificate");
  EXPECT_EQ(certsFromPem(privateKeyToPem(root_key_.get())).error().kind, "malformed_certificate");
  std::string damaged = certToPem(root_.get());
  damaged[damaged.size() / 2] = '!';
  EXPECT_EQ(certsFromPem(certToPem(issuer_.get()) + damaged).error().kind, "malformed_certificate");
  EXPECT_EQ(ERR_peek_error(), 0UL);
}

TEST_F(Pki, DescribeReportsEveryField) {
  X509Ptr leaf = issue();
  const CertSummary s = describe(leaf.get());
  EXPECT_EQ(s.subject, std::string("CN=") + kIdentity);
  EXPECT_EQ(s.issuer, "CN=identity.weft.cluster.local");
  EXPECT_THAT(s.dns_names, ElementsAre(kIdentity));
  EXPECT_EQ(s.not_before, kNow - seconds(20));
  EXPECT_EQ(s.not_after, kNow + hours(24));
  EXPECT_EQ(s.key_algorithm, "ECDSA P-256");
  EXPECT_EQ(s.signature_algorithm, "ecdsa-with-SHA256");
  EXPECT_FALSE(s.is_ca);
  EXPECT_FALSE(s.serial_hex.empty());
  EXPECT_EQ(s.sha256_fingerprint.size(), 32U * 3 - 1);
  EXPECT_EQ(s.sha256_fingerprint[2], ':');
  EXPECT_TRUE(describe(issuer_.get()).is_ca);
}

// --- CSRs ---------------------------------------------------------------------------------------

class Csr : public ::testing::Test {
 protected:
  void expectRejected(const std::string& der, const std::string& kind,
                      const std::string& expected = kIdentity) {
    auto result = validateCsr(der, expected);
    ASSERT_FALSE(result.ok()) << "accepted; wanted " << kind;
    EXPECT_EQ(result.error().kind, kind) << result.error().message();
    EXPECT_EQ(result.error().source, ErrorSource::kDownstream);
    EXPECT_EQ(ERR_peek_error(), 0UL) << "OpenSSL error queue left dirty";
  }

  PKeyPtr key_ = p256();
};

TEST_F(Csr, CreateCsrPassesValidation) {
  auto der = createCsr(key_.get(), kIdentity);
  ASSERT_TRUE(der.ok());
  auto csr = validateCsr(*der, kIdentity);
  ASSERT_TRUE(csr.ok()) << csr.error().message();
  EXPECT_EQ(csr->identity, kIdentity);
  EXPECT_EQ(EVP_PKEY_eq(csr->public_key.get(), key_.get()), 1);
  EXPECT_EQ(createCsr(key_.get(), "Not Valid").error().kind, "invalid_argument");
}

TEST_F(Csr, ComparesCaseInsensitivelyAndAnswersLowercase) {
  auto upper_san = validateCsr(sanCsr(key_.get(),
                                      "DNS:Web.Default.ServiceAccount.Identity.Weft."
                                      "Cluster.Local"),
                               kIdentity);
  ASSERT_TRUE(upper_san.ok()) << upper_san.error().message();
  EXPECT_EQ(upper_san->identity, kIdentity);
  auto upper_expected = validateCsr(sanCsr(key_.get(), std::string("DNS:") + kIdentity),
                                    "WEB.default.serviceaccount.identity.weft.cluster.local");
  ASSERT_TRUE(upper_expected.ok());
  EXPECT_EQ(upper_expected->identity, kIdentity);
}

TEST_F(Csr, AcceptsHarmlessLeafExtensions) {
  auto csr = validateCsr(makeCsr({key_.get(),
                                  kIdentity,
                                  {{NID_subject_alt_name, std::string("DNS:") + kIdentity},
                                   {NID_basic_constraints, "critical,CA:FALSE"},
                                   {NID_key_usage, "critical,digitalSignature"},
                                   {NID_ext_key_usage, "serverAuth,clientAuth"}}}),
                         kIdentity);
  EXPECT_TRUE(csr.ok()) << csr.error().message();
}

TEST_F(Csr, RejectsRsaKey) {
  PKeyPtr rsa = rsaKey();
  expectRejected(sanCsr(rsa.get(), std::string("DNS:") + kIdentity), "wrong_key_type");
}

TEST_F(Csr, RejectsP384Key) {
  PKeyPtr p384 = ecKey("P-384");
  expectRejected(sanCsr(p384.get(), std::string("DNS:") + kIdentity), "wrong_key_type");
}

TEST_F(Csr, RejectsTwoSanEntries) {
  expectRejected(sanCsr(key_.get(), std::string("DNS:") + kIdentity + ",DNS:other.example"),
                 "wrong_san");
  expectRejected(sanCsr(key_.get(), std::string("DNS:") + kIdentity + ",DNS:" + kIdentity),
                 "wrong_san");
}

TEST_F(Csr, RejectsTwoSanExtensions) {
  expectRejected(makeCsr({key_.get(),
                          kIdentity,
                          {{NID_subject_alt_name, std::string("DNS:") + kIdentity},
                           {NID_subject_alt_name, std::string("DNS:") + kIdentity}}}),
                 "wrong_san");
}

TEST_F(Csr, RejectsOtherSanTypes) {
  expectRejected(sanCsr(key_.get(), "IP:10.0.0.1"), "wrong_san");
  expectRejected(sanCsr(key_.get(), "URI:spiffe://cluster.local/ns/default/sa/web"), "wrong_san");
  expectRejected(sanCsr(key_.get(), "email:web@example.org"), "wrong_san");
  expectRejected(sanCsr(key_.get(), std::string("DNS:") + kIdentity + ",IP:10.0.0.1"), "wrong_san");
}

TEST_F(Csr, RejectsWrongOrMissingName) {
  expectRejected(sanCsr(key_.get(), "DNS:admin.weft.serviceaccount.identity.weft.cluster.local"),
                 "wrong_san");
  // A prefix or suffix of the right name is still the wrong name.
  expectRejected(sanCsr(key_.get(), std::string("DNS:") + kIdentity + ".evil"), "wrong_san");
  expectRejected(sanCsr(key_.get(), "DNS:web.default"), "wrong_san");
  // The CN alone does not count.
  expectRejected(makeCsr({key_.get(), kIdentity, {}}), "wrong_san");
  auto der = createCsr(key_.get(), kIdentity);
  ASSERT_TRUE(der.ok());
  expectRejected(*der, "wrong_san", "db.default.serviceaccount.identity.weft.cluster.local");
}

TEST_F(Csr, RejectsCaRequests) {
  const std::string san = std::string("DNS:") + kIdentity;
  expectRejected(
      makeCsr({key_.get(),
               kIdentity,
               {{NID_subject_alt_name, san}, {NID_basic_constraints, "critical,CA:TRUE"}}}),
      "forbidden_extension");
  expectRejected(
      makeCsr(
          {key_.get(), kIdentity, {{NID_subject_alt_name, san}, {NID_key_usage, "keyCertSign"}}}),
      "forbidden_extension");
  expectRejected(
      makeCsr({key_.get(),
               kIdentity,
               {{NID_subject_alt_name, san}, {NID_key_usage, "digitalSignature,cRLSign"}}}),
      "forbidden_extension");
  expectRejected(makeCsr({key_.get(),
                          kIdentity,
                          {{NID_subject_alt_name, san},
                           {NID_name_constraints, "permitted;DNS:.cluster.local"}}}),
                 "forbidden_extension");
}

TEST_F(Csr, RejectsTamperedSignature) {
  std::string der = sanCsr(key_.get(), std::string("DNS:") + kIdentity);
  der.back() = static_cast<char>(der.back() ^ 0x01);
  expectRejected(der, "bad_signature");
}

TEST_F(Csr, RejectsTamperedContent) {
  std::string der = sanCsr(key_.get(), std::string("DNS:") + kIdentity);
  // The CN's first byte: the signed content changes, the encoding stays valid.
  const auto at = der.find(kIdentity);
  ASSERT_NE(at, std::string::npos);
  der[at] = 'x';
  expectRejected(der, "bad_signature");
}

TEST_F(Csr, RejectsSha1Signature) {
  expectRejected(makeCsr({key_.get(),
                          kIdentity,
                          {{NID_subject_alt_name, std::string("DNS:") + kIdentity}},
                          EVP_sha1()}),
                 "bad_signature");
}

TEST_F(Csr, RejectsEveryTruncation) {
  const std::string der = sanCsr(key_.get(), std::string("DNS:") + kIdentity);
  for (std::size_t n = 0; n < der.size(); ++n) {
    SCOPED_TRACE(n);
    expectRejected(der.substr(0, n), "malformed_csr");
  }
  expectRejected(der + '\0', "malformed_csr");
}

TEST_F(Csr, RejectsGarbageAndOversizedInput) {
  expectRejected("garbage", "malformed_csr");
  expectRejected(std::string("\x30\x82\xff\xff", 4) + std::string(100, '\x01'), "malformed_csr");
  expectRejected(std::string(16 * 1024 + 1, '\x30'), "malformed_csr");
  // A certificate is not a CSR.
  PKeyPtr key = p256();
  auto root = createRootCa(key.get(), {"root", hours(1), {}}, kNow);
  ASSERT_TRUE(root.ok());
  expectRejected(certToDer(root->get()), "malformed_csr");
}

TEST_F(Csr, RefusesAnInvalidExpectedIdentity) {
  auto result = validateCsr(sanCsr(key_.get(), "DNS:a..b"), "a..b");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().kind, "wrong_san");
}

// --- leaves -------------------------------------------------------------------------------------

TEST_F(Pki, LeafHasTheWorkloadProfile) {
  X509Ptr leaf = issue();
  X509* cert = leaf.get();
  EXPECT_EQ(X509_get_extension_flags(cert) & EXFLAG_CA, 0U);
  EXPECT_TRUE(extensionIsCritical(cert, NID_basic_constraints));
  EXPECT_TRUE(extensionIsCritical(cert, NID_key_usage));
  EXPECT_FALSE(extensionIsCritical(cert, NID_subject_alt_name));
  EXPECT_EQ(X509_get_key_usage(cert), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(cert),
            static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_EQ(commonName(X509_get_subject_name(cert)), kIdentity);
  EXPECT_TRUE(hasDnsSan(cert, kIdentity));
  EXPECT_NE(X509_get0_subject_key_id(cert), nullptr);
  EXPECT_EQ(asn1Bytes(X509_get0_authority_key_id(cert)),
            asn1Bytes(X509_get0_subject_key_id(issuer_.get())));
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(cert), leaf_key_.get()), 1);
  EXPECT_EQ(X509_check_issued(issuer_.get(), cert), X509_V_OK);
}

TEST_F(Pki, LeafIsBackdated) {
  const SystemTime later = kNow + hours(1);
  X509Ptr leaf = issue(kIdentity, later);
  EXPECT_EQ(timeT(X509_get0_notBefore(leaf.get())), timeT(later - seconds(20)));
  EXPECT_EQ(timeT(X509_get0_notAfter(leaf.get())), timeT(later + hours(24)));
  // Valid to a peer whose clock is 10 s behind the identity service's: what the backdate is for.
  EXPECT_TRUE(verify(leaf.get(), later - seconds(10)).ok());
  EXPECT_EQ(verify(leaf.get(), later - seconds(21)).error().kind, "not_yet_valid");
}

TEST_F(Pki, LeafNeverOutlivesTheIssuer) {
  // 2 hours before the issuer expires, a 24 h leaf gets 2 hours.
  const SystemTime late = kNow + hours(8760) - hours(2);
  X509Ptr leaf = issue(kIdentity, late);
  EXPECT_EQ(timeT(X509_get0_notAfter(leaf.get())), timeT(X509_get0_notAfter(issuer_.get())));
  EXPECT_EQ(timeT(X509_get0_notAfter(leaf.get())), timeT(late + hours(2)));
}

TEST_F(Pki, RefusesToIssueFromAnExpiredIssuer) {
  auto csr = validateCsr(*createCsr(p256().get(), kIdentity), kIdentity);
  ASSERT_TRUE(csr.ok());
  auto leaf = issueLeaf(*csr, issuer_.get(), issuer_key_.get(), hours(24), seconds(20),
                        kNow + hours(8760) + seconds(1));
  ASSERT_FALSE(leaf.ok());
  EXPECT_EQ(leaf.error().kind, "issuer_expired");
}

TEST_F(Pki, LongIdentityGoesInACriticalSanOnly) {
  const std::string identity = identityName(std::string(40, 'a'), "default");
  ASSERT_GT(identity.size(), 64U);
  X509Ptr leaf = issue(identity);
  ASSERT_TRUE(leaf);
  EXPECT_EQ(describe(leaf.get()).subject, "");
  EXPECT_TRUE(extensionIsCritical(leaf.get(), NID_subject_alt_name));
  EXPECT_TRUE(hasDnsSan(leaf.get(), identity));
  EXPECT_TRUE(verify(leaf.get()).ok());
}

TEST_F(Pki, HasDnsSanIsExactButCaseInsensitive) {
  X509Ptr leaf = issue();
  EXPECT_TRUE(hasDnsSan(leaf.get(), "WEB.default.serviceaccount.identity.weft.cluster.local"));
  EXPECT_FALSE(hasDnsSan(leaf.get(), "web.default"));
  EXPECT_FALSE(hasDnsSan(leaf.get(), std::string(kIdentity) + "."));
  EXPECT_FALSE(hasDnsSan(root_.get(), "root.weft.cluster.local"));  // CN is not a SAN
  EXPECT_FALSE(hasDnsSan(nullptr, kIdentity));
}

// --- verification -------------------------------------------------------------------------------

TEST_F(Pki, FullChainVerifies) {
  X509Ptr leaf = issue();
  EXPECT_TRUE(verify(leaf.get()).ok());
}

TEST_F(Pki, ExpiredLeafIsExpired) {
  X509Ptr leaf = issue();
  auto status = verify(leaf.get(), kNow + hours(25));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, "expired");
  EXPECT_THAT(status.error().context, HasSubstr("expired"));
}

TEST_F(Pki, ExpiredIssuerIsExpired) {
  X509Ptr leaf = issue();
  auto status = verifyChain(issuer_.get(), {}, {root_.get()}, kNow + hours(8761));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, "expired");
}

TEST_F(Pki, FutureLeafIsNotYetValid) {
  X509Ptr leaf = issue(kIdentity, kNow + hours(48));
  auto status = verify(leaf.get(), kNow + hours(47));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, "not_yet_valid");
}

TEST_F(Pki, OtherRootIsUnknownCa) {
  PKeyPtr key = p256();
  auto other = createRootCa(key.get(), {"other-root", hours(100), {}}, kNow);
  ASSERT_TRUE(other.ok());
  X509Ptr leaf = issue();
  auto status = verifyChain(leaf.get(), {issuer_.get()}, {other->get()}, kNow);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, "unknown_ca");
  EXPECT_EQ(verifyChain(leaf.get(), {issuer_.get()}, {}, kNow).error().kind, "unknown_ca");
}

TEST_F(Pki, MissingIntermediateIsUnknownCa) {
  X509Ptr leaf = issue();
  auto status = verifyChain(leaf.get(), {}, {root_.get()}, kNow);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, "unknown_ca");
}

TEST_F(Pki, SelfSignedLeafIsUnknownCa) {
  auto status = verifyChain(root_.get(), {}, {issuer_.get()}, kNow);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, "unknown_ca");
}

TEST_F(Pki, BundleWithSeveralRootsVerifies) {
  PKeyPtr key = p256();
  auto other = createRootCa(key.get(), {"other-root", hours(100), {}}, kNow);
  ASSERT_TRUE(other.ok());
  X509Ptr leaf = issue();
  EXPECT_TRUE(verifyChain(leaf.get(), {issuer_.get()}, {other->get(), root_.get()}, kNow).ok());
  EXPECT_TRUE(verifyChain(leaf.get(), {issuer_.get()}, {root_.get(), other->get()}, kNow).ok());
}

TEST_F(Pki, BrokenSignatureIsBadChain) {
  X509Ptr leaf = issue();
  std::string der = certToDer(leaf.get());
  der.back() = static_cast<char>(der.back() ^ 0x01);
  auto tampered = certFromDer(der);
  ASSERT_TRUE(tampered.ok());
  auto status = verify(tampered->get());
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, "bad_chain");
  EXPECT_THAT(status.error().context, HasSubstr("signature"));
}

TEST(OpensslError, ReportsAndClearsTheQueue) {
  EXPECT_FALSE(certFromPem("garbage").ok());
  ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
  EXPECT_THAT(opensslError(), HasSubstr("already in hash table"));
  EXPECT_EQ(ERR_peek_error(), 0UL);
}

}  // namespace
}  // namespace weft::identity
