// TLS over a connected, non-blocking Asio TCP socket, driven by OpenSSL directly.
//
// Why not asio::ssl::stream: a proxy needs TLS half-close (send close_notify, keep reading,
// RFC 8446 §6.1) while the other direction is still reading, and asio's stream serialises
// shutdown with reads. Here OpenSSL reads and writes the socket itself through a small BIO, and
// the coroutines wait for readiness with Asio, which is also how nginx and HAProxy drive it.
// The BIO first replays bytes already read from the socket (protocol detection's prefix).
//
// Threading: one worker thread; one reader and one writer coroutine may use it at once.
#pragma once

#include <openssl/ssl.h>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <utility>

#include "weft/common/result.h"

namespace weft::tls {

struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

class TlsSocket {
 public:
  enum class Role { kClient, kServer };

  // `socket` must outlive this object. `prefix` (may be null) is replayed before the socket.
  TlsSocket(asio::ip::tcp::socket& socket, SSL_CTX* ctx, Role role,
            std::unique_ptr<uint8_t[]> prefix = nullptr, std::size_t prefix_len = 0);
  ~TlsSocket();
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  SSL* ssl() { return ssl_.get(); }
  asio::ip::tcp::socket& socket() { return socket_; }

  // Client only, before handshake(): the server name to send (SNI) and the identity the
  // server's certificate must carry (checked as a DNS SAN during verification).
  Status expectServerIdentity(const std::string& identity);

  // Completes the handshake. On failure the error's kind is handshakeFailureReason() (or
  // "io" with the errno when the socket failed, "cancelled" when the socket was cancelled).
  asio::awaitable<Status> handshake();

  // Reads up to `len` bytes of plaintext. {eof, 0} after the peer's close_notify or FIN.
  asio::awaitable<std::pair<asio::error_code, std::size_t>> readSome(void* buf, std::size_t len);
  // Writes all `len` bytes (partial only on error).
  asio::awaitable<std::pair<asio::error_code, std::size_t>> writeAll(const void* buf,
                                                                    std::size_t len);
  // Half-close: sends close_notify (best effort) and FIN; reading goes on.
  void shutdownWrite();

  struct BioState;  // the BIO's view of this socket (tls_socket.cc)

 private:
  // Waits until OpenSSL's last want (read or write) can progress.
  asio::awaitable<asio::error_code> waitFor(int ssl_error);

  asio::ip::tcp::socket& socket_;
  std::unique_ptr<SSL, SslDeleter> ssl_;
  std::unique_ptr<BioState> bio_state_;
};

}  // namespace weft::tls
