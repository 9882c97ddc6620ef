// Proof of identity for Certify (SPEC §3): who may obtain a certificate for which name.
//
// In Kubernetes the proof is a projected ServiceAccount token checked with a TokenReview (a later
// issue adds that Authenticator); in local mode it is a per-workload token that `weft` issued and
// whose SHA-256 it recorded in a tokens file, which LocalTokenAuthenticator checks.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "weft/common/result.h"
#include "weft/common/thread.h"

namespace weft::control::identity {

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Ok when `token` proves `identity`; otherwise an Error of kind "unauthenticated" whose context
  // says why, in words fit for the caller (it never contains the token). Called concurrently from
  // gRPC handler threads; `token` is untrusted bytes.
  virtual Status authenticate(std::string_view identity, std::string_view token) = 0;
};
using AuthenticatorPtr = std::unique_ptr<Authenticator>;

using TokenDigest = std::array<uint8_t, 32>;  // SHA-256

// The tokens file of local mode: one line per identity, `<identity> sha256:<64 lowercase hex>`,
// the hash being SHA-256 of the token's text exactly as the workload sends it (the base64url
// string, surrounding whitespace ignored). Blank lines and lines starting with '#' are ignored.
//
// The file is re-read when it changes: each call stat(2)s it (Certify is rare, about once per
// workload per 17 h) and re-reads it when inode, size or mtime differ, or when the mtime is so
// recent that a second write within the filesystem's timestamp granularity could hide behind it
// (git's "racy" rule). Malformed lines are skipped and logged once per change. When the file cannot
// be read every request fails: a removed tokens file revokes every token rather than freezing the
// old set.
class LocalTokenAuthenticator final : public Authenticator {
 public:
  // Fails (kind "tokens_file") when the file cannot be read now.
  static Result<std::unique_ptr<LocalTokenAuthenticator>> open(std::string path);

  Status authenticate(std::string_view identity, std::string_view token) override;

  // Number of identities currently loaded (after re-reading the file if it changed).
  std::size_t sizeForTest();

 private:
  explicit LocalTokenAuthenticator(std::string path) : path_(std::move(path)) {}

  struct FileKey {
    ino_t ino = 0;
    off_t size = -1;
    int64_t mtime_ns = -1;
    bool operator==(const FileKey&) const = default;
  };
  // Re-reads the file when its key changed. Returns an Error when it cannot be read.
  Status refreshLocked() WEFT_REQUIRES(mu_);

  const std::string path_;
  Mutex mu_;
  FileKey key_ WEFT_GUARDED_BY(mu_);
  bool loaded_ WEFT_GUARDED_BY(mu_) = false;
  bool racy_ WEFT_GUARDED_BY(mu_) = false;  // key_ cannot be trusted to reveal the next change
  std::string content_ WEFT_GUARDED_BY(mu_);
  std::map<std::string, TokenDigest, std::less<>> digests_ WEFT_GUARDED_BY(mu_);
};

// An untrusted name made safe for a log line or an error message: cut to 253 bytes (the longest
// DNS name), bytes other than printable ASCII, '"' and '\\' shown as '?'.
std::string printableName(std::string_view name);

// --- the token tool (`weft-controller identity add-token`, and later `weft local`) -------------

// A fresh token: 32 bytes from the OpenSSL CSPRNG, base64url without padding (43 characters).
Result<std::string> generateToken();
// SHA-256 of the token text (surrounding ASCII whitespace removed).
TokenDigest hashToken(std::string_view token);
// "sha256:<hex>", the form stored in the tokens file.
std::string formatDigest(const TokenDigest& digest);

// Sets `identity`'s line in the tokens file at `path` to `digest`, replacing an existing line for
// it or appending one, keeping every other line as it was. The file is rewritten atomically
// (temporary file in the same directory, fsync, rename) with mode 0600, and concurrent writers
// are serialised by an flock on `<path>.lock`. Creates the file when it does not exist.
Status upsertTokenDigest(const std::string& path, std::string_view identity,
                         const TokenDigest& digest);

}  // namespace weft::control::identity
