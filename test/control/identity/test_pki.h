// Test helpers for the identity service: real certificates (made with weft_identity) written to a
// private temporary directory.
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "control/identity/issuer.h"
#include "weft/identity/certs.h"

namespace weft::control::identity::testing {

namespace wid = weft::identity;
using std::chrono::hours;
using std::chrono::seconds;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "weft-identity-XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes through a temporary file and a rename, as a Secret volume or `weft certs` would, so a
// reader sees the old or the new content, never half of it.
inline void writeFileAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".writing";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    ASSERT_TRUE(out.good()) << tmp;
  }
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0) << path;
}

inline wid::PKeyPtr p256() {
  auto key = wid::generateP256Key();
  EXPECT_TRUE(key.ok());
  return key.ok() ? std::move(key).value() : nullptr;
}

inline wid::PKeyPtr rsaKey() {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* key = nullptr;
  EXPECT_EQ(EVP_PKEY_keygen_init(ctx), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
  EXPECT_EQ(EVP_PKEY_generate(ctx, &key), 1);
  EVP_PKEY_CTX_free(ctx);
  return wid::PKeyPtr(key);
}

struct Root {
  wid::PKeyPtr key;
  wid::X509Ptr cert;
};

struct IssuerPair {
  wid::PKeyPtr key;
  wid::X509Ptr cert;
};

inline Root makeRoot(const std::string& cn, wid::SystemTime now) {
  Root r;
  r.key = p256();
  auto cert = wid::createRootCa(r.key.get(), {cn, hours(24 * 3650), {}}, now);
  EXPECT_TRUE(cert.ok()) << cert.error().message();
  if (cert.ok()) r.cert = std::move(cert).value();
  return r;
}

// An issuer valid from now - backdate to now - backdate + lifetime.
inline IssuerPair makeIssuer(const Root& root, const std::string& cn, wid::SystemTime now,
                             seconds lifetime = hours(24 * 365), seconds backdate = seconds(0)) {
  IssuerPair p;
  p.key = p256();
  auto cert = wid::createIntermediateCa(p.key.get(), {cn, lifetime, backdate}, root.cert.get(),
                                        root.key.get(), now);
  EXPECT_TRUE(cert.ok()) << cert.error().message();
  if (cert.ok()) p.cert = std::move(cert).value();
  return p;
}

// The three files the identity service reads.
struct PkiFiles {
  explicit PkiFiles(const TempDir& dir)
      : files{dir.file("issuer.crt"), dir.file("issuer.key"), dir.file("anchors.pem")} {}

  void writeIssuer(const IssuerPair& issuer) const {
    writeFileAtomically(files.cert, wid::certToPem(issuer.cert.get()));
    writeFileAtomically(files.key, wid::privateKeyToPem(issuer.key.get()));
  }
  void writeAnchors(std::initializer_list<const Root*> roots) const {
    std::string pem;
    for (const Root* r : roots) pem += wid::certToPem(r->cert.get());
    writeFileAtomically(files.anchors, pem);
  }

  IssuerFiles files;
};

// Polls `cond` until it holds or `limit` passes (STYLE §6: bounded waits, never a bare sleep).
inline bool waitFor(const std::function<bool()>& cond,
                    std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace weft::control::identity::testing
