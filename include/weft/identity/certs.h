// X.509 and key handling for Weft's identity (SPEC §3), over OpenSSL 3.
//
// Trust anchor (self-signed root CA) -> issuer (intermediate CA, ECDSA P-256) -> leaf per proxy
// (24 h, NotBefore back-dated 20 s, never outliving the issuer, exactly one DNS SAN: the
// identity name). Every function here is thread-safe and returns errors as values; inputs that
// come from the network (CSRs, peer certificates) are untrusted.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/result.h"

namespace weft::identity {

struct PKeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct X509ReqDeleter {
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
};
using PKeyPtr = std::unique_ptr<EVP_PKEY, PKeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using X509ReqPtr = std::unique_ptr<X509_REQ, X509ReqDeleter>;

using SystemTime = std::chrono::system_clock::time_point;

// <serviceaccount>.<namespace>.serviceaccount.identity.<cp-namespace>.<trust-domain>
std::string identityName(std::string_view service_account, std::string_view ns,
                         std::string_view control_plane_ns = "weft",
                         std::string_view trust_domain = "cluster.local");
// A DNS name usable as an identity: lowercase letters, digits, '-' and '.', labels 1..63,
// total <= 253, no leading/trailing '-' or '.' in a label.
bool isValidIdentityName(std::string_view name);

// --- keys -------------------------------------------------------------------------------------
Result<PKeyPtr> generateP256Key();
std::string privateKeyToPem(EVP_PKEY* key);  // PKCS#8, unencrypted
Result<PKeyPtr> privateKeyFromPem(std::string_view pem);
// "ECDSA P-256", "ECDSA P-384", "RSA 2048", ... for humans and `weft check`.
std::string keyAlgorithm(EVP_PKEY* key);
bool isP256(EVP_PKEY* key);

// --- certificates -----------------------------------------------------------------------------
std::string certToPem(X509* cert);
std::string certToDer(X509* cert);
Result<X509Ptr> certFromPem(std::string_view pem);
Result<X509Ptr> certFromDer(std::string_view der);
// Every certificate of a PEM bundle, in order; an empty or unparsable bundle is an error.
Result<std::vector<X509Ptr>> certsFromPem(std::string_view pem);

struct CertOptions {
  std::string common_name;
  std::chrono::seconds lifetime{std::chrono::hours(24 * 365)};
  std::chrono::seconds backdate{0};  // NotBefore = now - backdate
};

// A self-signed CA (the trust anchor): basicConstraints CA:TRUE, keyUsage keyCertSign+cRLSign.
Result<X509Ptr> createRootCa(EVP_PKEY* key, const CertOptions& opts, SystemTime now);
// An intermediate CA (the issuer) signed by `parent`; pathlen 0. NotAfter is clamped to the
// parent's NotAfter.
Result<X509Ptr> createIntermediateCa(EVP_PKEY* key, const CertOptions& opts, X509* parent,
                                     EVP_PKEY* parent_key, SystemTime now);
// A TLS server certificate (e.g. the injector webhook's) for `dns_names`, signed by `parent`.
Result<X509Ptr> createServerCert(EVP_PKEY* key, const CertOptions& opts,
                                 const std::vector<std::string>& dns_names, X509* parent,
                                 EVP_PKEY* parent_key, SystemTime now);

// --- CSRs (proxy -> identity service) ---------------------------------------------------------
// DER PKCS#10 with exactly one DNS SAN, `identity`, and the subject CN=identity (left empty when
// the name is longer than the 64 characters X.520 allows a CN).
Result<std::string> createCsr(EVP_PKEY* key, std::string_view identity);

struct ValidatedCsr {
  std::string identity;  // the single DNS SAN
  PKeyPtr public_key;    // ECDSA P-256
};
// Parses an untrusted DER CSR and checks: ECDSA P-256 key, valid self-signature, exactly one
// SAN which is a DNS name equal to `expected_identity`, no other SAN types, no other requested
// extensions that would grant more (basicConstraints CA, keyUsage certSign). Error kinds (the
// `reason` label of rejections): "malformed_csr", "bad_signature", "wrong_key_type",
// "wrong_san", "forbidden_extension".
Result<ValidatedCsr> validateCsr(std::string_view der, std::string_view expected_identity);

// A leaf for `csr`: serverAuth+clientAuth, digitalSignature, CA:FALSE, the DNS SAN, lifetime
// `lifetime`, NotBefore = now - backdate, NotAfter = min(now + lifetime, issuer NotAfter).
Result<X509Ptr> issueLeaf(const ValidatedCsr& csr, X509* issuer, EVP_PKEY* issuer_key,
                          std::chrono::seconds lifetime, std::chrono::seconds backdate,
                          SystemTime now);

// --- inspection and verification --------------------------------------------------------------
struct CertSummary {
  std::string subject;     // RFC 2253 one-line
  std::string issuer;
  std::vector<std::string> dns_names;
  SystemTime not_before;
  SystemTime not_after;
  std::string key_algorithm;        // keyAlgorithm() of the public key
  std::string signature_algorithm;  // e.g. "ecdsa-with-SHA256"
  bool is_ca = false;
  std::string serial_hex;
  std::string sha256_fingerprint;  // hex, colon-separated
};
CertSummary describe(X509* cert);

// Verifies `leaf` up to one of `roots` through `intermediates`, at time `now`. Error kinds:
// "expired", "not_yet_valid", "unknown_ca" (no path to a root), "bad_chain" (anything else),
// each with OpenSSL's reason in the context.
Status verifyChain(X509* leaf, const std::vector<X509*>& intermediates,
                   const std::vector<X509*>& roots, SystemTime now);

// True when `cert` carries `identity` as a DNS SAN (exact, case-insensitive).
bool hasDnsSan(X509* cert, std::string_view identity);

// The last OpenSSL error queue entry as text, and clears the queue.
std::string opensslError();

}  // namespace weft::identity
