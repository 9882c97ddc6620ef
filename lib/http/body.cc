#include "weft/http/body.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

namespace weft::http {

namespace {
constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);
}

// The two timers are condition variables: a waiter sleeps on a timer that never expires, and
// the other side cancels it to wake it (the usual single-threaded Asio idiom).
Body::Body(const asio::any_io_executor& ex, std::size_t high_water) : ex_(ex), high_water_(high_water) {}

Body::~Body() = default;

std::shared_ptr<Body> Body::make(const asio::any_io_executor& ex, std::size_t high_water) {
  return makeRecycled<Body>(ex, high_water);
}

std::shared_ptr<Body> Body::empty(const asio::any_io_executor& ex) {
  auto b = make(ex);
  b->finish();
  return b;
}

void Body::push(std::string_view data) {
  if (state_ != State::kOpen || data.empty()) return;
  pushed_ += data.size();
  if (cancelled_) return;  // nobody will read it
  buffered_.append(data);
  wakeReader();
}

void Body::finish(Fields trailers) {
  if (state_ != State::kOpen) return;
  state_ = State::kEnded;
  trailers_ = std::move(trailers);
  wakeReader();
}

void Body::abort(std::string error) {
  if (state_ != State::kOpen) return;
  state_ = State::kAborted;
  error_ = std::move(error);
  wakeReader();
}

asio::awaitable<bool> Body::waitWritable() {
  while (!cancelled_ && buffered_.size() >= high_water_) {
    if (!writer_wait_) writer_wait_.emplace(ex_);
    writer_wait_->expires_at(asio::steady_timer::time_point::max());
    co_await writer_wait_->async_wait(kAwait);
  }
  co_return !cancelled_;
}

std::optional<Body::Chunk> Body::tryRead() {
  if (!buffered_.empty()) {
    Chunk c;
    c.data.swap(buffered_);
    wakeWriter();
    if (producer) producer->consumed(c.data.size());
    return c;
  }
  if (cancelled_) return Chunk{Kind::kAbort, {}, {}, "cancelled"};
  if (state_ == State::kOpen) return std::nullopt;
  Chunk c;
  c.kind = state_ == State::kEnded ? Kind::kEnd : Kind::kAbort;
  c.trailers = trailers_;
  c.error = error_;
  if (!delivered_end_) {
    delivered_end_ = true;
    if (observer) observer->done(c.kind, c.trailers, c.error);
  }
  return c;
}

asio::awaitable<Body::Chunk> Body::read() {
  for (;;) {
    if (auto c = tryRead()) co_return std::move(*c);
    if (!reader_wait_) reader_wait_.emplace(ex_);
    reader_wait_->expires_at(asio::steady_timer::time_point::max());
    co_await reader_wait_->async_wait(kAwait);
  }
}

void Body::cancel() {
  if (cancelled_) return;
  cancelled_ = true;
  buffered_.clear();
  wakeWriter();
  wakeReader();
  if (!delivered_end_) {
    delivered_end_ = true;
    if (observer) observer->done(Kind::kAbort, trailers_, "cancelled");
  }
  if (producer) {
    auto p = producer;  // the producer may drop its body (and so this) from cancelled()
    p->cancelled();
  }
}

void Body::wakeReader() {
  if (reader_wait_) reader_wait_->cancel();
}
void Body::wakeWriter() {
  if (writer_wait_) writer_wait_->cancel();
}

}  // namespace weft::http
