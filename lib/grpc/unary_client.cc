#include "weft/grpc/unary_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "weft/config/values.h"
#include "weft/identity/certs.h"

namespace weft::grpc {
namespace {

using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct SessionFree {
  void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
};

int remainingMs(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : static_cast<int>(ms);
}

// Waits for `events` on fd until the deadline; false on timeout.
bool waitFd(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    int r = ::poll(&p, 1, remainingMs(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

struct Call {
  SSL* ssl = nullptr;
  Clock::time_point deadline;
  std::string request;  // gRPC-framed
  std::size_t request_sent = 0;
  int32_t stream_id = -1;
  bool closed = false;
  int http_status = 0;
  std::string grpc_status;
  std::string grpc_message;
  std::string body;
  std::string failure;  // set by callbacks on I/O failure
};

// Blocking write of everything through TLS, bounded by the call's deadline.
bool tlsWriteAll(Call& call, const uint8_t* data, std::size_t len) {
  std::size_t done = 0;
  while (done < len) {
    std::size_t n = 0;
    if (SSL_write_ex(call.ssl, data + done, len - done, &n) == 1) {
      done += n;
      continue;
    }
    int err = SSL_get_error(call.ssl, 0);
    short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0 || !waitFd(SSL_get_fd(call.ssl), ev, call.deadline)) return false;
  }
  return true;
}

ssize_t onSend(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
  auto& call = *static_cast<Call*>(user);
  if (!tlsWriteAll(call, data, len)) {
    call.failure = "write failed or timed out";
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return static_cast<ssize_t>(len);
}

ssize_t readRequest(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                    nghttp2_data_source*, void* user) {
  auto& call = *static_cast<Call*>(user);
  std::size_t n = std::min(len, call.request.size() - call.request_sent);
  std::memcpy(buf, call.request.data() + call.request_sent, n);
  call.request_sent += n;
  if (call.request_sent == call.request.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto& call = *static_cast<Call*>(user);
  if (frame->hd.stream_id != call.stream_id) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":status") call.http_status = std::atoi(std::string(v).c_str());
  if (n == "grpc-status") call.grpc_status = v;
  if (n == "grpc-message") call.grpc_message = v;
  return 0;
}

int onData(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* user) {
  auto& call = *static_cast<Call*>(user);
  if (stream_id != call.stream_id) return 0;
  if (call.body.size() + len > 4 * 1024 * 1024) return NGHTTP2_ERR_CALLBACK_FAILURE;
  call.body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int onClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  auto& call = *static_cast<Call*>(user);
  if (stream_id == call.stream_id) call.closed = true;
  return 0;
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

Result<int> connectTcp(const std::string& address, Clock::time_point deadline) {
  auto hp = config::parseHostPort(address);
  if (!hp) return Error::upstream("connect", hp.error().context);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (hp->ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(hp->port);
    inet_pton(AF_INET6, hp->host.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(hp->port);
    inet_pton(AF_INET, hp->host.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::upstream("connect", std::strerror(errno), errno);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    int e = errno;
    ::close(fd);
    return Error::upstream("connect", address + ": " + std::strerror(e), e);
  }
  if (!waitFd(fd, POLLOUT, deadline)) {
    ::close(fd);
    return Error::upstream("timeout", "connecting to " + address);
  }
  int err = 0;
  socklen_t elen = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
  if (err != 0) {
    ::close(fd);
    return Error::upstream("connect", address + ": " + std::strerror(err), err);
  }
  return fd;
}

}  // namespace

Result<UnaryResponse> unaryCall(const UnaryTarget& target, std::string_view method_path,
                                std::string_view request_message) {
  const auto deadline = Clock::now() + target.timeout;
  auto fd_result = connectTcp(target.address, deadline);
  if (!fd_result) return fd_result.error();
  Fd fd{*fd_result};

  std::unique_ptr<SSL_CTX, CtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  auto roots = identity::certsFromPem(target.trust_anchors_pem);
  if (!roots) return Error::internal("tls", "trust anchors: " + roots.error().message());
  for (auto& r : *roots) X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), r.get());
  static const unsigned char kAlpnH2[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpnH2, sizeof(kAlpnH2));
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd.fd);
  SSL_set_tlsext_host_name(ssl.get(), target.server_name.c_str());
  SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  SSL_set1_host(ssl.get(), target.server_name.c_str());
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(ssl.get());
    if (r == 1) break;
    int err = SSL_get_error(ssl.get(), r);
    short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0) {
      long v = SSL_get_verify_result(ssl.get());
      std::string why = v != X509_V_OK ? X509_verify_cert_error_string(v) : identity::opensslError();
      return Error::upstream("tls", target.server_name + ": " + why);
    }
    if (!waitFd(fd.fd, ev, deadline)) return Error::upstream("timeout", "TLS handshake");
  }

  Call call;
  call.ssl = ssl.get();
  call.deadline = deadline;
  // gRPC message framing: uncompressed flag, 4-byte big-endian length, message.
  call.request.resize(5);
  const auto n = static_cast<uint32_t>(request_message.size());
  call.request[1] = static_cast<char>(n >> 24);
  call.request[2] = static_cast<char>(n >> 16);
  call.request[3] = static_cast<char>(n >> 8);
  call.request[4] = static_cast<char>(n);
  call.request.append(request_message);

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, onSend);
  nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, onData);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, onClose);
  nghttp2_session* raw = nullptr;
  nghttp2_session_client_new(&raw, cbs, &call);
  nghttp2_session_callbacks_del(cbs);
  std::unique_ptr<nghttp2_session, SessionFree> session(raw);

  nghttp2_submit_settings(session.get(), NGHTTP2_FLAG_NONE, nullptr, 0);
  const std::string path(method_path);
  nghttp2_nv nva[] = {header(":method", "POST"),          header(":scheme", "https"),
                      header(":path", path),              header(":authority", target.server_name),
                      header("content-type", "application/grpc"), header("te", "trailers"),
                      header("user-agent", "weft-proxy")};
  nghttp2_data_provider provider{};
  provider.read_callback = readRequest;
  call.stream_id = nghttp2_submit_request(session.get(), nullptr, nva, std::size(nva), &provider, nullptr);
  if (call.stream_id < 0) return Error::internal("protocol", nghttp2_strerror(call.stream_id));

  uint8_t buf[16384];
  while (!call.closed) {
    if (nghttp2_session_send(session.get()) != 0) {
      return Error::upstream(call.failure.empty() ? "protocol" : "timeout",
                             call.failure.empty() ? "HTTP/2 send failed" : call.failure);
    }
    if (call.closed) break;
    if (!nghttp2_session_want_read(session.get())) {
      return Error::upstream("protocol", "the server closed the HTTP/2 session");
    }
    std::size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl.get(), buf, sizeof(buf), &got) != 1) {
      int err = SSL_get_error(ssl.get(), 0);
      short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
      if (ev == 0) return Error::upstream("protocol", "connection closed before the response ended");
      if (!waitFd(fd.fd, ev, deadline)) return Error::upstream("timeout", "waiting for the response");
      continue;
    }
    if (nghttp2_session_mem_recv(session.get(), buf, got) < 0) {
      return Error::upstream("protocol", "malformed HTTP/2 from the server");
    }
  }

  if (call.http_status != 200) {
    return Error::upstream("http_status", "HTTP status " + std::to_string(call.http_status));
  }
  UnaryResponse rsp;
  if (call.grpc_status.empty()) return Error::upstream("protocol", "no grpc-status");
  rsp.grpc_status = std::atoi(call.grpc_status.c_str());
  rsp.grpc_message = call.grpc_message;
  if (rsp.grpc_status == 0) {
    if (call.body.size() < 5 || call.body[0] != 0) {
      return Error::upstream("protocol", "missing or compressed gRPC message");
    }
    const uint32_t len = (static_cast<uint32_t>(static_cast<uint8_t>(call.body[1])) << 24) |
                         (static_cast<uint32_t>(static_cast<uint8_t>(call.body[2])) << 16) |
                         (static_cast<uint32_t>(static_cast<uint8_t>(call.body[3])) << 8) |
                         static_cast<uint32_t>(static_cast<uint8_t>(call.body[4]));
    if (call.body.size() - 5 < len) return Error::upstream("protocol", "truncated gRPC message");
    rsp.message = call.body.substr(5, len);
  }
  return rsp;
}

}  // namespace weft::grpc
