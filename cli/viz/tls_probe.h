// Fetches the certificate chain a meshed proxy presents on its inbound (mTLS) port, for
// `weft check`'s "proxies hold a certificate from the current bundle".
//
// The probe is a TLS client that offers SNI = the pod's identity (the proxy terminates only TLS
// addressed to itself; anything else is passed through to the application as opaque) and ALPN
// "weft.transport/1", and presents no client certificate. The proxy asks for one and refuses the
// connection without it, which is fine: the server's Certificate message arrives before that
// refusal, and a verify callback records the chain exactly as sent while the handshake is still
// running, whatever its outcome. Verification is then done by the caller against the trust
// anchors on disk (identity::verifyChain), not by OpenSSL's default store. Each probe costs the
// proxy one refused handshake (counted as inbound_tcp_errors_total{error="tls_no_client_cert"}).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/result.h"
#include "weft/identity/certs.h"

namespace weft::cli::viz {

struct PeerChain {
  std::vector<identity::X509Ptr> certs;  // leaf first, as sent
  std::string handshake_outcome;         // "completed" or why it ended (expected: no client cert)
};

// Error kinds: "bad_address", "connect_failed", "timeout", "no_certificate" (the handshake ended
// before the server sent a certificate; the context says how).
Result<PeerChain> fetchPeerChain(std::string_view address, const std::string& sni,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace weft::cli::viz
