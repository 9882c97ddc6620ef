#include "lib/http/h2_session.h"

#include <algorithm>
#include <cstring>

#include "weft/common/ascii.h"

namespace weft::http::h2 {

asio::awaitable<bool> Signal::waitFor(std::chrono::steady_clock::duration d) {
  timer_.expires_after(d);
  auto [ec] = co_await timer_.async_wait(kAwait);
  co_return ec == asio::error::operation_aborted;
}

namespace {

// How much a pump buffers ahead of the peer's flow-control window before it stops reading its
// Body (so a slow peer holds back the producer).
constexpr std::size_t kOutHighWater = 64 * 1024;
// How much the writer gathers from nghttp2 before one write to the socket.
constexpr std::size_t kWriteBatch = 64 * 1024;
constexpr std::size_t kReadBuffer = 16 * 1024;

nghttp2_nv makeNv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

bool hasUpper(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

ssize_t readDataCb(nghttp2_session* session, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                   nghttp2_data_source*, void* user) {
  auto& c = *static_cast<Conn*>(user);
  auto* st = c.get(id);
  if (st == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // not ours: reset it
  std::size_t n = std::min(len, st->outPending());
  if (n > 0) std::memcpy(buf, st->out.data() + st->out_off, n);
  st->out_off += n;
  if (st->out_off == st->out.size()) {
    st->out.clear();
    st->out_off = 0;
  } else if (st->out_off >= kOutHighWater) {
    st->out.erase(0, st->out_off);
    st->out_off = 0;
  }
  if (st->outPending() < kOutHighWater) st->drained.notify();
  if (st->outPending() == 0 && st->out_eof) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!st->out_trailers.empty()) {
      Headers h;
      h.addRegular(st->out_trailers, false);
      if (h.size() > 0) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(session, id, h.data(), h.size()) != 0) {
          return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
      }
    }
    return static_cast<ssize_t>(n);
  }
  if (n == 0) {
    st->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

int onDataChunkCb(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
  static_cast<Conn*>(user)->onData(id, data, len);
  return 0;
}

}  // namespace

// ---- Headers ---------------------------------------------------------------------------------

void Headers::add(std::string_view name, std::string_view value) {
  if (size_ < inline_.size()) {
    inline_[size_++] = makeNv(name, value);
    return;
  }
  if (more_.empty()) more_.assign(inline_.begin(), inline_.end());
  more_.push_back(makeNv(name, value));
  ++size_;
}

void Headers::addRegular(const Fields& fields, bool keep_te_trailers) {
  for (const auto& f : fields) {
    if (f.name.empty() || f.name.front() == ':') continue;
    std::string_view name = f.name;
    if (hasUpper(name)) name = lowered_.emplace_back(ascii::toLower(name));
    if (isConnectionSpecific(name) || name == "host") continue;
    if (name == "te") {
      if (keep_te_trailers && iequals(trim(f.value), "trailers")) add("te", "trailers");
      continue;
    }
    add(name, f.value);
  }
}

bool isConnectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade";
}

std::string_view errorCodeName(uint32_t code) {
  switch (code) {
    case NGHTTP2_NO_ERROR: return "no_error";
    case NGHTTP2_PROTOCOL_ERROR: return "protocol_error";
    case NGHTTP2_INTERNAL_ERROR: return "internal_error";
    case NGHTTP2_FLOW_CONTROL_ERROR: return "flow_control_error";
    case NGHTTP2_SETTINGS_TIMEOUT: return "settings_timeout";
    case NGHTTP2_STREAM_CLOSED: return "stream_closed";
    case NGHTTP2_FRAME_SIZE_ERROR: return "frame_size_error";
    case NGHTTP2_REFUSED_STREAM: return "refused_stream";
    case NGHTTP2_CANCEL: return "cancel";
    case NGHTTP2_COMPRESSION_ERROR: return "compression_error";
    case NGHTTP2_CONNECT_ERROR: return "connect_error";
    case NGHTTP2_ENHANCE_YOUR_CALM: return "enhance_your_calm";
    case NGHTTP2_INADEQUATE_SECURITY: return "inadequate_security";
    case NGHTTP2_HTTP_1_1_REQUIRED: return "http_1_1_required";
    default: return "unknown_error";
  }
}

// ---- InFlow ----------------------------------------------------------------------------------

void InFlow::ack(std::size_t n) {
  if (n == 0) return;
  acked += n;
  auto c = conn.lock();
  if (!c || c->dead()) return;
  // Once the stream is closed only the connection window matters (and nghttp2 may be inside
  // the close of that very stream).
  if (stream_closed) {
    nghttp2_session_consume_connection(c->session(), n);
  } else {
    nghttp2_session_consume(c->session(), id, n);
  }
  c->wantWrite();
}

void InFlow::cancelled() {
  // What the consumer left, and what still arrives, is acknowledged: the connection window must
  // not shrink for good.
  discard = true;
  ackRest();
  if (!reset_on_cancel) return;
  auto c = conn.lock();
  if (!c || c->dead()) return;
  if (auto* s = c->get(id); s != nullptr && !s->closed) c->resetStream(id, NGHTTP2_CANCEL);
}

// ---- Conn ------------------------------------------------------------------------------------

Conn::Conn(const asio::any_io_executor& ex, ByteStream& io, H2Hooks hooks)
    : ex_(ex),
      io_(io),
      hooks_(std::move(hooks)),
      write_wake_(ex),
      reader_done_(ex),
      writer_done_(ex) {}

Conn::~Conn() {
  // Streams (and their InFlows) go first: their destructors look at the session only through a
  // weak_ptr that no longer locks.
  streams_.clear();
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void Conn::runDeferred() {
  // Not re-entered: work deferred meanwhile runs in this loop's next round.
  if (in_deferred_) return;
  in_deferred_ = true;
  while (!deferred_.empty()) {
    running_.swap(deferred_);  // both vectors keep their capacity
    for (auto& f : running_) f();
    running_.clear();
  }
  in_deferred_ = false;
}

bool Conn::takeReady(StreamBase& st) {
  while (auto c = st.out_body->tryRead()) {
    if (c->kind == Body::Kind::kData) {
      if (st.out.empty()) {
        st.out.swap(c->data);
      } else {
        st.out.append(c->data);
      }
      continue;
    }
    st.out_done = true;
    if (c->kind == Body::Kind::kEnd) {
      st.out_eof = true;
      st.out_trailers = std::move(c->trailers);
    } else {
      resetStream(st.id, c->error == "cancelled" ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
    }
    return true;
  }
  return false;
}

StreamPtr Conn::find(int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second;
}

nghttp2_data_provider Conn::provider() {
  nghttp2_data_provider p{};
  p.source.ptr = nullptr;
  p.read_callback = readDataCb;
  return p;
}

void Conn::onData(int32_t id, const uint8_t* data, std::size_t len) {
  auto* st = get(id);
  if (st == nullptr || !st->in_body || !st->in_flow || st->in_flow->discard || st->in_body->finished() ||
      st->in_body->cancelled()) {
    // Nobody will read it: give the window back now.
    nghttp2_session_consume(session_, id, len);
    return;
  }
  st->in_flow->pushed += len;
  st->in_body->push(std::string_view(reinterpret_cast<const char*>(data), len));
}

void Conn::cancelOutBody(const StreamPtr& st) {
  if (!st->out_body || st->out_done) return;
  st->out_done = true;
  defer([body = st->out_body] { body->cancel(); });
}

std::shared_ptr<InFlow> Conn::trackInBody(int32_t id, Body& body, bool reset_on_cancel) {
  auto flow = makeRecycled<InFlow>();
  flow->conn = weak_from_this();
  flow->id = id;
  flow->reset_on_cancel = reset_on_cancel;
  body.producer = flow;
  return flow;
}

void Conn::resetStream(int32_t id, uint32_t code) {
  if (dead_) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, code);
  wantWrite();
}

void Conn::markDead(std::string error) {
  if (dead_) return;
  dead_ = true;
  if (error_.empty()) error_ = std::move(error);
  write_wake_.notify();
  if (reader_running_) {
    asio::error_code ignored;
    io_.socket().cancel(ignored);  // wakes the reader
  }
  onDead();
  runDeferred();
}

void Conn::onRecvError(ssize_t rv) {
  recv_failed_ = true;
  std::string_view name = "protocol_error";
  if (rv == NGHTTP2_ERR_FLOODED) {
    name = "flood";
  } else if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
    name = "continuation_flood";
  } else if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
    name = "bad_preface";
  } else if (rv == NGHTTP2_ERR_NOMEM) {
    name = "internal";
  }
  report(name);
  // The session cannot be used after a fatal error: drop the connection without a GOAWAY.
  markDead(std::string(name));
}

asio::awaitable<void> Conn::readLoop(std::shared_ptr<Conn> self, std::string prefix) {
  Conn& c = *self;
  c.reader_running_ = true;
  auto feed = [&c](const char* p, std::size_t n) {
    // After our GOAWAY has gone out the session is finished: what the peer still sends is
    // read (so closing does not turn into a reset) and dropped.
    if (c.dead_ || c.recv_failed_ || c.finished()) return;
    ssize_t rv = nghttp2_session_mem_recv(c.session_, reinterpret_cast<const uint8_t*>(p), n);
    if (rv < 0) {
      c.onRecvError(rv);
      return;
    }
    c.runDeferred();
    c.wantWrite();
  };
  if (!prefix.empty()) feed(prefix.data(), prefix.size());
  std::vector<char> buf(kReadBuffer);
  while (!c.dead_) {
    auto [ec, n] = co_await c.io_.readSome(buf.data(), buf.size());
    if (ec || n == 0) {
      if (!c.finished()) {
        bool io_error = ec && ec != asio::error::eof && ec != asio::error::operation_aborted;
        c.markDead(io_error ? "io" : "");
      }
      break;
    }
    feed(buf.data(), n);
  }
  c.reader_running_ = false;
  c.reader_done_.notify();
  if (!c.writer_running_) c.onLoopsDone();
}

asio::awaitable<void> Conn::writeLoop(std::shared_ptr<Conn> self) {
  Conn& c = *self;
  c.writer_running_ = true;
  std::string out;
  bool clean = false;
  while (!c.dead_) {
    out.clear();
    while (out.size() < kWriteBatch) {
      const uint8_t* p = nullptr;
      ssize_t n = nghttp2_session_mem_send(c.session_, &p);
      if (n < 0) {
        c.report("internal");
        c.markDead("internal");
        break;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
    }
    c.runDeferred();
    if (c.dead_) break;
    if (!out.empty()) {
      auto [ec, written] = co_await c.io_.writeAll(out.data(), out.size());
      (void)written;
      if (ec) {
        c.markDead(ec == asio::error::operation_aborted ? "" : "io");
        break;
      }
      continue;
    }
    if (c.finished()) {
      clean = true;
      break;
    }
    co_await c.write_wake_.wait();
  }
  if (clean) {
    // Everything is said (GOAWAY included): close our half and give the peer a moment to close
    // its own, so that unread bytes in flight do not turn our close into a reset.
    c.io_.shutdownWrite();
    if (c.reader_running_) {
      co_await c.reader_done_.waitFor(kLinger);
      if (c.reader_running_) {
        asio::error_code ignored;
        c.io_.socket().cancel(ignored);
      }
      while (c.reader_running_) co_await c.reader_done_.wait();
    }
    c.markDead("");
  }
  c.writer_running_ = false;
  c.writer_done_.notify();
  if (!c.reader_running_) c.onLoopsDone();
}

asio::awaitable<void> Conn::pump(std::shared_ptr<Conn> self, StreamPtr st) {
  Conn& c = *self;
  auto body = st->out_body;
  for (;;) {
    while (!st->closed && !c.dead_ && st->outPending() >= kOutHighWater) co_await st->drained.wait();
    if (st->closed || c.dead_) break;
    Body::Chunk chunk = co_await body->read();
    if (st->closed || c.dead_) break;
    if (chunk.kind == Body::Kind::kData) {
      st->out.append(chunk.data);
    } else if (chunk.kind == Body::Kind::kEnd) {
      st->out_done = true;
      st->out_eof = true;
      st->out_trailers = std::move(chunk.trailers);
    } else {
      st->out_done = true;
      c.resetStream(st->id, chunk.error == "cancelled" ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
      co_return;
    }
    if (st->deferred) {
      st->deferred = false;
      nghttp2_session_resume_data(c.session_, st->id);
    }
    c.wantWrite();
    if (st->out_done) co_return;
  }
  if (!st->out_done) {
    st->out_done = true;
    body->cancel();
  }
}

void setCommonCallbacks(nghttp2_session_callbacks* cbs) {
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, onDataChunkCb);
}

}  // namespace weft::http::h2
