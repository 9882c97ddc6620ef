#include "cli/viz/tls_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace weft::cli::viz {
namespace {

constexpr std::string_view kAlpnTransport = "weft.transport/1";

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

// Records the chain the server sent, on the first verify callback of the handshake, and lets the
// handshake go on (returns 1): there is no trust store here by design.
int recordChain(int /*preverify_ok*/, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* chain = static_cast<PeerChain*>(SSL_get_app_data(ssl));
  if (chain == nullptr || !chain->certs.empty()) return 1;
  if (X509* leaf = X509_STORE_CTX_get0_cert(store); leaf != nullptr) {
    X509_up_ref(leaf);
    chain->certs.emplace_back(leaf);
  }
  if (STACK_OF(X509)* sent = X509_STORE_CTX_get0_untrusted(store); sent != nullptr) {
    for (int i = 0; i < sk_X509_num(sent); ++i) {
      X509* c = sk_X509_value(sent, i);
      if (!chain->certs.empty() && X509_cmp(c, chain->certs.front().get()) == 0) continue;
      X509_up_ref(c);
      chain->certs.emplace_back(c);
    }
  }
  return 1;
}

Result<sockaddr_storage> parseAddress(std::string_view address, socklen_t& len) {
  sockaddr_storage ss{};
  std::string host;
  std::string port;
  if (!address.empty() && address.front() == '[') {
    auto close = address.find("]:");
    if (close == std::string_view::npos)
      return Error::internal("bad_address", std::string(address));
    host = std::string(address.substr(1, close - 1));
    port = std::string(address.substr(close + 2));
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string_view::npos)
      return Error::internal("bad_address", std::string(address));
    host = std::string(address.substr(0, colon));
    port = std::string(address.substr(colon + 1));
  }
  int p = 0;
  try {
    p = std::stoi(port);
  } catch (...) {
    return Error::internal("bad_address", std::string(address));
  }
  if (p <= 0 || p > 65535) return Error::internal("bad_address", std::string(address));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(p));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(p));
    len = sizeof(sockaddr_in6);
  } else {
    return Error::internal("bad_address", "\"" + std::string(address) + "\" is not IP:PORT");
  }
  return ss;
}

}  // namespace

Result<PeerChain> fetchPeerChain(std::string_view address, const std::string& sni,
                                 std::chrono::milliseconds timeout) {
  socklen_t len = 0;
  auto addr = parseAddress(address, len);
  if (!addr.ok()) return addr.error();

  Fd sock;
  sock.fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (sock.fd < 0) return Error::internal("connect_failed", std::strerror(errno));
  if (::connect(sock.fd, reinterpret_cast<sockaddr*>(&*addr), len) != 0) {
    if (errno != EINPROGRESS) return Error::upstream("connect_failed", std::strerror(errno), errno);
    pollfd pfd{sock.fd, POLLOUT, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    if (n == 0) return Error::upstream("timeout", "connect timed out");
    int err = 0;
    socklen_t elen = sizeof err;
    ::getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (n < 0 || err != 0) {
      return Error::upstream("connect_failed", std::strerror(n < 0 ? errno : err), err);
    }
  }
  // The handshake itself runs blocking, bounded by socket timeouts.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(sock.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(sock.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int fl = ::fcntl(sock.fd, F_GETFL);
  ::fcntl(sock.fd, F_SETFL, fl & ~O_NONBLOCK);

  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Error::internal("connect_failed", identity::opensslError());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, recordChain);
  std::string alpn;
  alpn += static_cast<char>(kAlpnTransport.size());
  alpn += kAlpnTransport;
  SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(alpn.data()),
                          static_cast<unsigned>(alpn.size()));
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx.get()));
  if (!ssl) return Error::internal("connect_failed", identity::opensslError());
  PeerChain chain;
  SSL_set_app_data(ssl.get(), &chain);
  SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  SSL_set_fd(ssl.get(), sock.fd);
  const int rc = SSL_connect(ssl.get());
  if (rc == 1) {
    chain.handshake_outcome = "completed";
    SSL_shutdown(ssl.get());
  } else {
    const int err = SSL_get_error(ssl.get(), rc);
    std::string why = identity::opensslError();
    if (why.empty()) {
      why = err == SSL_ERROR_SYSCALL
                ? (errno == EAGAIN || errno == EWOULDBLOCK ? std::string("timed out")
                   : errno != 0                            ? std::strerror(errno)
                                                           : std::string("connection closed"))
                : "SSL error " + std::to_string(err);
    }
    chain.handshake_outcome = why;
  }
  ERR_clear_error();
  if (chain.certs.empty()) {
    // Fallback: what the session kept (the callback runs whenever a chain arrives, so this is
    // only reached when none did).
    if (STACK_OF(X509)* sent = SSL_get_peer_cert_chain(ssl.get()); sent != nullptr) {
      for (int i = 0; i < sk_X509_num(sent); ++i) {
        X509* c = sk_X509_value(sent, i);
        X509_up_ref(c);
        chain.certs.emplace_back(c);
      }
    }
  }
  if (chain.certs.empty()) {
    return Error::upstream(
        "no_certificate",
        "the TLS handshake ended before a certificate arrived: " + chain.handshake_outcome);
  }
  return chain;
}

}  // namespace weft::cli::viz
