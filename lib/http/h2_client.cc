// HTTP/2 client side (h2.h): one nghttp2 client session per upstream connection, multiplexing
// the requests of many downstream exchanges.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <charconv>
#include <optional>

#include "lib/http/h2_session.h"
#include "weft/http/h2.h"

namespace weft::http {

namespace {

using h2::Conn;
using h2::Headers;
using h2::Signal;
using h2::StreamBase;

struct ClientStream final : StreamBase {
  ClientStream(const asio::any_io_executor& ex, int32_t stream_id)
      : StreamBase(ex, stream_id), ready_sig(ex) {}
  int status = 0;
  bool head_done = false;  // the final (non-1xx) head arrived
  Response response;
  std::optional<Error> error;
  Signal ready_sig;  // send() waits here for head_done or error

  void fail(std::string kind, std::string context) {
    if (head_done || error) return;
    error = Error::upstream(std::move(kind), std::move(context));
    ready_sig.notify();
  }
};

class ClientConn final : public Conn {
 public:
  ClientConn(std::unique_ptr<Transport> t, const H2Settings& settings, H2Hooks hooks)
      : Conn(t->socket.get_executor(), *t->stream, std::move(hooks)),
        transport_(std::move(t)),
        settings_(settings) {}

  bool init();
  static asio::awaitable<Result<Response>> send(std::shared_ptr<ClientConn> c, Request& req);
  [[nodiscard]] bool available() const;
  [[nodiscard]] std::size_t active() const { return streams_.size(); }
  void shutdown();

 private:
  std::shared_ptr<ClientStream> findClient(int32_t id) const {
    return std::static_pointer_cast<ClientStream>(find(id));
  }
  // Without taking a reference, for callbacks that only look.
  ClientStream* getClient(int32_t id) const { return static_cast<ClientStream*>(get(id)); }
  static ClientConn& from(void* user) { return static_cast<ClientConn&>(*static_cast<Conn*>(user)); }
  void closeStream(const std::shared_ptr<ClientStream>& st);
  void onDead() override;
  void onLoopsDone() override { transport_->stream->close(false); }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onFrameNotSend(nghttp2_session*, const nghttp2_frame* frame, int lib_error, void* user);
  static int onInvalidFrame(nghttp2_session*, const nghttp2_frame* frame, int lib_error, void* user);
  static int onStreamClose(nghttp2_session*, int32_t id, uint32_t code, void* user);

  std::unique_ptr<Transport> transport_;
  H2Settings settings_;
  bool goaway_recv_ = false;
  bool goaway_sent_ = false;
};

// The handle a pool holds. Dropping it shuts the connection down gracefully; the session itself
// lives as long as its coroutines.
class H2ClientImpl final : public H2Client {
 public:
  explicit H2ClientImpl(std::shared_ptr<ClientConn> c) : c_(std::move(c)) {}
  ~H2ClientImpl() override { c_->shutdown(); }
  asio::awaitable<Result<Response>> sendBorrowed(Request& req) override { return ClientConn::send(c_, req); }
  [[nodiscard]] bool available() const override { return c_->available(); }
  [[nodiscard]] bool closed() const override { return c_->dead(); }
  [[nodiscard]] std::size_t activeStreams() const override { return c_->active(); }
  void shutdown() override { c_->shutdown(); }

 private:
  std::shared_ptr<ClientConn> c_;
};

bool ClientConn::init() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  h2::setCommonCallbacks(cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, onFrameRecv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, onFrameSend);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, onFrameNotSend);
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
  // Until the server's SETTINGS arrive, assume what we would allow ourselves.
  nghttp2_option_set_peer_max_concurrent_streams(opt, settings_.max_concurrent_streams);
  int rv = nghttp2_session_client_new2(&session_, cbs, static_cast<Conn*>(this), opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  const uint32_t frame_size = std::clamp<uint32_t>(settings_.max_frame_size, 16384, (1u << 24) - 1);
  const uint32_t stream_window = std::min<uint32_t>(settings_.initial_stream_window, (1u << 31) - 1);
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_size},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) return false;
  const auto conn_window =
      static_cast<int32_t>(std::min<uint32_t>(settings_.connection_window, (1u << 31) - 1));
  if (conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, conn_window);
  }
  return true;
}

bool ClientConn::available() const {
  if (dead_ || goaway_recv_ || goaway_sent_) return false;
  if (nghttp2_session_check_request_allowed(session_) == 0) return false;
  return streams_.size() <
         nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

void ClientConn::shutdown() {
  if (dead_ || goaway_sent_) return;
  goaway_sent_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  wantWrite();
}

asio::awaitable<Result<Response>> ClientConn::send(std::shared_ptr<ClientConn> c, Request& req) {
  if (c->dead_) co_return Error::upstream("connection_lost", "HTTP/2 connection closed");
  if (c->goaway_recv_ || c->goaway_sent_) {
    co_return Error::upstream("refused_stream", "HTTP/2 connection is going away");
  }
  const RequestHead& h = req.head;
  if (iequals(h.method, "CONNECT")) {
    co_return Error::internal("unsupported", "CONNECT is not sent over HTTP/2");
  }
  if (h.path.empty()) co_return Error::internal("bad_request", "request without a path");
  Headers nv;
  nv.add(":method", h.method);
  nv.add(":scheme", h.scheme.empty() ? std::string_view("http") : std::string_view(h.scheme));
  std::string_view authority = h.authority;
  if (authority.empty()) authority = http::find(h.headers, "host").value_or("");
  if (!authority.empty()) nv.add(":authority", authority);
  nv.add(":path", h.path);
  nv.addRegular(h.headers, true);
  // gRPC servers require it, and the server sides drop TE as hop-by-hop (message.h).
  if (h.isGrpc() && !http::find(h.headers, "te")) nv.add("te", "trailers");

  const bool has_body = !h.end_stream && req.body;
  auto prd = provider();
  int32_t id = nghttp2_submit_request(c->session_, nullptr, nv.data(), nv.size(),
                                      has_body ? &prd : nullptr, nullptr);
  if (id < 0) {
    co_return Error::upstream(id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? "refused_stream" : "connection_lost",
                              nghttp2_strerror(id));
  }
  auto st = makeRecycled<ClientStream>(c->ex_, id);
  if (has_body) st->out_body = req.body;
  c->streams_[id] = st;
  c->wantWrite();
  // A body already whole goes to nghttp2 now; a streaming one needs the pump.
  if (has_body && !c->takeReady(*st)) asio::co_spawn(c->ex_, pump(c, st), asio::detached);
  while (!st->head_done && !st->error) co_await st->ready_sig.wait();
  if (st->error) co_return *st->error;
  co_return std::move(st->response);
}

// ---- callbacks -------------------------------------------------------------------------------

int ClientConn::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name_p,
                         size_t namelen, const uint8_t* value_p, size_t valuelen, uint8_t,
                         void* user) {
  auto& c = from(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* st = c.getClient(frame->hd.stream_id);
  if (!st) return 0;
  st->field_bytes += namelen + valuelen + 32;
  if (st->field_bytes > c.settings_.max_header_list_size) {
    if (!st->fields_too_large) {
      st->fields_too_large = true;
      c.report("header_list_too_large");
      st->fail("header_list_too_large", "response header list too large");
    }
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
  }
  std::string_view name(reinterpret_cast<const char*>(name_p), namelen);
  std::string_view value(reinterpret_cast<const char*>(value_p), valuelen);
  if (!st->head_done && name == ":status") {
    int status = 0;
    std::from_chars(value.data(), value.data() + value.size(), status);
    st->status = status;
    return 0;
  }
  if (!name.empty() && name.front() == ':') return 0;
  if (st->fields.empty()) st->fields.reserve(8);  // one allocation for most heads
  st->fields.push_back(Field{std::string(name), std::string(value)});
  return 0;
}

int ClientConn::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto& c = from(user);
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      auto* st = c.getClient(frame->hd.stream_id);
      if (!st || st->error) break;
      st->field_bytes = 0;
      if (!st->head_done) {
        if (st->status < 200) {  // 1xx: skipped (nghttp2 has checked the status is valid)
          st->fields.clear();
          st->status = 0;
          break;
        }
        Response& r = st->response;
        r.head.status = st->status;
        r.head.headers = std::move(st->fields);
        st->fields.clear();
        r.head.end_stream = end;
        if (end) {
          r.body = Body::empty(c.ex_);
        } else {
          r.body = Body::make(c.ex_);
          st->in_body = r.body;
          // The caller reading no more resets the stream (and returns what it left unread).
          st->in_flow = c.trackInBody(st->id, *r.body, true);
        }
        st->head_done = true;
        st->ready_sig.notify();
      } else if (end && st->in_body) {  // trailers
        st->in_body->finish(std::move(st->fields));
        st->fields.clear();
      }
      break;
    }
    case NGHTTP2_DATA: {
      if (!end) break;
      auto* st = c.getClient(frame->hd.stream_id);
      if (st && st->in_body) st->in_body->finish();
      break;
    }
    case NGHTTP2_GOAWAY:
      // nghttp2 closes the streams above last_stream_id with REFUSED_STREAM (onStreamClose).
      c.goaway_recv_ = true;
      break;
    default:
      break;
  }
  return 0;
}

int ClientConn::onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto& c = from(user);
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
      c.error_.empty()) {
    c.error_ = h2::errorCodeName(frame->goaway.error_code);
    c.report(c.error_);
  }
  return 0;
}

int ClientConn::onFrameNotSend(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                               void* user) {
  auto& c = from(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto st = c.findClient(frame->hd.stream_id);
  if (!st || st->head_done) return 0;
  // A request that never left: refused when the connection is going away, so the caller may
  // retry it elsewhere.
  const bool refused = lib_error == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED ||
                       lib_error == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ||
                       lib_error == NGHTTP2_ERR_SESSION_CLOSING;
  st->fail(refused ? "refused_stream" : "connection_lost", nghttp2_strerror(lib_error));
  c.closeStream(st);
  return 0;
}

int ClientConn::onInvalidFrame(nghttp2_session*, const nghttp2_frame*, int, void* user) {
  from(user).report("protocol_error");
  return 0;
}

int ClientConn::onStreamClose(nghttp2_session*, int32_t id, uint32_t code, void* user) {
  auto& c = from(user);
  auto st = c.findClient(id);
  if (!st) return 0;
  if (!st->head_done && !st->error) {  // the message is only built when someone reads it
    st->fail(code == NGHTTP2_REFUSED_STREAM ? "refused_stream" : "stream_reset",
             "HTTP/2 stream closed: " + std::string(h2::errorCodeName(code)));
  }
  c.closeStream(st);
  return 0;
}

void ClientConn::closeStream(const std::shared_ptr<ClientStream>& st) {
  streams_.erase(st->id);
  st->closed = true;
  if (st->in_flow) st->in_flow->stream_closed = true;
  if (st->in_body && !st->in_body->finished()) st->in_body->abort("stream_reset");
  cancelOutBody(st);
  st->drained.notify();
}

void ClientConn::onDead() {
  auto streams = std::move(streams_);
  streams_.clear();
  const std::string why = error_.empty() ? "HTTP/2 connection closed" : "HTTP/2 connection: " + error_;
  for (auto& [id, sp] : streams) {
    auto st = std::static_pointer_cast<ClientStream>(sp);
    st->closed = true;
    if (st->in_flow) st->in_flow->stream_closed = true;
    st->fail("connection_lost", why);
    if (st->in_body && !st->in_body->finished()) st->in_body->abort("connection_lost");
    if (st->out_body && !st->out_done) {
      st->out_done = true;
      st->out_body->cancel();
    }
    st->drained.notify();
  }
}

}  // namespace

asio::awaitable<Result<Response>> H2Client::send(Request req) { co_return co_await sendBorrowed(req); }

std::shared_ptr<H2Client> H2Client::start(std::unique_ptr<Transport> transport,
                                          const H2Settings& settings, H2Hooks hooks) {
  if (!transport->stream) transport->ready();
  auto c = std::make_shared<ClientConn>(std::move(transport), settings, std::move(hooks));
  if (!c->init()) {
    c->report("internal");
    c->markDead("internal");
    return std::make_shared<H2ClientImpl>(c);
  }
  c->setLoopsRunning();
  asio::co_spawn(c->executor(), Conn::writeLoop(c), asio::detached);
  asio::co_spawn(c->executor(), Conn::readLoop(c, {}), asio::detached);
  return std::make_shared<H2ClientImpl>(c);
}

}  // namespace weft::http
