// Fuzz target for the identity service's untrusted inputs (weft/identity/certs.h): a proxy's DER
// CSR (validateCsr) and peer certificates (certFromDer, certFromPem, certsFromPem). Nothing may
// crash, and what the parsers accept must hold together:
//   - an accepted CSR names exactly the expected identity, in lowercase, with a P-256 key, and
//     the leaf issued for it carries that name and verifies up to the test's own root;
//   - a certificate accepted from DER re-encodes (OpenSSL also takes some BER, so not necessarily
//     to the same bytes), and is described in printable text.
// Seed corpus (csr_corpus/, made with `openssl req`): CSRs for kIdentity that are valid (also with
// an uppercase SAN and with leaf extensions), and ones with two DNS SANs, an IP or URI SAN, the
// wrong name, no SAN, CA:TRUE, keyCertSign, a SHA-1 signature, a P-384 or RSA key, a flipped
// signature bit, truncations, a trailing byte, a huge length, garbage; plus certificates (DER,
// PEM, a two-certificate bundle).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/err.h>

#include "weft/identity/certs.h"

namespace weft::identity {
namespace {

// The identity the seed corpus' CSRs ask for.
constexpr std::string_view kIdentity = "web.default.serviceaccount.identity.weft.cluster.local";

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "csr_fuzz_test: invariant broken: %s\n", what);
    std::abort();
  }
}

// One CA for the whole run: issuing a leaf for every accepted CSR exercises issueLeaf on
// untrusted keys. Key generation is slow; do it once.
struct Ca {
  PKeyPtr root_key;
  X509Ptr root;
  PKeyPtr issuer_key;
  X509Ptr issuer;
  PKeyPtr csr_key;  // re-signs mutated CSRs
  SystemTime now = std::chrono::system_clock::from_time_t(1'900'000'000);

  Ca() {
    auto rk = generateP256Key();
    auto ik = generateP256Key();
    check(rk.ok() && ik.ok(), "key generation");
    root_key = std::move(rk).value();
    issuer_key = std::move(ik).value();
    CertOptions opts{"fuzz-root", std::chrono::hours(24 * 3650), {}};
    auto r = createRootCa(root_key.get(), opts, now);
    check(r.ok(), "root");
    root = std::move(r).value();
    opts.common_name = "fuzz-issuer";
    auto i = createIntermediateCa(issuer_key.get(), opts, root.get(), root_key.get(), now);
    check(i.ok(), "issuer");
    issuer = std::move(i).value();
    auto ck = generateP256Key();
    check(ck.ok(), "key generation");
    csr_key = std::move(ck).value();
  }
};

const Ca& ca() {
  static const Ca instance;
  return instance;
}

bool isKnownCsrError(const std::string& kind) {
  return kind == "malformed_csr" || kind == "bad_signature" || kind == "wrong_key_type" ||
         kind == "wrong_san" || kind == "forbidden_extension";
}

void exerciseCert(X509* cert) {
  const CertSummary s = describe(cert);
  (void)hasDnsSan(cert, kIdentity);
  (void)certToPem(cert);
  // Printable output only: describe() escapes hostile bytes.
  for (const std::string& text : {s.subject, s.issuer}) {
    for (char c : text) check(c >= 0x20 && c < 0x7f, "describe() left an unprintable byte");
  }
  // Verification of a hostile certificate against the test root must fail cleanly.
  std::vector<X509*> roots{ca().root.get()};
  (void)verifyChain(cert, {ca().issuer.get()}, roots, ca().now);
}

void fuzzCsr(std::string_view data, std::string_view expected) {
  auto csr = validateCsr(data, expected);
  if (!csr.ok()) {
    check(isKnownCsrError(csr.error().kind), "validateCsr returned an undocumented error kind");
    return;
  }
  check(csr->identity == kIdentity, "accepted CSR for a different identity");
  check(isP256(csr->public_key.get()), "accepted CSR with a non-P-256 key");
  const Ca& c = ca();
  auto leaf = issueLeaf(*csr, c.issuer.get(), c.issuer_key.get(), std::chrono::hours(24),
                        std::chrono::seconds(20), c.now);
  check(leaf.ok(), "issueLeaf failed on a validated CSR");
  check(hasDnsSan(leaf->get(), kIdentity), "issued leaf lacks the identity");
  std::vector<X509*> roots{c.root.get()};
  check(verifyChain(leaf->get(), {c.issuer.get()}, roots, c.now).ok(),
        "issued leaf does not verify");
}

// Nearly every mutation breaks the self-signature, which validateCsr checks before the SAN and
// the extensions. So whatever still parses as a request is also re-signed with a P-256 key, to
// carry the mutated names and extensions past the signature check.
std::string resigned(std::string_view bytes) {
  if (bytes.size() > 16 * 1024) return {};
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(bytes.size())));
  std::string out;
  if (req && X509_REQ_set_pubkey(req.get(), ca().csr_key.get()) == 1 &&
      X509_REQ_sign(req.get(), ca().csr_key.get(), EVP_sha256()) > 0) {
    const int n = i2d_X509_REQ(req.get(), nullptr);
    if (n > 0) {
      out.resize(static_cast<std::size_t>(n));
      auto* q = reinterpret_cast<unsigned char*>(out.data());
      if (i2d_X509_REQ(req.get(), &q) != n) out.clear();
    }
  }
  ERR_clear_error();
  return out;
}

}  // namespace
}  // namespace weft::identity

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer looks for.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::identity;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  fuzzCsr(bytes, kIdentity);
  // The comparison is case-insensitive; the answer is always the lowercase form.
  fuzzCsr(bytes, "Web.Default.ServiceAccount.Identity.Weft.Cluster.Local");
  if (const std::string again = resigned(bytes); !again.empty()) fuzzCsr(again, kIdentity);

  if (auto cert = certFromDer(bytes); cert.ok()) {
    check(!certToDer(cert->get()).empty(), "accepted certificate does not re-encode");
    exerciseCert(cert->get());
  }
  if (auto cert = certFromPem(bytes); cert.ok()) exerciseCert(cert->get());
  if (auto certs = certsFromPem(bytes); certs.ok()) {
    check(!certs->empty(), "certsFromPem accepted an empty bundle");
    for (auto& cert : *certs) exerciseCert(cert.get());
  }
  (void)privateKeyFromPem(bytes);
  return 0;
}
