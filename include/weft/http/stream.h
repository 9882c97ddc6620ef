// ByteStream: the connection an HTTP side reads and writes, plain TCP or (mesh) TLS, behind one
// small interface so the HTTP/1 and HTTP/2 codecs are written once. A virtual call per read or
// write is noise next to the syscall under it.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <memory>
#include <utility>

#include "weft/metrics/registry.h"
#include "weft/tls/tls_socket.h"

namespace weft::http {

using IoResult = std::pair<asio::error_code, std::size_t>;

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // {eof, 0} at the peer's FIN / close_notify.
  virtual asio::awaitable<IoResult> readSome(char* buf, std::size_t len) = 0;
  virtual asio::awaitable<IoResult> writeAll(const char* buf, std::size_t len) = 0;
  virtual void shutdownWrite() = 0;
  // Closes the socket (pending operations complete with operation_aborted). With `reset`, the
  // peer sees an RST instead of a FIN.
  virtual void close(bool reset = false) = 0;
  virtual asio::ip::tcp::socket& socket() = 0;

  // Counts the bytes read and written into these (the connection's tcp_* series), when set.
  // Not owned: the connection's metric series outlive its stream.
  void countInto(metrics::Counter* read, metrics::Counter* write) {
    read_bytes_ = read;
    write_bytes_ = write;
  }

 protected:
  void countRead(std::size_t n) {
    if (read_bytes_ != nullptr) read_bytes_->inc(n);
  }
  void countWrite(std::size_t n) {
    if (write_bytes_ != nullptr) write_bytes_->inc(n);
  }

 private:
  metrics::Counter* read_bytes_ = nullptr;
  metrics::Counter* write_bytes_ = nullptr;
};

// Owns nothing: the socket (and TLS session) belong to the connection object that outlives it.
class PlainStream final : public ByteStream {
 public:
  explicit PlainStream(asio::ip::tcp::socket& s) : s_(s) {}
  asio::awaitable<IoResult> readSome(char* buf, std::size_t len) override;
  asio::awaitable<IoResult> writeAll(const char* buf, std::size_t len) override;
  void shutdownWrite() override;
  void close(bool reset) override;
  asio::ip::tcp::socket& socket() override { return s_; }

 private:
  asio::ip::tcp::socket& s_;
};

class TlsStream final : public ByteStream {
 public:
  explicit TlsStream(tls::TlsSocket& t) : t_(t) {}
  asio::awaitable<IoResult> readSome(char* buf, std::size_t len) override;
  asio::awaitable<IoResult> writeAll(const char* buf, std::size_t len) override;
  void shutdownWrite() override;
  void close(bool reset) override;
  asio::ip::tcp::socket& socket() override { return t_.socket(); }

 private:
  tls::TlsSocket& t_;
};

}  // namespace weft::http

namespace weft::http {

// An upstream connection a pool owns whole: the socket, its TLS session when it has one, and the
// ByteStream over them. Heap-allocated so the references between the three stay valid.
struct Transport {
  explicit Transport(asio::ip::tcp::socket s) : socket(std::move(s)) {}
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  // After the TLS handshake (or for plaintext, with tls left null): builds `stream`.
  void ready() {
    if (tls) {
      stream = std::make_unique<TlsStream>(*tls);
    } else {
      stream = std::make_unique<PlainStream>(socket);
    }
  }
  asio::ip::tcp::socket socket;
  std::unique_ptr<tls::TlsSocket> tls;  // declared after the socket it uses: destroyed first
  std::unique_ptr<ByteStream> stream;
  // Whatever the owner ties to this connection's life (its metric series, an open-connection
  // gauge held up): destroyed first.
  std::shared_ptr<void> attachment;
};

}  // namespace weft::http
