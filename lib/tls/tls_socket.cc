#include "weft/tls/tls_socket.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>

#include "weft/tls/context.h"

namespace weft::tls {
namespace {

constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace

// The BIO's state: the socket's fd, the prefix still to replay, and the last errno seen.
struct TlsSocket::BioState {
  int fd = -1;
  std::unique_ptr<uint8_t[]> prefix;
  std::size_t prefix_len = 0;
  std::size_t prefix_pos = 0;
  int last_errno = 0;
};

namespace {

int bioRead(BIO* bio, char* out, size_t len, size_t* read) {
  auto* st = static_cast<TlsSocket::BioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (st->prefix_pos < st->prefix_len) {
    std::size_t n = std::min(len, st->prefix_len - st->prefix_pos);
    std::memcpy(out, st->prefix.get() + st->prefix_pos, n);
    st->prefix_pos += n;
    if (st->prefix_pos == st->prefix_len) st->prefix.reset();
    *read = n;
    return 1;
  }
  ssize_t n = ::recv(st->fd, out, len, 0);
  if (n > 0) {
    *read = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0) {
    *read = 0;
    return 0;  // EOF
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_read(bio);
  } else {
    st->last_errno = errno;
  }
  return 0;
}

int bioWrite(BIO* bio, const char* in, size_t len, size_t* written) {
  auto* st = static_cast<TlsSocket::BioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  ssize_t n = ::send(st->fd, in, len, MSG_NOSIGNAL);
  if (n >= 0) {
    *written = static_cast<size_t>(n);
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_write(bio);
  } else {
    st->last_errno = errno;
  }
  return 0;
}

long bioCtrl(BIO*, int cmd, long, void*) {
  // OpenSSL flushes after each record; a socket has nothing to flush.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

BIO_METHOD* bioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft-socket");
    BIO_meth_set_read_ex(m, bioRead);
    BIO_meth_set_write_ex(m, bioWrite);
    BIO_meth_set_ctrl(m, bioCtrl);
    return m;
  }();
  return method;
}

asio::error_code sysError(int err) { return {err, asio::system_category()}; }

}  // namespace

TlsSocket::TlsSocket(asio::ip::tcp::socket& socket, SSL_CTX* ctx, Role role,
                     std::unique_ptr<uint8_t[]> prefix, std::size_t prefix_len)
    : socket_(socket), ssl_(SSL_new(ctx)), bio_state_(std::make_unique<BioState>()) {
  asio::error_code ignored;
  socket_.non_blocking(true, ignored);
  bio_state_->fd = socket_.native_handle();
  bio_state_->prefix = std::move(prefix);
  bio_state_->prefix_len = prefix_len;
  BIO* bio = BIO_new(bioMethod());
  BIO_set_data(bio, bio_state_.get());
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_.get(), bio, bio);
  if (role == Role::kServer) {
    SSL_set_accept_state(ssl_.get());
  } else {
    SSL_set_connect_state(ssl_.get());
  }
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

TlsSocket::~TlsSocket() = default;

Status TlsSocket::expectServerIdentity(const std::string& identity) {
  SSL* ssl = ssl_.get();
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
  if (SSL_set_tlsext_host_name(ssl, identity.c_str()) != 1 || SSL_set1_host(ssl, identity.c_str()) != 1) {
    return Error::internal("tls_config", "server identity " + identity);
  }
  return okStatus();
}

asio::awaitable<asio::error_code> TlsSocket::waitFor(int ssl_error) {
  auto [ec] = co_await socket_.async_wait(ssl_error == SSL_ERROR_WANT_WRITE
                                              ? asio::ip::tcp::socket::wait_write
                                              : asio::ip::tcp::socket::wait_read,
                                          kAwait);
  co_return ec;
}

asio::awaitable<Status> TlsSocket::handshake() {
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) co_return okStatus();
    int err = SSL_get_error(ssl_.get(), r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (auto ec = co_await waitFor(err); ec) {
        co_return Error::downstream("cancelled", ec.message());
      }
      continue;
    }
    ERR_clear_error();
    if (bio_state_->last_errno != 0) {
      co_return Error{"io", ErrorSource::kDownstream, std::strerror(bio_state_->last_errno),
                      bio_state_->last_errno};
    }
    co_return Error::downstream(handshakeFailureReason(ssl_.get()));
  }
}

asio::awaitable<std::pair<asio::error_code, std::size_t>> TlsSocket::readSome(void* buf,
                                                                             std::size_t len) {
  for (;;) {
    std::size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_.get(), buf, len, &n) == 1) co_return std::pair{asio::error_code{}, n};
    int err = SSL_get_error(ssl_.get(), 0);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (auto ec = co_await waitFor(err); ec) co_return std::pair{ec, std::size_t{0}};
      continue;
    }
    ERR_clear_error();
    if (err == SSL_ERROR_ZERO_RETURN) co_return std::pair{asio::error_code(asio::error::eof), std::size_t{0}};
    if (bio_state_->last_errno != 0) co_return std::pair{sysError(bio_state_->last_errno), std::size_t{0}};
    // A FIN without close_notify: a truncation attack matters to the application's framing,
    // which sees the same EOF it would see without the mesh.
    if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL) {
      co_return std::pair{asio::error_code(asio::error::eof), std::size_t{0}};
    }
    co_return std::pair{asio::error_code(asio::error::connection_aborted), std::size_t{0}};
  }
}

asio::awaitable<std::pair<asio::error_code, std::size_t>> TlsSocket::writeAll(const void* buf,
                                                                             std::size_t len) {
  std::size_t done = 0;
  const auto* p = static_cast<const char*>(buf);
  while (done < len) {
    std::size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(ssl_.get(), p + done, len - done, &n) == 1) {
      done += n;
      continue;
    }
    int err = SSL_get_error(ssl_.get(), 0);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (auto ec = co_await waitFor(err); ec) co_return std::pair{ec, done};
      continue;
    }
    ERR_clear_error();
    int e = bio_state_->last_errno != 0 ? bio_state_->last_errno : EPIPE;
    co_return std::pair{sysError(e), done};
  }
  co_return std::pair{asio::error_code{}, done};
}

void TlsSocket::shutdownWrite() {
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // queues and sends close_notify; we do not wait for the peer's
  ERR_clear_error();
  asio::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace weft::tls
