// HTTP/2 server side (h2.h): one nghttp2 server session per downstream connection; a handler
// coroutine per stream.
#include <algorithm>
#include <charconv>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/this_coro.hpp>
#include <deque>

#include "lib/http/h2_session.h"
#include "weft/http/h2.h"

namespace weft::http {

namespace {

using h2::Conn;
using h2::Headers;
using h2::Signal;
using h2::StreamBase;
using Clock = std::chrono::steady_clock;

// How long a draining connection waits for the PING that follows its first GOAWAY before it
// sends the final one (the client has seen the first by then; RFC 9113 §6.8).
constexpr std::chrono::milliseconds kDrainGrace{1000};

struct ServerStream final : StreamBase {
  using StreamBase::StreamBase;
  RequestHead head;
  std::string host;  // a Host field, for :authority when the client sent none
  int cookie_index = -1;
  bool head_done = false;
  bool req_ended = false;         // END_STREAM received
  bool response_started = false;  // HEADERS submitted
  bool peer_reset = false;
  bool is_head = false;
  Request request;  // from the head until its handler starts
};

class ServerConn final : public Conn {
 public:
  ServerConn(const asio::any_io_executor& ex, ByteStream& io, const H2Settings& settings,
             Handler handler, H2Hooks hooks, std::shared_ptr<DrainSignal> drain)
      : Conn(ex, io, std::move(hooks)),
        settings_(settings),
        handler_(std::move(handler)),
        drain_(std::move(drain)),
        idle_wake_(ex),
        drain_wake_(ex) {}

  bool init();
  static asio::awaitable<Status> run(std::shared_ptr<ServerConn> self, std::string prefix);

 private:
  std::shared_ptr<ServerConn> self() {
    return std::static_pointer_cast<ServerConn>(shared_from_this());
  }
  std::shared_ptr<ServerStream> findServer(int32_t id) const {
    return std::static_pointer_cast<ServerStream>(find(id));
  }
  // Without taking a reference, for callbacks that only look.
  ServerStream* getServer(int32_t id) const { return static_cast<ServerStream*>(get(id)); }
  static ServerConn& from(void* user) { return static_cast<ServerConn&>(*static_cast<Conn*>(user)); }

  void onRequest(ServerStream* st, bool end_stream);
  bool submitResponse(ServerStream& st, Response& rsp);
  void countEarlyReset();
  void startDrain();
  void onDead() override;

  // The handler's answer for `st` (or the exception it should never throw).
  void onResponse(const std::shared_ptr<ServerStream>& st, std::exception_ptr handler_error, Response rsp);
  static asio::awaitable<void> idleWatch(std::shared_ptr<ServerConn> c);
  static asio::awaitable<void> drainLoop(std::shared_ptr<ServerConn> c);

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onInvalidFrame(nghttp2_session*, const nghttp2_frame* frame, int lib_error, void* user);
  static int onStreamClose(nghttp2_session*, int32_t id, uint32_t code, void* user);

  H2Settings settings_;
  Handler handler_;
  std::shared_ptr<DrainSignal> drain_;
  Signal idle_wake_;
  Signal drain_wake_;
  Clock::time_point idle_since_ = Clock::now();
  std::deque<Clock::time_point> early_resets_;
  bool calm_ = false;
  bool draining_ = false;
  uint8_t last_recv_type_ = 0xff;
};

bool ServerConn::init() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  h2::setCommonCallbacks(cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, onFrameRecv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, onFrameSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, onInvalidFrame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, onStreamClose);

  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return false;
  }
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_max_continuations(opt, settings_.max_continuations);
  // nghttp2's own limiter counts every RST_STREAM; ours (countEarlyReset) only those that
  // arrive before the response began. Theirs is the looser backstop.
  const uint64_t window_s =
      std::max<uint64_t>(1, static_cast<uint64_t>(settings_.reset_window.count()) / 1000);
  const uint64_t burst = std::max<uint64_t>(2ull * settings_.max_early_resets, 100);
  nghttp2_option_set_stream_reset_rate_limit(opt, burst, std::max<uint64_t>(1, burst / window_s));
  int rv = nghttp2_session_server_new2(&session_, cbs, static_cast<Conn*>(this), opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  const uint32_t frame_size = std::clamp<uint32_t>(settings_.max_frame_size, 16384, (1u << 24) - 1);
  const uint32_t stream_window = std::min<uint32_t>(settings_.initial_stream_window, (1u << 31) - 1);
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_size},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) return false;
  const auto conn_window =
      static_cast<int32_t>(std::min<uint32_t>(settings_.connection_window, (1u << 31) - 1));
  if (conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, conn_window);
  }
  return true;
}

asio::awaitable<Status> ServerConn::run(std::shared_ptr<ServerConn> c, std::string prefix) {
  c->idle_since_ = Clock::now();
  if (c->drain_) {
    c->drain_->notify = [weak = std::weak_ptr<ServerConn>(c)] {
      if (auto conn = weak.lock()) conn->startDrain();
    };
    if (c->drain_->draining) c->startDrain();
  }
  if (c->settings_.idle_timeout.count() > 0) asio::co_spawn(c->ex_, idleWatch(c), asio::detached);
  // Set before the spawn: run() must not return while the writer may still use the stream.
  c->writer_running_ = true;
  asio::co_spawn(c->ex_, writeLoop(c), asio::detached);
  co_await readLoop(c, std::move(prefix));
  while (c->writer_running_) co_await c->writer_done_.wait();
  c->markDead("");
  if (c->drain_) c->drain_->notify = nullptr;
  if (c->error_.empty()) co_return okStatus();
  co_return Error::downstream(c->error_, "HTTP/2 connection");
}

// ---- callbacks -------------------------------------------------------------------------------

int ServerConn::onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto& c = from(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  c.streams_[frame->hd.stream_id] = makeRecycled<ServerStream>(c.ex_, frame->hd.stream_id);
  return 0;
}

int ServerConn::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name_p,
                         size_t namelen, const uint8_t* value_p, size_t valuelen, uint8_t,
                         void* user) {
  auto& c = from(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* st = c.getServer(frame->hd.stream_id);
  if (!st) return 0;
  // HPACK bombs: count decoded bytes, as SETTINGS_MAX_HEADER_LIST_SIZE defines them.
  st->field_bytes += namelen + valuelen + 32;
  if (st->field_bytes > c.settings_.max_header_list_size) {
    if (!st->fields_too_large) {
      st->fields_too_large = true;
      c.report("header_list_too_large");
    }
    // A head gets a 431 (onRequest); oversized trailers reset the stream.
    return st->head_done ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
  }
  if (st->fields_too_large) return 0;
  std::string_view name(reinterpret_cast<const char*>(name_p), namelen);
  std::string_view value(reinterpret_cast<const char*>(value_p), valuelen);
  if (st->head_done) {  // trailers; nghttp2 has rejected pseudo-headers in them
    st->fields.push_back(Field{std::string(name), std::string(value)});
    return 0;
  }
  if (!name.empty() && name.front() == ':') {
    if (name == ":method") {
      st->head.method = value;
    } else if (name == ":scheme") {
      st->head.scheme = value;
    } else if (name == ":authority") {
      st->head.authority = value;
    } else if (name == ":path") {
      st->head.path = value;
    }
    return 0;
  }
  if (name == "host") {
    st->host = value;
    return 0;
  }
  if (name == "te") return 0;  // hop-by-hop (message.h); only "trailers" gets past nghttp2
  if (name == "cookie") {
    // RFC 9113 §8.2.3: crumbs are joined before the request leaves HTTP/2.
    if (st->cookie_index >= 0) {
      auto& f = st->head.headers[static_cast<std::size_t>(st->cookie_index)];
      f.value.append("; ").append(value);
      return 0;
    }
    st->cookie_index = static_cast<int>(st->head.headers.size());
  }
  if (st->head.headers.empty()) st->head.headers.reserve(8);  // one allocation for most heads
  st->head.headers.push_back(Field{std::string(name), std::string(value)});
  return 0;
}

int ServerConn::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto& c = from(user);
  c.last_recv_type_ = frame->hd.type;
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      auto* st = c.getServer(frame->hd.stream_id);
      if (!st) break;
      if (!st->head_done) {
        st->head_done = true;
        c.onRequest(st, end);
      } else if (end) {  // trailers
        st->req_ended = true;
        if (st->in_body) st->in_body->finish(std::move(st->fields));
      }
      st->field_bytes = 0;
      break;
    }
    case NGHTTP2_DATA: {
      if (!end) break;
      auto* st = c.getServer(frame->hd.stream_id);
      if (!st) break;
      st->req_ended = true;
      if (st->in_body) st->in_body->finish();
      break;
    }
    case NGHTTP2_RST_STREAM: {
      if (auto* st = c.getServer(frame->hd.stream_id)) st->peer_reset = true;
      break;
    }
    case NGHTTP2_PING:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) c.drain_wake_.notify();
      break;
    default:
      break;
  }
  return 0;
}

int ServerConn::onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto& c = from(user);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    if (frame->goaway.error_code != NGHTTP2_NO_ERROR && c.error_.empty()) {
      // A connection error nghttp2 detected itself (or its reset limiter fired).
      c.error_ = c.last_recv_type_ == NGHTTP2_RST_STREAM &&
                         frame->goaway.error_code != NGHTTP2_PROTOCOL_ERROR
                     ? "rapid_reset"
                     : std::string(h2::errorCodeName(frame->goaway.error_code));
      c.report(c.error_);
    }
    return 0;
  }
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    auto* st = c.getServer(frame->hd.stream_id);
    // The response is complete while the request is not: tell the client to stop sending
    // (RFC 9113 §8.1).
    if (st && !st->req_ended) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
  }
  return 0;
}

int ServerConn::onInvalidFrame(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                               void* user) {
  auto& c = from(user);
  if (frame->hd.type == NGHTTP2_HEADERS && lib_error == NGHTTP2_ERR_REFUSED_STREAM) {
    c.report("too_many_streams");
  } else {
    c.report("protocol_error");
  }
  return 0;
}

int ServerConn::onStreamClose(nghttp2_session*, int32_t id, uint32_t, void* user) {
  auto& c = from(user);
  auto st = c.findServer(id);
  if (!st) return 0;
  c.streams_.erase(id);
  st->closed = true;
  if (st->in_flow) st->in_flow->stream_closed = true;
  if (st->peer_reset && !st->response_started) c.countEarlyReset();
  if (st->in_body && !st->in_body->finished()) st->in_body->abort("stream_reset");
  c.cancelOutBody(st);
  st->drained.notify();
  if (c.streams_.empty()) {
    c.idle_since_ = Clock::now();
    c.idle_wake_.notify();
  }
  return 0;
}

// ---- streams ---------------------------------------------------------------------------------

void ServerConn::onRequest(ServerStream* st, bool end_stream) {
  st->req_ended = end_stream;
  if (st->fields_too_large) {
    Headers h;
    h.add(":status", "431");
    st->response_started = true;
    nghttp2_submit_response(session_, st->id, h.data(), h.size(), nullptr);
    return;  // its DATA, if any, is acknowledged and dropped (no in_body)
  }
  Request req;
  req.head = std::move(st->head);
  req.head.proto = Proto::kHttp2;
  req.head.end_stream = end_stream;
  if (req.head.authority.empty()) req.head.authority = std::move(st->host);
  st->is_head = req.head.method == "HEAD";
  if (end_stream) {
    req.body = Body::empty(ex_);
  } else {
    req.body = Body::make(ex_);
    st->in_body = req.body;
    st->in_flow = trackInBody(st->id, *req.body, false);
  }
  // co_spawn runs the handler inline until its first suspension: never inside nghttp2. The
  // request waits in the stream, so the deferred call captures no more than std::function
  // holds without allocating.
  st->request = std::move(req);
  defer([this, id = st->id] {
    auto s = findServer(id);
    if (!s || s->closed || dead_) return;  // reset in the same read: never started
    // The handler's coroutine runs as its own thread of execution; its answer comes to
    // onResponse (no wrapping coroutine per stream).
    asio::co_spawn(ex_, handler_(std::move(s->request)),
                   [c = self(), s](std::exception_ptr e, Response rsp) { c->onResponse(s, e, std::move(rsp)); });
  });
}

void ServerConn::onResponse(const std::shared_ptr<ServerStream>& st, std::exception_ptr handler_error,
                            Response rsp) {
  if (handler_error) {  // the contract says never; a bug must not hang the stream
    report("handler_exception");
    resetStream(st->id, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (!rsp.body) rsp.body = Body::empty(ex_);
  if (dead_ || st->closed) {
    rsp.body->cancel();
    return;
  }
  if (!submitResponse(*st, rsp)) {
    rsp.body->cancel();
    return;
  }
  // A body already whole went to nghttp2 in submitResponse; a streaming one needs the pump.
  if (st->out_body && !st->out_done) asio::co_spawn(ex_, pump(self(), st), asio::detached);
}

bool ServerConn::submitResponse(ServerStream& st, Response& rsp) {
  int status = rsp.head.status;
  if (status < 200 || status > 999) {
    report("bad_response_status");
    status = 502;
    rsp.head.headers.clear();
    rsp.head.end_stream = true;
  }
  Headers h;
  char status_text[4];
  auto [end, ec] = std::to_chars(status_text, status_text + sizeof status_text, status);
  (void)ec;  // 200..999: three digits
  h.add(":status", std::string_view(status_text, static_cast<std::size_t>(end - status_text)));
  h.addRegular(rsp.head.headers, false);
  st.response_started = true;
  int rv = 0;
  if (rsp.head.end_stream || st.is_head) {
    rv = nghttp2_submit_response(session_, st.id, h.data(), h.size(), nullptr);
    if (!rsp.body->finished() || rsp.body->buffered() > 0) rsp.body->cancel();
  } else {
    st.out_body = rsp.body;
    auto prd = provider();
    rv = nghttp2_submit_response(session_, st.id, h.data(), h.size(), &prd);
    if (rv != 0) {
      st.out_body = nullptr;
    } else {
      takeReady(st);
    }
  }
  if (rv != 0) {
    report("internal");
    resetStream(st.id, NGHTTP2_INTERNAL_ERROR);
    return false;
  }
  wantWrite();
  return true;
}

void ServerConn::countEarlyReset() {
  const auto now = Clock::now();
  early_resets_.push_back(now);
  while (!early_resets_.empty() && early_resets_.front() + settings_.reset_window < now) {
    early_resets_.pop_front();
  }
  if (early_resets_.size() > settings_.max_early_resets) {
    early_resets_.pop_front();
    if (!calm_) {
      calm_ = true;
      if (error_.empty()) error_ = "rapid_reset";
      report("rapid_reset");
      nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
    }
  }
}

void ServerConn::onDead() {
  // Body::cancel runs the producer's callbacks, which may touch this connection: detach the
  // streams first.
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, sp] : streams) {
    sp->closed = true;
    if (sp->in_flow) sp->in_flow->stream_closed = true;
    if (sp->in_body && !sp->in_body->finished()) sp->in_body->abort("connection_lost");
    if (sp->out_body && !sp->out_done) {
      sp->out_done = true;
      sp->out_body->cancel();
    }
    sp->drained.notify();
  }
  idle_wake_.notify();
  drain_wake_.notify();
}

// ---- idle and drain --------------------------------------------------------------------------

asio::awaitable<void> ServerConn::idleWatch(std::shared_ptr<ServerConn> c) {
  while (!c->dead_ && !c->draining_) {
    if (!c->streams_.empty()) {
      co_await c->idle_wake_.wait();
      continue;
    }
    const auto deadline = c->idle_since_ + c->settings_.idle_timeout;
    const auto now = Clock::now();
    if (now >= deadline) {
      nghttp2_session_terminate_session(c->session_, NGHTTP2_NO_ERROR);
      c->wantWrite();
      co_return;
    }
    co_await c->idle_wake_.waitFor(deadline - now);
  }
}

void ServerConn::startDrain() {
  if (draining_ || dead_) return;
  draining_ = true;
  idle_wake_.notify();
  asio::co_spawn(ex_, drainLoop(self()), asio::detached);
}

asio::awaitable<void> ServerConn::drainLoop(std::shared_ptr<ServerConn> c) {
  // Two-step GOAWAY: first "no new streams soon" (last id 2^31-1) and a PING; once the PING
  // comes back every stream the client opened before seeing it has arrived, and the final
  // GOAWAY names the last one.
  nghttp2_submit_shutdown_notice(c->session_);
  nghttp2_submit_ping(c->session_, NGHTTP2_FLAG_NONE, nullptr);
  c->wantWrite();
  co_await c->drain_wake_.waitFor(kDrainGrace);
  if (c->dead_) co_return;
  nghttp2_submit_goaway(c->session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(c->session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  c->wantWrite();
}

}  // namespace

asio::awaitable<Status> serveH2(ByteStream& stream, std::string prefix, const H2Settings& settings,
                                Handler handler, H2Hooks hooks, std::shared_ptr<DrainSignal> drain) {
  auto ex = co_await asio::this_coro::executor;
  auto conn = std::make_shared<ServerConn>(ex, stream, settings, std::move(handler),
                                           std::move(hooks), std::move(drain));
  if (!conn->init()) co_return Error::internal("h2_init", "nghttp2 server session");
  co_return co_await ServerConn::run(conn, std::move(prefix));
}

}  // namespace weft::http
