// Mesh TLS contexts: one immutable snapshot per certificate, swapped in on every refresh.
//
// The identity thread builds a TlsSnapshot for each new leaf and publishes it to every worker
// (runtime: post to the worker, which stores it in a thread-local slot), so the data path reads
// the current snapshot with no lock. A connection holds the snapshot it started with for its
// whole life, so a rotation never disturbs a connection in flight.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "weft/common/result.h"
#include "weft/identity/certs.h"

namespace weft::tls {

// ALPN spoken between Weft proxies for a connection that starts with the transport header
// (transport_header.h). HTTP/2 ("h2") joins it when HTTP routing arrives.
inline constexpr std::string_view kAlpnTransport = "weft.transport/1";

struct Credentials {
  std::string identity;                            // our DNS identity
  identity::PKeyPtr key;                           // never leaves memory
  identity::X509Ptr leaf;
  std::vector<identity::X509Ptr> intermediates;    // leaf's issuer first
  std::vector<identity::X509Ptr> roots;            // the trust bundle
};

class TlsSnapshot {
 public:
  // TLS 1.3 only, ECDSA P-256 leaf. The server side requires a client certificate that chains
  // to the bundle; the client side verifies the server chain (the expected name is set per
  // connection with SSL_set1_host).
  static Result<std::shared_ptr<const TlsSnapshot>> build(const Credentials& creds);

  [[nodiscard]] const std::string& identity() const { return identity_; }
  [[nodiscard]] identity::SystemTime notAfter() const { return not_after_; }
  [[nodiscard]] SSL_CTX* server() const { return server_.get(); }
  [[nodiscard]] SSL_CTX* client() const { return client_.get(); }

 private:
  TlsSnapshot() = default;
  std::string identity_;
  identity::SystemTime not_after_{};
  struct CtxDeleter {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  std::unique_ptr<SSL_CTX, CtxDeleter> server_;
  std::unique_ptr<SSL_CTX, CtxDeleter> client_;
};

using TlsSnapshotPtr = std::shared_ptr<const TlsSnapshot>;

// The calling worker thread's current snapshot (null until the first certificate, and again if
// the certificate expired without a replacement: an expired leaf is never presented).
const TlsSnapshotPtr& currentSnapshot();
void setCurrentSnapshot(TlsSnapshotPtr snapshot);

// The identity of a verified peer: its first DNS SAN, or "" when it presented none.
std::string peerIdentity(SSL* ssl);

// Why a handshake failed, as a stable metric label: "unknown_ca", "expired", "not_yet_valid",
// "wrong_identity", "no_client_cert", "handshake" (anything else).
std::string handshakeFailureReason(SSL* ssl);

}  // namespace weft::tls
