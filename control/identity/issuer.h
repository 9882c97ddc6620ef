// The identity service's issuer: the intermediate CA (cert + key) that signs every leaf, and the
// trust anchors it must chain to (SPEC §3). Loaded from files, validated, and reloaded when the
// files change (cert-manager, `weft certs`, or an operator rotating it).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "weft/common/result.h"
#include "weft/common/thread.h"
#include "weft/identity/certs.h"

namespace weft::control::identity {

struct IssuerFiles {
  std::string cert;     // PEM: the issuer certificate
  std::string key;      // PEM: its private key (PKCS#8 or SEC1)
  std::string anchors;  // PEM bundle of trust anchors (roots); may hold several, for rotation
};

// A loaded, validated issuer. Immutable: shared by every Certify in flight; a reload makes a new
// one and swaps the pointer.
struct Issuer {
  weft::identity::X509Ptr cert;
  weft::identity::PKeyPtr key;
  std::vector<weft::identity::X509Ptr> anchors;
  std::string cert_der;     // sent to proxies as the one intermediate
  std::string cert_pem;     // served in the identity service's own TLS chain
  std::string anchors_pem;  // the anchors file as read
  weft::identity::SystemTime not_before;
  weft::identity::SystemTime not_after;
  std::string fingerprint;  // SHA-256, for logs
  std::string subject;
};
using IssuerSharedPtr = std::shared_ptr<const Issuer>;

// "2025-01-31T12:00:00Z", for messages.
std::string formatTime(weft::identity::SystemTime t);

// The bytes of the three files.
struct IssuerPem {
  std::string cert;
  std::string key;
  std::string anchors;
  bool operator==(const IssuerPem&) const = default;
};
// Fails with kind "unreadable", naming the file.
Result<IssuerPem> readIssuerFiles(const IssuerFiles& files);

// Validates the issuer at `now`. The checks, in order, each failing with the Error kind in
// brackets and a context naming the check and the file (from `files`):
//   the three parse as PEM [malformed];
//   the key is ECDSA P-256 [wrong_key_type] and belongs to the certificate [key_mismatch];
//   the certificate is a CA allowed to sign certificates [not_a_ca];
//   now is inside its validity [expired | not_yet_valid];
//   it is signed by one of the anchors [unknown_ca];
//   a leaf it issues now verifies against the anchors [chain].
Result<IssuerSharedPtr> parseIssuer(const IssuerPem& pem, const IssuerFiles& files,
                                    weft::identity::SystemTime now);
// readIssuerFiles + parseIssuer.
Result<IssuerSharedPtr> loadIssuer(const IssuerFiles& files, weft::identity::SystemTime now);

// Holds the current issuer and reloads it when its files change. Thread-safe: current() from any
// thread (gRPC handlers); poll() from one thread at a time (the controller's loop, once a second).
class IssuerWatcher {
 public:
  // Loads and validates the issuer now; fails as loadIssuer does (the caller refuses to start).
  static Result<std::unique_ptr<IssuerWatcher>> open(IssuerFiles files,
                                                     weft::identity::SystemTime now);

  [[nodiscard]] IssuerSharedPtr current() const;
  [[nodiscard]] const IssuerFiles& files() const { return files_; }

  enum class PollResult {
    kUnchanged,  // the files hold what was last loaded (or last refused)
    kSettling,   // the files changed since the last poll; waiting for them to hold still
    kReloaded,   // new content loaded, validated and swapped in
    kRejected,   // new content failed validation; the old issuer stays (see lastError())
  };
  // Reads the three files and compares their bytes with what was last seen. Changed content is
  // loaded only once it is the same on two consecutive polls, so a rotation that writes the cert
  // and then the key is not judged half-done (a Kubernetes Secret volume swaps all files at
  // once; an operator's `cp` does not). Each distinct refused content is reported once.
  PollResult poll(weft::identity::SystemTime now);

  // Why the last reload was refused, if one was.
  [[nodiscard]] std::optional<Error> lastError() const;

 private:
  // What the files held at one poll: their bytes, or why they could not be read.
  struct Snapshot {
    std::optional<IssuerPem> pem;
    std::string error;
    bool operator==(const Snapshot&) const = default;
  };
  IssuerWatcher(IssuerFiles files, IssuerSharedPtr initial, Snapshot seen);
  Snapshot snapshot() const;

  const IssuerFiles files_;
  mutable Mutex mu_;
  IssuerSharedPtr current_ WEFT_GUARDED_BY(mu_);
  std::optional<Error> last_error_ WEFT_GUARDED_BY(mu_);
  // Touched by poll() only.
  Snapshot seen_;                    // the content current_ (or the last refusal) came from
  std::optional<Snapshot> pending_;  // changed content waiting to hold still
};

}  // namespace weft::control::identity
