// weft/identity/certs.h over OpenSSL 3: EVP_PKEY for keys (no EC_KEY), X509/X509_REQ for
// certificates and CSRs. Nothing here keeps state between calls: every object is owned by a
// unique_ptr for the length of one call, and OpenSSL's error queue is per thread.
#include "weft/identity/certs.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <utility>

#include "weft/common/ascii.h"

namespace weft::identity {
namespace {

using std::chrono::seconds;

template <auto Fn>
struct Free {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using PKeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free<EVP_PKEY_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, Free<ASN1_INTEGER_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;
using BasicConstraintsPtr = std::unique_ptr<BASIC_CONSTRAINTS, Free<BASIC_CONSTRAINTS_free>>;
using BitStringPtr = std::unique_ptr<ASN1_BIT_STRING, Free<ASN1_BIT_STRING_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;

struct ExtensionStackFree {
  void operator()(STACK_OF(X509_EXTENSION) * s) const {
    sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
  }
};
using ExtensionStackPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionStackFree>;
// Borrowed certificates: the stack owns none of them.
struct BorrowedX509StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
using BorrowedX509StackPtr = std::unique_ptr<STACK_OF(X509), BorrowedX509StackFree>;

// A CSR is one key, one name and a signature: a few hundred bytes. 16 KiB leaves room for any
// honest encoding and keeps a hostile one from costing more than a glance.
constexpr std::size_t kMaxCsrBytes = 16 * 1024;
// One DER certificate; long SAN lists stay far below this.
constexpr std::size_t kMaxDerCertBytes = 64 * 1024;
// PEM files (keys, certificates, trust bundles of many roots).
constexpr std::size_t kMaxPemBytes = 4 * 1024 * 1024;
// X.520 ub-common-name: OpenSSL refuses longer CNs, so longer names go in the SAN only.
constexpr std::size_t kMaxCommonName = 64;
// Far beyond any sane certificate, and small enough that now + lifetime cannot overflow
// system_clock (nanoseconds, +-292 years around 1970).
constexpr seconds kMaxLifetime = std::chrono::hours(24 * 365 * 100);

// Untrusted text made safe for logs, terminals and JSON: printable ASCII kept, the rest \xNN,
// cut at `limit` characters.
std::string printable(std::string_view s, std::size_t limit = 256) {
  std::string out;
  for (char c : s) {
    if (out.size() >= limit) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

std::string_view asn1View(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<std::size_t>(std::max(0, ASN1_STRING_length(s)))};
}

BioPtr memBio(std::string_view data) {
  // Callers cap sizes far below INT_MAX before getting here.
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bioString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 && data != nullptr ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

// Never prompt for a pass phrase: an encrypted PEM simply fails to load.
int noPassword(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

Error sslError(std::string kind, const std::string& what) {
  return Error::internal(std::move(kind), what + ": " + opensslError());
}

// A rejection of untrusted input: the peer sent it, and the queue may hold parse noise.
Error reject(std::string kind, std::string context) {
  ERR_clear_error();
  return Error::downstream(std::move(kind), std::move(context));
}

Error invalidArgument(std::string context) {
  return Error::internal("invalid_argument", std::move(context));
}

std::time_t toTimeT(SystemTime t) {
  return static_cast<std::time_t>(
      std::chrono::duration_cast<seconds>(t.time_since_epoch()).count());
}

SystemTime fromTimeT(std::time_t t) {
  // Certificates may say 9999-12-31, beyond what system_clock can hold: saturate.
  constexpr auto kMax =
      std::chrono::duration_cast<seconds>(SystemTime::duration::max()).count() - 1;
  constexpr auto kMin =
      std::chrono::duration_cast<seconds>(SystemTime::duration::min()).count() + 1;
  const auto s = std::clamp<long long>(static_cast<long long>(t), kMin, kMax);
  return SystemTime(std::chrono::duration_cast<SystemTime::duration>(seconds(s)));
}

// False when the field is unreadable.
bool asn1TimeToTimeT(const ASN1_TIME* t, std::time_t* out) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return false;
  *out = timegm(&tm);
  return true;
}

std::string groupName(EVP_PKEY* key) {
  std::array<char, 80> buf{};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(key, buf.data(), buf.size(), &len) != 1) return {};
  return std::string(buf.data(), std::min(len, buf.size()));
}

int curveNid(const std::string& name) {
  if (name.empty()) return NID_undef;
  int nid = OBJ_sn2nid(name.c_str());
  if (nid == NID_undef) nid = EC_curve_nist2nid(name.c_str());
  return nid;
}

// --- certificate construction -------------------------------------------------------------------

struct Validity {
  std::time_t not_before = 0;
  std::time_t not_after = 0;
};

Status checkWindow(seconds lifetime, seconds backdate) {
  if (lifetime <= seconds(0) || lifetime > kMaxLifetime) {
    return invalidArgument("lifetime must be between 1s and 100 years, not " +
                           std::to_string(lifetime.count()) + "s");
  }
  if (backdate < seconds(0) || backdate > kMaxLifetime) {
    return invalidArgument("backdate must be between 0 and 100 years");
  }
  return okStatus();
}

// NotBefore = now - backdate, NotAfter = now + lifetime, cut to the parent's NotAfter.
Result<Validity> window(seconds lifetime, seconds backdate, X509* parent, SystemTime now) {
  if (auto ok = checkWindow(lifetime, backdate); !ok) return ok.error();
  Validity v{toTimeT(now) - static_cast<std::time_t>(backdate.count()),
             toTimeT(now) + static_cast<std::time_t>(lifetime.count())};
  if (parent != nullptr) {
    std::time_t parent_not_after = 0;
    if (!asn1TimeToTimeT(X509_get0_notAfter(parent), &parent_not_after)) {
      return Error::internal("bad_issuer", "the issuer's NotAfter is unreadable");
    }
    v.not_after = std::min(v.not_after, parent_not_after);
  }
  return v;
}

// The parent must be a usable CA for `key`, and not expired at `now`.
Status checkParent(X509* parent, EVP_PKEY* parent_key, SystemTime now, bool signs_ca) {
  if (parent == nullptr || parent_key == nullptr) {
    return invalidArgument("no issuer certificate or key");
  }
  auto subject = [parent] { return "\"" + describe(parent).subject + "\""; };
  std::time_t not_after = 0;
  if (!asn1TimeToTimeT(X509_get0_notAfter(parent), &not_after)) {
    return Error::internal("bad_issuer", "the NotAfter of " + subject() + " is unreadable");
  }
  if (not_after <= toTimeT(now)) {
    return Error::internal("issuer_expired", subject() + " has expired; rotate it");
  }
  if ((X509_get_extension_flags(parent) & EXFLAG_CA) == 0 ||
      (X509_get_key_usage(parent) & KU_KEY_CERT_SIGN) == 0) {
    return Error::internal("issuer_not_ca", subject() + " is not a CA certificate");
  }
  if (signs_ca && X509_get_pathlen(parent) == 0) {
    return Error::internal("issuer_not_ca",
                           subject() + " has pathlen 0: it may sign leaves but no further CA");
  }
  ERR_set_mark();
  const bool matches = X509_check_private_key(parent, parent_key) == 1;
  ERR_pop_to_mark();
  if (!matches) {
    return Error::internal("key_mismatch", "the issuer key does not belong to " + subject());
  }
  return okStatus();
}

GeneralNamesPtr dnsGeneralNames(const std::vector<std::string>& names) {
  GeneralNamesPtr gens(sk_GENERAL_NAME_new_null());
  if (!gens) return nullptr;
  for (const auto& name : names) {
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    if (ia5 == nullptr || ASN1_STRING_set(ia5, name.data(), static_cast<int>(name.size())) != 1) {
      ASN1_IA5STRING_free(ia5);
      return nullptr;
    }
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (gn == nullptr) {
      ASN1_IA5STRING_free(ia5);
      return nullptr;
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    if (sk_GENERAL_NAME_push(gens.get(), gn) <= 0) {
      GENERAL_NAME_free(gn);
      return nullptr;
    }
  }
  return gens;
}

// Empty `cn`: empty subject.
bool setCommonName(X509_NAME* name, std::string_view cn) {
  if (cn.empty()) return true;
  // MBSTRING_UTF8 applies X.520's size bounds, so an overlong CN fails here, not at a verifier.
  return X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                    reinterpret_cast<const unsigned char*>(cn.data()),
                                    static_cast<int>(cn.size()), -1, 0) == 1;
}

bool setRandomSerial(X509* cert) {
  std::array<unsigned char, 16> bytes{};
  BnPtr bn;
  do {
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) return false;
    bn.reset(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
    if (!bn) return false;
  } while (BN_is_zero(bn.get()));  // RFC 5280: positive
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  return serial && X509_set_serialNumber(cert, serial.get()) == 1;
}

const EVP_MD* digestFor(EVP_PKEY* signing_key) {
  // EdDSA signs the message itself and takes no separate digest.
  if (EVP_PKEY_is_a(signing_key, "ED25519") || EVP_PKEY_is_a(signing_key, "ED448")) {
    return nullptr;
  }
  return EVP_sha256();
}

struct CertSpec {
  EVP_PKEY* subject_key = nullptr;
  std::string common_name;  // empty: empty subject, and the SAN becomes critical (RFC 5280)
  std::vector<std::string> dns_names;
  X509* issuer = nullptr;  // nullptr: self-signed by subject_key
  EVP_PKEY* signing_key = nullptr;
  Validity validity;
  // In config syntax ("critical,CA:TRUE"), before the SAN, SKI and AKI.
  std::vector<std::pair<int, const char*>> extensions;
};

Result<X509Ptr> buildCert(const CertSpec& spec) {
  X509Ptr cert(X509_new());
  if (!cert) return sslError("internal", "X509_new");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || !setRandomSerial(cert.get())) {
    return sslError("internal", "cannot set version and serial");
  }
  if (!setCommonName(X509_get_subject_name(cert.get()), spec.common_name)) {
    return invalidArgument("cannot use \"" + printable(spec.common_name) +
                           "\" as a common name (1 to 64 characters): " + opensslError());
  }
  X509* issuer = spec.issuer != nullptr ? spec.issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), spec.validity.not_before) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), spec.validity.not_after) == nullptr ||
      X509_set_pubkey(cert.get(), spec.subject_key) != 1) {
    return sslError("internal", "cannot set the certificate fields");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
    return ext && X509_add_ext(cert.get(), ext.get(), -1) == 1;
  };
  for (const auto& [nid, value] : spec.extensions) {
    if (!add(nid, value)) return sslError("internal", std::string("extension ") + value);
  }
  if (!spec.dns_names.empty()) {
    GeneralNamesPtr names = dnsGeneralNames(spec.dns_names);
    if (!names || X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(),
                                    spec.common_name.empty() ? 1 : 0, X509V3_ADD_DEFAULT) != 1) {
      return sslError("internal", "subjectAltName");
    }
  }
  // SKI first: for a self-signed certificate the AKI is read from it ("always", because OpenSSL
  // leaves it out of self-signed certificates otherwise). A parent without an SKI (an old external
  // CA) is named by issuer and serial instead.
  if (!add(NID_subject_key_identifier, "hash") ||
      !add(NID_authority_key_identifier,
           spec.issuer == nullptr ? "keyid:always" : "keyid,issuer")) {
    return sslError("internal", "key identifiers");
  }
  if (X509_sign(cert.get(), spec.signing_key, digestFor(spec.signing_key)) <= 0) {
    return sslError("signing_failed", "cannot sign the certificate");
  }
  return cert;
}

Status checkDnsNames(const std::vector<std::string>& names) {
  if (names.empty()) return invalidArgument("at least one DNS name is needed");
  for (const auto& name : names) {
    if (!isValidIdentityName(name)) {
      return invalidArgument("\"" + printable(name) +
                             "\" is not a valid DNS name (lowercase letters, digits, '-', '.')");
    }
  }
  return okStatus();
}

std::string commonNameFor(const std::string& dns_name) {
  return dns_name.size() <= kMaxCommonName ? dns_name : std::string();
}

const char* generalNameType(int type) {
  switch (type) {
    case GEN_EMAIL:
      return "an email address";
    case GEN_DNS:
      return "a DNS name";
    case GEN_URI:
      return "a URI";
    case GEN_IPADD:
      return "an IP address";
    case GEN_DIRNAME:
      return "a directory name";
    case GEN_OTHERNAME:
      return "an otherName";
    case GEN_RID:
      return "a registered ID";
    default:
      return "an unsupported name type";
  }
}

}  // namespace

// --- names --------------------------------------------------------------------------------------

std::string identityName(std::string_view service_account, std::string_view ns,
                         std::string_view control_plane_ns, std::string_view trust_domain) {
  std::string out;
  out.reserve(service_account.size() + ns.size() + control_plane_ns.size() + trust_domain.size() +
              32);
  out.append(service_account).append(".").append(ns).append(".serviceaccount.identity.");
  out.append(control_plane_ns).append(".").append(trust_domain);
  return out;
}

bool isValidIdentityName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find('.', start);
    const std::string_view label =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// --- keys ---------------------------------------------------------------------------------------

Result<PKeyPtr> generateP256Key() {
  PKeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1) {
    return sslError("keygen_failed", "cannot generate an ECDSA P-256 key");
  }
  return PKeyPtr(raw);
}

std::string privateKeyToPem(EVP_PKEY* key) {
  if (key == nullptr) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  return bioString(bio.get());
}

Result<PKeyPtr> privateKeyFromPem(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) return Error::internal("malformed_key", "key file too large");
  BioPtr bio = memBio(pem);
  PKeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassword, nullptr) : nullptr);
  if (!key) {
    return sslError("malformed_key",
                    "no unencrypted PEM private key (PKCS#8 or traditional) could be read");
  }
  return key;
}

std::string keyAlgorithm(EVP_PKEY* key) {
  if (key == nullptr) return "none";
  if (EVP_PKEY_is_a(key, "EC")) {
    const std::string group = groupName(key);
    const char* nist = EC_curve_nid2nist(curveNid(group));
    if (nist != nullptr) return std::string("ECDSA ") + nist;
    return "ECDSA " + (group.empty() ? std::string("(explicit curve parameters)") : group);
  }
  if (EVP_PKEY_is_a(key, "RSA")) return "RSA " + std::to_string(EVP_PKEY_get_bits(key));
  if (EVP_PKEY_is_a(key, "RSA-PSS")) return "RSA-PSS " + std::to_string(EVP_PKEY_get_bits(key));
  if (EVP_PKEY_is_a(key, "ED25519")) return "Ed25519";
  if (EVP_PKEY_is_a(key, "ED448")) return "Ed448";
  if (EVP_PKEY_is_a(key, "DSA")) return "DSA " + std::to_string(EVP_PKEY_get_bits(key));
  const char* name = EVP_PKEY_get0_type_name(key);
  return name != nullptr ? name : "unknown";
}

bool isP256(EVP_PKEY* key) {
  return key != nullptr && EVP_PKEY_is_a(key, "EC") &&
         curveNid(groupName(key)) == NID_X9_62_prime256v1;
}

// --- certificates -------------------------------------------------------------------------------

std::string certToPem(X509* cert) {
  if (cert == nullptr) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    ERR_clear_error();
    return {};
  }
  return bioString(bio.get());
}

std::string certToDer(X509* cert) {
  if (cert == nullptr) return {};
  const int n = i2d_X509(cert, nullptr);
  if (n <= 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(static_cast<std::size_t>(n), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  if (i2d_X509(cert, &p) != n) {
    ERR_clear_error();
    return {};
  }
  return out;
}

Result<X509Ptr> certFromPem(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return Error::internal("malformed_certificate", "PEM input too large");
  }
  BioPtr bio = memBio(pem);
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, noPassword, nullptr) : nullptr);
  if (!cert) return sslError("malformed_certificate", "no PEM certificate could be read");
  return cert;
}

Result<X509Ptr> certFromDer(std::string_view der) {
  if (der.empty() || der.size() > kMaxDerCertBytes) {
    return Error::internal("malformed_certificate",
                           "a DER certificate of " + std::to_string(der.size()) +
                               " bytes (want 1.." + std::to_string(kMaxDerCertBytes) + ")");
  }
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = begin;
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return sslError("malformed_certificate", "not a DER certificate");
  if (p != begin + der.size()) {
    return Error::internal("malformed_certificate", "trailing bytes after the certificate: " +
                                                        std::to_string(begin + der.size() - p));
  }
  return cert;
}

Result<std::vector<X509Ptr>> certsFromPem(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return Error::internal("malformed_certificate", "PEM input too large");
  }
  BioPtr bio = memBio(pem);
  if (!bio) return sslError("internal", "BIO_new_mem_buf");
  ERR_clear_error();
  std::vector<X509Ptr> certs;
  while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, noPassword, nullptr)}) {
    certs.push_back(std::move(cert));
  }
  // The loop ends at the first failure; only "no further BEGIN line" means the end of the input.
  const unsigned long err = ERR_peek_last_error();
  if (ERR_GET_LIB(err) != ERR_LIB_PEM || ERR_GET_REASON(err) != PEM_R_NO_START_LINE) {
    return sslError("malformed_certificate",
                    "certificate " + std::to_string(certs.size() + 1) + " of the PEM input");
  }
  ERR_clear_error();
  if (certs.empty()) {
    return Error::internal("malformed_certificate", "no BEGIN CERTIFICATE block in the input");
  }
  return certs;
}

Result<X509Ptr> createRootCa(EVP_PKEY* key, const CertOptions& opts, SystemTime now) {
  if (key == nullptr) return invalidArgument("no key");
  if (opts.common_name.empty()) return invalidArgument("a CA needs a common name");
  auto validity = window(opts.lifetime, opts.backdate, nullptr, now);
  if (!validity) return validity.error();
  CertSpec spec;
  spec.subject_key = key;
  spec.signing_key = key;
  spec.common_name = opts.common_name;
  spec.validity = *validity;
  spec.extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                     {NID_key_usage, "critical,keyCertSign,cRLSign"}};
  return buildCert(spec);
}

Result<X509Ptr> createIntermediateCa(EVP_PKEY* key, const CertOptions& opts, X509* parent,
                                     EVP_PKEY* parent_key, SystemTime now) {
  if (key == nullptr) return invalidArgument("no key");
  if (opts.common_name.empty()) return invalidArgument("a CA needs a common name");
  if (auto ok = checkParent(parent, parent_key, now, /*signs_ca=*/true); !ok) return ok.error();
  auto validity = window(opts.lifetime, opts.backdate, parent, now);
  if (!validity) return validity.error();
  CertSpec spec;
  spec.subject_key = key;
  spec.signing_key = parent_key;
  spec.issuer = parent;
  spec.common_name = opts.common_name;
  spec.validity = *validity;
  spec.extensions = {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                     {NID_key_usage, "critical,keyCertSign,cRLSign"}};
  return buildCert(spec);
}

Result<X509Ptr> createServerCert(EVP_PKEY* key, const CertOptions& opts,
                                 const std::vector<std::string>& dns_names, X509* parent,
                                 EVP_PKEY* parent_key, SystemTime now) {
  if (key == nullptr) return invalidArgument("no key");
  if (auto ok = checkDnsNames(dns_names); !ok) return ok.error();
  if (auto ok = checkParent(parent, parent_key, now, /*signs_ca=*/false); !ok) return ok.error();
  auto validity = window(opts.lifetime, opts.backdate, parent, now);
  if (!validity) return validity.error();
  CertSpec spec;
  spec.subject_key = key;
  spec.signing_key = parent_key;
  spec.issuer = parent;
  spec.common_name = opts.common_name.empty() ? commonNameFor(dns_names.front()) : opts.common_name;
  spec.dns_names = dns_names;
  spec.validity = *validity;
  // keyEncipherment only matters to RSA key exchange, which a P-256 key cannot do.
  spec.extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                     {NID_key_usage, "critical,digitalSignature"},
                     {NID_ext_key_usage, "serverAuth"}};
  return buildCert(spec);
}

// --- CSRs ---------------------------------------------------------------------------------------

Result<std::string> createCsr(EVP_PKEY* key, std::string_view identity) {
  if (key == nullptr) return invalidArgument("no key");
  const std::string name(identity);
  if (!isValidIdentityName(name)) {
    return invalidArgument("\"" + printable(name) + "\" is not a valid identity name");
  }
  X509ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1) {
    return sslError("internal", "X509_REQ_new");
  }
  if (!setCommonName(X509_REQ_get_subject_name(req.get()), commonNameFor(name))) {
    return sslError("internal", "CSR subject");
  }
  GeneralNamesPtr names = dnsGeneralNames({name});
  ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  if (!names || !exts) return sslError("internal", "CSR extensions");
  X509_EXTENSION* san =
      X509V3_EXT_i2d(NID_subject_alt_name, name.size() > kMaxCommonName ? 1 : 0, names.get());
  if (san == nullptr || sk_X509_EXTENSION_push(exts.get(), san) <= 0) {
    X509_EXTENSION_free(san);
    return sslError("internal", "CSR subjectAltName");
  }
  if (X509_REQ_add_extensions(req.get(), exts.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key) != 1 ||
      X509_REQ_sign(req.get(), key, digestFor(key)) <= 0) {
    return sslError("signing_failed", "cannot build the CSR");
  }
  const int n = i2d_X509_REQ(req.get(), nullptr);
  if (n <= 0) return sslError("internal", "i2d_X509_REQ");
  std::string der(static_cast<std::size_t>(n), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_X509_REQ(req.get(), &p) != n) return sslError("internal", "i2d_X509_REQ");
  return der;
}

Result<ValidatedCsr> validateCsr(std::string_view der, std::string_view expected_identity) {
  ERR_clear_error();
  const std::string expected = ascii::toLower(expected_identity);
  if (!isValidIdentityName(expected)) {
    return Error::internal("wrong_san", "the expected identity \"" + printable(expected) +
                                            "\" is not a valid DNS name");
  }
  if (der.empty()) return reject("malformed_csr", "empty CSR");
  if (der.size() > kMaxCsrBytes) {
    return reject("malformed_csr", "CSR of " + std::to_string(der.size()) +
                                       " bytes exceeds the limit of " +
                                       std::to_string(kMaxCsrBytes));
  }
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = begin;
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (!req) return reject("malformed_csr", "not a DER PKCS#10 request: " + opensslError());
  if (p != begin + der.size()) {
    return reject("malformed_csr",
                  "trailing bytes after the request: " + std::to_string(begin + der.size() - p));
  }
  if (X509_REQ_get_version(req.get()) != X509_REQ_VERSION_1) {
    return reject("malformed_csr", "unknown PKCS#10 version");
  }

  // The key: checked before the signature, so a hostile key type costs no verification.
  ASN1_OBJECT* key_oid = nullptr;
  X509_PUBKEY* spki = X509_REQ_get_X509_PUBKEY(req.get());
  if (spki == nullptr || X509_PUBKEY_get0_param(&key_oid, nullptr, nullptr, nullptr, spki) != 1) {
    return reject("malformed_csr", "no subjectPublicKeyInfo");
  }
  PKeyPtr key(X509_REQ_get_pubkey(req.get()));
  if (OBJ_obj2nid(key_oid) != NID_X9_62_id_ecPublicKey) {
    const int nid = OBJ_obj2nid(key_oid);
    std::string what =
        key ? keyAlgorithm(key.get()) : (nid == NID_undef ? "of an unknown type" : OBJ_nid2sn(nid));
    return reject("wrong_key_type", "the key is " + what + "; want ECDSA P-256");
  }
  if (!key) return reject("malformed_csr", "unreadable EC public key: " + opensslError());
  if (!isP256(key.get())) {
    return reject("wrong_key_type", "the key is " + keyAlgorithm(key.get()) + "; want ECDSA P-256");
  }

  const int sig_nid = X509_REQ_get_signature_nid(req.get());
  if (sig_nid != NID_ecdsa_with_SHA256 && sig_nid != NID_ecdsa_with_SHA384 &&
      sig_nid != NID_ecdsa_with_SHA512) {
    return reject("bad_signature", std::string("signature algorithm ") +
                                       (sig_nid == NID_undef ? "unknown" : OBJ_nid2sn(sig_nid)) +
                                       " is not accepted; want ecdsa-with-SHA256");
  }
  if (X509_REQ_verify(req.get(), key.get()) != 1) {
    return reject("bad_signature", "the CSR's self-signature does not verify: " + opensslError());
  }

  // X509_REQ_get_extensions reads only the first value of the first extensionRequest attribute;
  // anything hidden in a second one must not slip past these checks.
  int ext_attributes = 0;
  for (int i = 0; i < X509_REQ_get_attr_count(req.get()); ++i) {
    X509_ATTRIBUTE* attr = X509_REQ_get_attr(req.get(), i);
    const int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr));
    if (nid != NID_ext_req && nid != NID_ms_ext_req) continue;
    if (++ext_attributes > 1 || X509_ATTRIBUTE_count(attr) != 1) {
      return reject("malformed_csr", "more than one extension request");
    }
  }
  ExtensionStackPtr exts(X509_REQ_get_extensions(req.get()));
  if (!exts) return reject("malformed_csr", "unreadable extension request: " + opensslError());

  GeneralNamesPtr san;
  for (int i = 0; i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), i);
    const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    switch (nid) {
      case NID_subject_alt_name:
        if (san) return reject("wrong_san", "more than one subjectAltName extension");
        san.reset(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
        if (!san) return reject("malformed_csr", "unreadable subjectAltName");
        break;
      case NID_basic_constraints: {
        BasicConstraintsPtr bc(static_cast<BASIC_CONSTRAINTS*>(X509V3_EXT_d2i(ext)));
        if (!bc) return reject("malformed_csr", "unreadable basicConstraints");
        if (bc->ca != 0) return reject("forbidden_extension", "the CSR asks for CA:TRUE");
        break;
      }
      case NID_key_usage: {
        BitStringPtr ku(static_cast<ASN1_BIT_STRING*>(X509V3_EXT_d2i(ext)));
        if (!ku) return reject("malformed_csr", "unreadable keyUsage");
        // Bits 5 and 6 of KeyUsage (RFC 5280 4.2.1.3).
        if (ASN1_BIT_STRING_get_bit(ku.get(), 5) != 0 ||
            ASN1_BIT_STRING_get_bit(ku.get(), 6) != 0) {
          return reject("forbidden_extension", "the CSR asks for keyCertSign or cRLSign");
        }
        break;
      }
      case NID_name_constraints:
      case NID_policy_constraints:
      case NID_inhibit_any_policy:
        return reject("forbidden_extension",
                      std::string("the CSR asks for ") + OBJ_nid2sn(nid) + ", a CA extension");
      default:
        // Anything else is ignored: issueLeaf copies nothing from the request but its key and
        // the validated name.
        break;
    }
  }

  if (!san) {
    return reject("wrong_san", "no subjectAltName; want exactly the DNS name " + expected);
  }
  const int count = sk_GENERAL_NAME_num(san.get());
  if (count != 1) {
    return reject(
        "wrong_san",
        std::to_string(count) + " subjectAltName entries; want exactly the DNS name " + expected);
  }
  const GENERAL_NAME* gn = sk_GENERAL_NAME_value(san.get(), 0);
  if (gn->type != GEN_DNS) {
    return reject("wrong_san", std::string("the subjectAltName is ") + generalNameType(gn->type) +
                                   "; want the DNS name " + expected);
  }
  const std::string_view dns = asn1View(gn->d.dNSName);
  if (!ascii::iequals(dns, expected)) {
    return reject("wrong_san",
                  "the CSR names \"" + printable(dns) + "\"; this workload is " + expected);
  }
  ERR_clear_error();
  return ValidatedCsr{expected, std::move(key)};
}

Result<X509Ptr> issueLeaf(const ValidatedCsr& csr, X509* issuer, EVP_PKEY* issuer_key,
                          std::chrono::seconds lifetime, std::chrono::seconds backdate,
                          SystemTime now) {
  if (!csr.public_key || !isP256(csr.public_key.get())) {
    return Error::internal("wrong_key_type", "the CSR key is not ECDSA P-256");
  }
  if (!isValidIdentityName(csr.identity)) {
    return invalidArgument("\"" + printable(csr.identity) + "\" is not a valid identity name");
  }
  if (auto ok = checkParent(issuer, issuer_key, now, /*signs_ca=*/false); !ok) return ok.error();
  auto validity = window(lifetime, backdate, issuer, now);
  if (!validity) return validity.error();
  CertSpec spec;
  spec.subject_key = csr.public_key.get();
  spec.signing_key = issuer_key;
  spec.issuer = issuer;
  spec.common_name = commonNameFor(csr.identity);
  spec.dns_names = {csr.identity};
  spec.validity = *validity;
  spec.extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                     {NID_key_usage, "critical,digitalSignature"},
                     {NID_ext_key_usage, "serverAuth,clientAuth"}};
  return buildCert(spec);
}

// --- inspection and verification ----------------------------------------------------------------

CertSummary describe(X509* cert) {
  CertSummary s;
  if (cert == nullptr) return s;
  auto name = [](const X509_NAME* n) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || X509_NAME_print_ex(bio.get(), n, 0, XN_FLAG_RFC2253) < 0) return std::string();
    // ESC_MSB in XN_FLAG_RFC2253 already makes this ASCII; printable() removes control bytes.
    return printable(bioString(bio.get()), 1024);
  };
  s.subject = name(X509_get_subject_name(cert));
  s.issuer = name(X509_get_issuer_name(cert));
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      if (gn->type == GEN_DNS) s.dns_names.push_back(printable(asn1View(gn->d.dNSName)));
    }
  }
  std::time_t t = 0;
  if (asn1TimeToTimeT(X509_get0_notBefore(cert), &t)) s.not_before = fromTimeT(t);
  if (asn1TimeToTimeT(X509_get0_notAfter(cert), &t)) s.not_after = fromTimeT(t);
  s.key_algorithm = keyAlgorithm(X509_get0_pubkey(cert));
  const int sig_nid = X509_get_signature_nid(cert);
  s.signature_algorithm = sig_nid == NID_undef ? "unknown" : OBJ_nid2ln(sig_nid);
  s.is_ca = (X509_get_extension_flags(cert) & EXFLAG_CA) != 0;
  if (BnPtr bn{ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)}) {
    if (char* hex = BN_bn2hex(bn.get())) {
      s.serial_hex = hex;
      OPENSSL_free(hex);
    }
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md.data(), &md_len) == 1) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (unsigned int i = 0; i < md_len; ++i) {
      if (i != 0) s.sha256_fingerprint += ':';
      s.sha256_fingerprint += kHex[md[i] >> 4];
      s.sha256_fingerprint += kHex[md[i] & 0xf];
    }
  }
  ERR_clear_error();
  return s;
}

Status verifyChain(X509* leaf, const std::vector<X509*>& intermediates,
                   const std::vector<X509*>& roots, SystemTime now) {
  if (leaf == nullptr) return Error::internal("bad_chain", "no certificate to verify");
  if (roots.empty()) return Error::internal("unknown_ca", "the trust bundle holds no roots");
  StorePtr store(X509_STORE_new());
  BorrowedX509StackPtr untrusted(sk_X509_new_null());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return sslError("bad_chain", "out of memory");
  for (X509* root : roots) {
    // A root listed twice is not an error (OpenSSL ignores duplicates).
    if (root != nullptr && X509_STORE_add_cert(store.get(), root) != 1) {
      return sslError("bad_chain", "cannot add a root to the store");
    }
  }
  for (X509* cert : intermediates) {
    if (cert != nullptr && sk_X509_push(untrusted.get(), cert) <= 0) {
      return sslError("bad_chain", "out of memory");
    }
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return sslError("bad_chain", "X509_STORE_CTX_init");
  }
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_ANY);
  // Sets X509_V_FLAG_USE_CHECK_TIME.
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), toTimeT(now));
  if (X509_verify_cert(ctx.get()) == 1) {
    ERR_clear_error();
    return okStatus();
  }
  const int err = X509_STORE_CTX_get_error(ctx.get());
  const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  X509* at = X509_STORE_CTX_get_current_cert(ctx.get());
  ERR_clear_error();
  std::string context = X509_verify_cert_error_string(err);
  context += " (depth " + std::to_string(depth);
  if (at != nullptr) context += ", " + describe(at).subject;
  context += ")";
  std::string kind;
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      kind = "expired";
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      kind = "not_yet_valid";
      break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
      kind = "unknown_ca";
      break;
    default:
      kind = "bad_chain";
      break;
  }
  return Error::internal(std::move(kind), std::move(context));
}

bool hasDnsSan(X509* cert, std::string_view identity) {
  if (cert == nullptr) return false;
  // With crit == nullptr, a certificate carrying two SAN extensions yields nullptr: no match.
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  ERR_clear_error();
  if (!names) return false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type == GEN_DNS && ascii::iequals(asn1View(gn->d.dNSName), identity)) return true;
  }
  return false;
}

std::string opensslError() {
  const unsigned long err = ERR_peek_last_error();
  ERR_clear_error();
  if (err == 0) return "no OpenSSL error recorded";
  std::array<char, 256> buf{};
  ERR_error_string_n(err, buf.data(), buf.size());
  return buf.data();
}

}  // namespace weft::identity
