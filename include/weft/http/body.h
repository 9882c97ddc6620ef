// Body: one direction of a message body (data, then optional trailers, then end), flowing from
// the side that receives it to the side that sends it, with backpressure.
//
// Single-threaded: both ends run on the worker that owns the exchange (docs/dev/threading.md).
// Shared by the producer and the consumer through shared_ptr; either may go away first.
//
// Producer: push() data (never blocks: it appends), then finish(trailers) or abort(error). Before
// pushing more it should co_await waitWritable(), which returns once fewer than `high_water` bytes
// are buffered (or the consumer is gone). An HTTP/2 producer cannot wait inside nghttp2's
// callbacks; it pushes what the peer sent (bounded by the flow-control window it advertises) and
// returns the window with the bytes reported to its BodyProducer's consumed().
//
// Consumer: co_await read() until it returns kEnd or kAbort.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/recycling_allocator.hpp>
#include <asio/steady_timer.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "weft/http/message.h"

namespace weft::http {

class BodyObserver;

// What a producer wants to hear of the consumer (HTTP/2: flow control and stream resets). An
// interface held by shared_ptr rather than std::function members: the producer's own state
// object implements it, so a body costs no allocation for its hooks.
class BodyProducer {
 public:
  virtual ~BodyProducer() = default;
  // The consumer took `n` bytes.
  virtual void consumed(std::size_t n) = 0;
  // Once: the consumer will read no more (it cancelled).
  virtual void cancelled() = 0;
};

class Body {
 public:
  // The body's fate, as the consumer sees it.
  enum class Kind { kData, kEnd, kAbort };
  struct Chunk {
    Kind kind = Kind::kData;
    std::string data;   // kData: every byte buffered since the last read (never empty)
    Fields trailers;    // kEnd: trailers, possibly empty
    std::string error;  // kAbort: why (snake_case, e.g. "stream_reset", "upstream_io")
  };

  explicit Body(const asio::any_io_executor& ex, std::size_t high_water = 64 * 1024);
  // A new body. Use this rather than make_shared: a request makes two or more bodies, and this
  // takes their memory from the worker thread's recycled blocks (see makeRecycled).
  static std::shared_ptr<Body> make(const asio::any_io_executor& ex, std::size_t high_water = 64 * 1024);
  // A body that is already complete and empty (no data, no trailers).
  static std::shared_ptr<Body> empty(const asio::any_io_executor& ex);
  ~Body();
  Body(const Body&) = delete;
  Body& operator=(const Body&) = delete;

  // --- producer ---
  void push(std::string_view data);
  void finish(Fields trailers = {});
  void abort(std::string error);
  // Until buffered bytes < high_water, or the consumer has gone (then returns false).
  asio::awaitable<bool> waitWritable();
  [[nodiscard]] std::size_t buffered() const { return buffered_.size(); }
  // Told of each read and of a cancel (HTTP/2 window updates and resets); may be null.
  std::shared_ptr<BodyProducer> producer;

  // --- consumer ---
  asio::awaitable<Chunk> read();
  // read() without waiting: the next chunk if one is available now, else nullopt. Lets a writer
  // coalesce a head with a body that is already complete (one write, one syscall).
  std::optional<Chunk> tryRead();
  // The consumer will read no more (its peer went away): wakes the producer, drops buffered data,
  // and tells the producer once (an HTTP/2 producer resets its stream).
  void cancel();

  // Told once, when the consumer takes the final chunk (kEnd or kAbort) or cancels (the proxy's
  // metrics: grpc-status in trailers, streams reset mid-body). May be null.
  std::shared_ptr<BodyObserver> observer;

  [[nodiscard]] bool finished() const { return state_ != State::kOpen; }
  [[nodiscard]] bool cancelled() const { return cancelled_; }
  [[nodiscard]] uint64_t bytesPushed() const { return pushed_; }

 private:
  enum class State { kOpen, kEnded, kAborted };
  void wakeReader();
  void wakeWriter();

  // Made on first wait: most bodies are complete before anyone waits for them, and two timers
  // per body were a visible cost per request.
  asio::any_io_executor ex_;
  std::optional<asio::steady_timer> reader_wait_;
  std::optional<asio::steady_timer> writer_wait_;
  std::size_t high_water_;
  std::string buffered_;
  Fields trailers_;
  std::string error_;
  State state_ = State::kOpen;
  bool delivered_end_ = false;
  bool cancelled_ = false;
  uint64_t pushed_ = 0;
};

class BodyObserver {
 public:
  virtual ~BodyObserver() = default;
  // How the body ended: its trailers (kEnd) or the reason (kAbort; "cancelled" after cancel()).
  virtual void done(Body::Kind kind, const Fields& trailers, std::string_view error) = 0;
};

// std::allocate_shared from the calling worker thread's recycled blocks (Asio's per-thread
// cache, the one its coroutine frames and operations use): the objects made for every request
// (bodies, HTTP/2 streams) then cost no malloc in the steady state. Freed on another thread, a
// block simply goes back to the heap.
template <typename T, typename... Args>
std::shared_ptr<T> makeRecycled(Args&&... args) {
  return std::allocate_shared<T>(asio::recycling_allocator<T>(), std::forward<Args>(args)...);
}

}  // namespace weft::http
