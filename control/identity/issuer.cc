#include "control/identity/issuer.h"

#include <fcntl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace weft::control::identity {
namespace {

namespace wid = weft::identity;

// The self-test leaf's name; it never leaves this process.
constexpr std::string_view kSelfTestName =
    "issuer-self-test.weft.serviceaccount.identity.weft.local";

Result<std::string> readFile(const std::string& what, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Error{"unreadable", ErrorSource::kInternal,
                 "cannot read the " + what + " " + path + ": " + std::strerror(err), err};
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Error{"unreadable", ErrorSource::kInternal,
                   "cannot read the " + what + " " + path + ": " + std::strerror(err), err};
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

Error invalid(std::string kind, std::string context) {
  return Error::internal(std::move(kind), std::move(context));
}

}  // namespace

std::string formatTime(weft::identity::SystemTime t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<IssuerPem> readIssuerFiles(const IssuerFiles& files) {
  IssuerPem pem;
  auto cert = readFile("issuer certificate", files.cert);
  if (!cert) return cert.error();
  auto key = readFile("issuer key", files.key);
  if (!key) return key.error();
  auto anchors = readFile("trust anchors", files.anchors);
  if (!anchors) return anchors.error();
  pem.cert = std::move(cert).value();
  pem.key = std::move(key).value();
  pem.anchors = std::move(anchors).value();
  return pem;
}

Result<IssuerSharedPtr> parseIssuer(const IssuerPem& pem, const IssuerFiles& files,
                                    weft::identity::SystemTime now) {
  auto certs = wid::certsFromPem(pem.cert);
  if (!certs) {
    return invalid("malformed", "the issuer certificate " + files.cert +
                                    " is not a PEM certificate: " + certs.error().message());
  }
  auto key = wid::privateKeyFromPem(pem.key);
  if (!key) {
    return invalid("malformed", "the issuer key " + files.key +
                                    " is not a PEM private key: " + key.error().message());
  }
  auto anchors = wid::certsFromPem(pem.anchors);
  if (!anchors) {
    return invalid("malformed",
                   "the trust anchors " + files.anchors +
                       " are not a PEM certificate bundle: " + anchors.error().message());
  }

  auto issuer = std::make_shared<Issuer>();
  // The file's first certificate is the issuer. A full-chain file may follow it with its root,
  // which is ignored here: the roots proxies trust come from the anchors file only.
  issuer->cert = std::move(certs->front());
  issuer->key = std::move(key).value();
  issuer->anchors = std::move(anchors).value();
  X509* cert = issuer->cert.get();

  if (!wid::isP256(issuer->key.get())) {
    return invalid("wrong_key_type", "the issuer key " + files.key + " is " +
                                         wid::keyAlgorithm(issuer->key.get()) +
                                         "; the issuer must be ECDSA P-256");
  }
  EVP_PKEY* cert_key = X509_get0_pubkey(cert);
  if (cert_key == nullptr || !wid::isP256(cert_key)) {
    return invalid("wrong_key_type",
                   "the issuer certificate " + files.cert + " has a " +
                       (cert_key ? wid::keyAlgorithm(cert_key) : std::string("missing")) +
                       " key; the issuer must be ECDSA P-256");
  }
  if (X509_check_private_key(cert, issuer->key.get()) != 1) {
    (void)wid::opensslError();
    return invalid("key_mismatch", "the issuer key " + files.key +
                                       " does not belong to the issuer certificate " + files.cert);
  }
  // X509_check_ca() is 1 only for basicConstraints CA:TRUE (with keyCertSign if keyUsage is
  // present); the explicit keyUsage test keeps the message precise.
  if (X509_check_ca(cert) != 1 || (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) == 0) {
    return invalid("not_a_ca", "the issuer certificate " + files.cert +
                                   " is not a CA (it needs basicConstraints CA:TRUE and keyUsage "
                                   "keyCertSign)");
  }

  const wid::CertSummary summary = wid::describe(cert);
  issuer->not_before = summary.not_before;
  issuer->not_after = summary.not_after;
  issuer->fingerprint = summary.sha256_fingerprint;
  issuer->subject = summary.subject;
  if (now >= summary.not_after) {
    return invalid("expired", "the issuer certificate " + files.cert + " expired at " +
                                  formatTime(summary.not_after));
  }
  if (now < summary.not_before) {
    return invalid("not_yet_valid", "the issuer certificate " + files.cert +
                                        " is not valid before " + formatTime(summary.not_before));
  }

  bool signed_by_anchor = false;
  for (const auto& anchor : issuer->anchors) {
    EVP_PKEY* anchor_key = X509_get0_pubkey(anchor.get());
    if (X509_check_issued(anchor.get(), cert) == X509_V_OK && anchor_key != nullptr &&
        X509_verify(cert, anchor_key) == 1) {
      signed_by_anchor = true;
      break;
    }
  }
  (void)wid::opensslError();
  if (!signed_by_anchor) {
    return invalid("unknown_ca",
                   "the issuer certificate " + files.cert + " is not signed by any of the " +
                       std::to_string(issuer->anchors.size()) + " trust anchor(s) in " +
                       files.anchors + " (it names \"" + summary.issuer + "\" as its signer)");
  }

  // The check that matters: a leaf issued now verifies against the anchors. It catches whatever
  // the checks above do not name (path length, name constraints, an expired anchor, ...).
  auto test_key = wid::generateP256Key();
  if (!test_key) return test_key.error();
  auto csr_der = wid::createCsr(test_key->get(), kSelfTestName);
  if (!csr_der) return csr_der.error();
  auto csr = wid::validateCsr(*csr_der, kSelfTestName);
  if (!csr) return csr.error();
  auto leaf = wid::issueLeaf(*csr, cert, issuer->key.get(), std::chrono::seconds(60),
                             std::chrono::seconds(0), now);
  if (!leaf) {
    return invalid("chain", "the issuer " + files.cert +
                                " cannot issue a certificate: " + leaf.error().message());
  }
  std::vector<X509*> roots;
  for (const auto& a : issuer->anchors) roots.push_back(a.get());
  if (auto st = wid::verifyChain(leaf->get(), {cert}, roots, now); !st) {
    return invalid("chain", "a certificate issued by " + files.cert +
                                " does not verify against the trust anchors in " + files.anchors +
                                ": " + st.error().message());
  }

  issuer->cert_der = wid::certToDer(cert);
  issuer->cert_pem = wid::certToPem(cert);
  issuer->anchors_pem = pem.anchors;
  return IssuerSharedPtr(std::move(issuer));
}

Result<IssuerSharedPtr> loadIssuer(const IssuerFiles& files, weft::identity::SystemTime now) {
  auto pem = readIssuerFiles(files);
  if (!pem) return pem.error();
  return parseIssuer(*pem, files, now);
}

// --- IssuerWatcher ----------------------------------------------------------------------------

IssuerWatcher::IssuerWatcher(IssuerFiles files, IssuerSharedPtr initial, Snapshot seen)
    : files_(std::move(files)), current_(std::move(initial)), seen_(std::move(seen)) {}

Result<std::unique_ptr<IssuerWatcher>> IssuerWatcher::open(IssuerFiles files,
                                                           weft::identity::SystemTime now) {
  auto pem = readIssuerFiles(files);
  if (!pem) return pem.error();
  auto issuer = parseIssuer(*pem, files, now);
  if (!issuer) return issuer.error();
  Snapshot seen{std::move(pem).value(), {}};
  return std::unique_ptr<IssuerWatcher>(
      new IssuerWatcher(std::move(files), std::move(issuer).value(), std::move(seen)));
}

IssuerSharedPtr IssuerWatcher::current() const {
  MutexLock lock(mu_);
  return current_;
}

std::optional<Error> IssuerWatcher::lastError() const {
  MutexLock lock(mu_);
  return last_error_;
}

IssuerWatcher::Snapshot IssuerWatcher::snapshot() const {
  auto pem = readIssuerFiles(files_);
  if (!pem) return Snapshot{std::nullopt, pem.error().context};
  return Snapshot{std::move(pem).value(), {}};
}

IssuerWatcher::PollResult IssuerWatcher::poll(weft::identity::SystemTime now) {
  Snapshot snap = snapshot();
  if (snap == seen_) {
    pending_.reset();
    return PollResult::kUnchanged;
  }
  if (!pending_ || !(*pending_ == snap)) {
    pending_ = std::move(snap);
    return PollResult::kSettling;
  }
  // Held still for one poll interval: judge it, once.
  seen_ = std::move(*pending_);
  pending_.reset();
  Result<IssuerSharedPtr> loaded =
      seen_.pem ? parseIssuer(*seen_.pem, files_, now)
                : Result<IssuerSharedPtr>(Error::internal("unreadable", seen_.error));
  MutexLock lock(mu_);
  if (!loaded) {
    last_error_ = loaded.error();
    return PollResult::kRejected;
  }
  current_ = std::move(loaded).value();
  last_error_.reset();
  return PollResult::kReloaded;
}

}  // namespace weft::control::identity
