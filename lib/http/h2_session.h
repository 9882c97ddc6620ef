// Internal to lib/http: what the HTTP/2 server side (h2_server.cc) and client side
// (h2_client.cc) share: the connection core that feeds nghttp2 from the ByteStream and drains it
// back, the per-stream outgoing body pump, and received-DATA flow-control accounting.
//
// Threading: everything of one connection runs on the executor of its socket; no locks.
//
// Lifetime: a Conn is held by shared_ptr by every coroutine that touches it (reader, writer,
// pumps, handlers), so nghttp2's user_data (the Conn) never dangles: the session is deleted with
// the Conn. Once `dead()` the session is never called again, so late coroutines (a handler that
// returns after the peer went away) only see flags.
//
// Re-entrancy rule: nghttp2 callbacks never run user code synchronously. Work that may call back
// into the proxy (Body::cancel -> on_cancel, starting handlers, which co_spawn runs inline) is
// queued with defer() and run after nghttp2_session_mem_recv/mem_send return.
#pragma once

#include <nghttp2/nghttp2.h>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <array>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "weft/http/body.h"
#include "weft/http/h2.h"
#include "weft/http/message.h"
#include "weft/http/stream.h"

namespace weft::http::h2 {

inline constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);

// A condition variable for one waiter: a timer that never expires, cancelled to wake the waiter
// (the idiom Body uses). A notify with nobody waiting is lost, so waiters re-check their
// predicate in a loop.
class Signal {
 public:
  explicit Signal(const asio::any_io_executor& ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
  void notify() { timer_.cancel(); }
  // Not a coroutine itself (one frame less per wait): co_await it and ignore the result.
  auto wait() {
    timer_.expires_at(asio::steady_timer::time_point::max());
    return timer_.async_wait(kAwait);
  }
  // True when notified, false when `d` passed first.
  // (Out of line, in h2_session.cc, for the reason lib/http/event.h gives.)
  asio::awaitable<bool> waitFor(std::chrono::steady_clock::duration d);

 private:
  asio::steady_timer timer_;
};

// Header fields in nghttp2's form, pointing at the caller's strings: nghttp2 copies names and
// values when a frame is submitted, so what they point at (and the Headers) only has to outlive
// the submit call. Only names that need lowercasing are copied.
class Headers {
 public:
  Headers() = default;
  Headers(const Headers&) = delete;
  Headers& operator=(const Headers&) = delete;
  // By reference: `name` and `value` must outlive the submit call.
  void add(std::string_view name, std::string_view value);
  // Adds the regular fields of `fields` with lowercased names, leaving out pseudo-headers and
  // connection-specific fields (RFC 9113 §8.2.2). `keep_te_trailers`: "te: trailers" is the one
  // TE a request may carry. By reference, as add().
  void addRegular(const Fields& fields, bool keep_te_trailers);
  [[nodiscard]] const nghttp2_nv* data() const { return more_.empty() ? inline_.data() : more_.data(); }
  [[nodiscard]] std::size_t size() const { return size_; }

 private:
  // Most heads fit inline (no allocation); a larger one moves to `more_`.
  std::array<nghttp2_nv, 16> inline_{};
  std::vector<nghttp2_nv> more_;
  std::size_t size_ = 0;
  std::list<std::string> lowered_;  // stable addresses; empty unless a name had capitals
};

// Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2); `name` is lowercase.
bool isConnectionSpecific(std::string_view name);
// The metric name of an HTTP/2 error code ("protocol_error", "enhance_your_calm", ...).
std::string_view errorCodeName(uint32_t code);

class Conn;

// Flow-control accounting for one received body. DATA pushed into the Body is acknowledged
// (nghttp2_session_consume -> WINDOW_UPDATE) only as the consumer takes it. Shared by the stream
// and the Body's on_consumed, so that when the consumer cancels or simply drops the Body, the
// bytes it never took are still returned to the connection window.
struct InFlow final : BodyProducer {
  std::weak_ptr<Conn> conn;
  int32_t id = 0;
  uint64_t pushed = 0;
  uint64_t acked = 0;
  // The consumer cancelled: DATA from now on is acknowledged on arrival and dropped.
  bool discard = false;
  bool stream_closed = false;
  // A client's response body: the consumer's cancel also resets the stream. (A server keeps the
  // stream up when the handler stops reading: its response may still be on its way.)
  bool reset_on_cancel = false;

  void ack(std::size_t n);
  void ackRest() { ack(static_cast<std::size_t>(pushed - acked)); }
  void consumed(std::size_t n) override { ack(n); }
  void cancelled() override;
  ~InFlow() override { ackRest(); }
};

struct StreamBase {
  StreamBase(const asio::any_io_executor& ex, int32_t stream_id) : id(stream_id), drained(ex) {}
  virtual ~StreamBase() = default;
  StreamBase(const StreamBase&) = delete;
  StreamBase& operator=(const StreamBase&) = delete;

  int32_t id;
  bool closed = false;  // nghttp2 closed the stream (or the connection ended)

  // --- outgoing body: bytes the pump took from out_body, waiting for the peer's window ---
  std::shared_ptr<Body> out_body;
  std::string out;
  std::size_t out_off = 0;
  bool out_eof = false;    // the body ended; the trailers follow the last bytes
  Fields out_trailers;
  bool out_done = false;   // the pump saw the body end (or gave up): nobody needs it cancelled
  bool deferred = false;   // the data provider returned NGHTTP2_ERR_DEFERRED
  Signal drained;          // the pump waits here while `out` is full
  [[nodiscard]] std::size_t outPending() const { return out.size() - out_off; }

  // --- incoming body ---
  std::shared_ptr<Body> in_body;
  std::shared_ptr<InFlow> in_flow;

  // --- header block being received (request/response head, then trailers) ---
  Fields fields;
  std::size_t field_bytes = 0;
  bool fields_too_large = false;
};

using StreamPtr = std::shared_ptr<StreamBase>;

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(const asio::any_io_executor& ex, ByteStream& io, H2Hooks hooks);
  virtual ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  [[nodiscard]] bool dead() const { return dead_; }
  [[nodiscard]] nghttp2_session* session() const { return session_; }
  [[nodiscard]] const asio::any_io_executor& executor() const { return ex_; }
  void wantWrite() { write_wake_.notify(); }
  void report(std::string_view error) {
    if (hooks_.error) hooks_.error(error);
  }
  void defer(std::function<void()> f) { deferred_.push_back(std::move(f)); }
  void runDeferred();
  StreamPtr find(int32_t id) const;
  // Takes what st.out_body has ready into st.out. True when the body is complete (or aborted:
  // the stream is then reset): no pump is needed. Called after the stream's HEADERS are
  // submitted.
  bool takeReady(StreamBase& st);
  // find() without taking a reference (callbacks that only look).
  StreamBase* get(int32_t id) const {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  // Called before the loops are spawned (they may start later, when co_spawn posts).
  void setLoopsRunning() { reader_running_ = writer_running_ = true; }
  // The reader (awaited by its owner) and the writer (spawned by start()).
  static asio::awaitable<void> readLoop(std::shared_ptr<Conn> self, std::string prefix);
  static asio::awaitable<void> writeLoop(std::shared_ptr<Conn> self);
  // Copies st->out_body into st->out as the window drains; on abort resets the stream.
  static asio::awaitable<void> pump(std::shared_ptr<Conn> self, StreamPtr st);

  // The data source of every outgoing body: `source.ptr` unused, the stream is looked up.
  static nghttp2_data_provider provider();
  // DATA received for `id`: into its Body, or acknowledged at once when nobody reads it.
  void onData(int32_t id, const uint8_t* data, std::size_t len);
  // A stream (or the connection) will send no more of `st`'s outgoing body: cancel it, outside
  // the nghttp2 callback.
  void cancelOutBody(const StreamPtr& st);
  // Becomes `body`'s producer: the accounting for a new received body.
  std::shared_ptr<InFlow> trackInBody(int32_t id, Body& body, bool reset_on_cancel);
  void resetStream(int32_t id, uint32_t code);

  // The connection failed or ended: no more nghttp2 calls; fail every stream.
  void markDead(std::string error);

 protected:
  // Fails every open stream (the connection is gone). Called once, from markDead.
  virtual void onDead() = 0;
  // Both loops have ended.
  virtual void onLoopsDone() {}
  // nghttp2_session_mem_recv failed with a fatal error (`rv`).
  void onRecvError(ssize_t rv);
  [[nodiscard]] bool finished() const {
    return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
  }
  // How long a finished connection waits for the peer's close before cancelling the read.
  static constexpr std::chrono::milliseconds kLinger{1000};

  asio::any_io_executor ex_;
  ByteStream& io_;
  H2Hooks hooks_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, StreamPtr> streams_;
  Signal write_wake_;
  Signal reader_done_;
  Signal writer_done_;
  bool reader_running_ = false;
  bool writer_running_ = false;
  bool dead_ = false;
  bool recv_failed_ = false;
  std::string error_;  // the connection-level error, "" for a clean end
  std::vector<std::function<void()>> deferred_;
  std::vector<std::function<void()>> running_;  // the batch runDeferred runs (keeps capacity)
  bool in_deferred_ = false;
};

// Sets the callbacks both sides install the same way.
void setCommonCallbacks(nghttp2_session_callbacks* cbs);

}  // namespace weft::http::h2
