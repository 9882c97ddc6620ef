// Fuzzes the HTTP/1 codec (include/weft/http1/codec.h) with arbitrary bytes.
//
// Every input goes through three readers: a request stream (pipelined heads with their
// Content-Length or chunked bodies), a response head (the request method chosen from the input's
// length), and a chunked body. Beyond "no crash, no sanitizer report", it checks:
//  - split invariance: whole, byte-at-a-time and a few input-derived splits give the same
//    sequence of outcomes (state, consumed count, head, error status and kind, decoded body);
//  - a kDone head re-serialized parses back to an equal head, consuming exactly the serialization;
//  - a decoded chunked body re-encoded decodes back to the same bytes and trailers;
//  - differential: nodejs/http-parser (the lenient parser we chose not to use,
//    docs/dev/http1-parser.md) accepts every request head we accept, with the same method and the
//    same framing. A failure there means we are more lenient than http-parser somewhere.
// Seed corpus: http1_corpus/ (replayed as a unit test in every build).
#include <http_parser.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/assert.h"
#include "weft/http1/codec.h"

namespace weft::http1 {
namespace {

struct Event {
  ParseState state = ParseState::kNeedMore;
  std::size_t consumed = 0;  // total over the calls of this message part
  ParseError error;
  std::string summary;  // the serialized head, or the decoded body + serialized trailers
  bool operator==(const Event&) const = default;
};

// Feeds `in` cut at `cuts` (sorted offsets) to a reader: fn(span) -> FeedResult.
template <typename Fn>
Event feedSplit(std::string_view in, const std::vector<std::size_t>& cuts, std::size_t& pos,
                Fn&& fn) {
  Event e;
  std::size_t at = pos;
  while (true) {
    // The piece runs from `at` to the next cut after it (or the end).
    const auto next = std::upper_bound(cuts.begin(), cuts.end(), at);
    const std::size_t end = next == cuts.end() ? in.size() : *next;
    const FeedResult r = fn(in.substr(at, end - at));
    e.state = r.state;
    e.error = r.error;
    e.consumed += r.consumed;
    WEFT_RELEASE_ASSERT(r.consumed <= end - at, "consumed more than given");
    if (r.state == ParseState::kNeedMore) {
      WEFT_RELEASE_ASSERT(r.consumed == end - at, "kNeedMore left bytes unconsumed");
    }
    at += r.consumed;
    if (r.state != ParseState::kNeedMore || end == in.size()) break;
  }
  pos = at;
  // After an error the connection is closed: how much was buffered before it is not meaningful.
  if (e.state == ParseState::kError) e.consumed = 0;
  return e;
}

constexpr int kMaxMessages = 4;

// A pipelined request stream: head, body (Content-Length skipped, chunked decoded), next head.
std::vector<Event> requestStream(std::string_view in, const std::vector<std::size_t>& cuts) {
  std::vector<Event> events;
  std::size_t pos = 0;
  RequestHeadParser parser;
  for (int m = 0; m < kMaxMessages && pos < in.size(); ++m) {
    parser.reset();
    Event e = feedSplit(in, cuts, pos, [&](std::string_view s) { return parser.feed(s); });
    if (e.state == ParseState::kDone) e.summary = serialize(parser.head());
    events.push_back(e);
    if (e.state != ParseState::kDone) break;
    const BodyFraming f = parser.head().framing;
    if (f.kind == BodyFraming::Kind::kContentLength) {
      pos += static_cast<std::size_t>(std::min<uint64_t>(f.length, in.size() - pos));
    } else if (f.kind == BodyFraming::Kind::kChunked) {
      ChunkedDecoder d;
      std::string body;
      Event b = feedSplit(in, cuts, pos, [&](std::string_view s) { return d.feed(s, body); });
      b.summary = body + "|" + lastChunk(d.trailers());
      events.push_back(b);
      if (b.state != ParseState::kDone) break;
    } else if (f.kind == BodyFraming::Kind::kUpgrade) {
      break;
    }
  }
  return events;
}

std::vector<Event> responseHead(std::string_view in, std::string_view method,
                                const std::vector<std::size_t>& cuts) {
  ResponseHeadParser parser(method);
  std::size_t pos = 0;
  Event e = feedSplit(in, cuts, pos, [&](std::string_view s) { return parser.feed(s); });
  if (e.state == ParseState::kDone) e.summary = serialize(parser.head());
  return {e};
}

std::vector<Event> chunkedBody(std::string_view in, const std::vector<std::size_t>& cuts) {
  ChunkedDecoder d;
  std::string body;
  std::size_t pos = 0;
  Event e = feedSplit(in, cuts, pos, [&](std::string_view s) { return d.feed(s, body); });
  e.summary = body + "|" + lastChunk(d.trailers());
  if (e.state == ParseState::kDone) {
    // Re-encoded, it decodes to the same body and trailers.
    const std::string wire =
        (body.empty() ? std::string() : encodeChunk(body)) + lastChunk(d.trailers());
    ChunkedDecoder again;
    std::string body2;
    const FeedResult r = again.feed(wire, body2);
    WEFT_RELEASE_ASSERT(r.state == ParseState::kDone && r.consumed == wire.size(),
                        "re-encoded body");
    WEFT_RELEASE_ASSERT(body2 == body && again.trailers() == d.trailers(),
                        "re-encoded body differs");
  }
  return {e};
}

void checkRoundTripRequest(std::string_view in) {
  RequestHeadParser p;
  const FeedResult r = p.feed(in);
  if (r.state != ParseState::kDone) return;
  const RequestHead head = p.head();
  const std::string wire = serialize(head);
  RequestHeadParser q;
  const FeedResult r2 = q.feed(wire);
  WEFT_RELEASE_ASSERT(r2.state == ParseState::kDone && r2.consumed == wire.size(), "re-parse");
  WEFT_RELEASE_ASSERT(q.head() == head, "request round trip changed the head");
}

void checkRoundTripResponse(std::string_view in, std::string_view method) {
  ResponseHeadParser p(method);
  const FeedResult r = p.feed(in);
  if (r.state != ParseState::kDone) return;
  const ResponseHead head = p.head();
  const std::string wire = serialize(head);
  ResponseHeadParser q(method);
  const FeedResult r2 = q.feed(wire);
  WEFT_RELEASE_ASSERT(r2.state == ParseState::kDone && r2.consumed == wire.size(), "re-parse");
  WEFT_RELEASE_ASSERT(q.head() == head, "response round trip changed the head");
  WEFT_RELEASE_ASSERT(head.status >= 100 && head.status <= 599, "status range");
}

// ---------------------------------------------------------------------------------------------
// Differential check against http-parser 2.9.

struct HpState {
  bool headers_complete = false;
};

int hpHeadersComplete(http_parser* p) {
  static_cast<HpState*>(p->data)->headers_complete = true;
  http_parser_pause(p, 1);
  return 0;
}

void checkAgainstHttpParser(std::string_view in) {
  RequestHeadParser ours;
  const FeedResult r = ours.feed(in);
  if (r.state != ParseState::kDone) return;
  const RequestHead& head = ours.head();
  http_parser hp{};
  http_parser_settings settings{};
  http_parser_settings_init(&settings);
  settings.on_headers_complete = hpHeadersComplete;
  HpState state;
  http_parser_init(&hp, HTTP_REQUEST);
  hp.data = &state;
  http_parser_execute(&hp, &settings, in.data(), r.consumed);
  const auto err = HTTP_PARSER_ERRNO(&hp);
  // http-parser knows a fixed list of methods; extension methods are a deliberate difference.
  if (err == HPE_INVALID_METHOD) return;
  // http-parser bug (found by this target): a field whose *name* merely starts with
  // "Transfer-Encoding" ("Transfer-EncodingX: x") is read as Transfer-Encoding: beside a
  // Content-Length it is refused, after "Transfer-Encoding: chunked" it clears chunked framing.
  // Such heads are a known disagreement (docs/dev/http1-parser.md), not one to chase.
  for (const Header& h : head.headers.all()) {
    if (h.name.size() > 17 && std::equal(h.name.begin(), h.name.begin() + 17, "transfer-encoding",
                                         [](char a, char b) { return (a | 0x20) == b; })) {
      return;
    }
  }
  WEFT_RELEASE_ASSERT(err == HPE_OK || err == HPE_PAUSED, "http-parser rejects a head we accept");
  WEFT_RELEASE_ASSERT(state.headers_complete, "http-parser did not finish a head we accept");
  WEFT_RELEASE_ASSERT(head.method == http_method_str(static_cast<http_method>(hp.method)),
                      "method differs");
  switch (head.framing.kind) {
    case BodyFraming::Kind::kChunked:
      WEFT_RELEASE_ASSERT((hp.flags & F_CHUNKED) != 0, "http-parser does not see chunked");
      break;
    case BodyFraming::Kind::kContentLength:
      WEFT_RELEASE_ASSERT((hp.flags & F_CHUNKED) == 0 && hp.content_length == head.framing.length,
                          "http-parser sees another Content-Length");
      break;
    case BodyFraming::Kind::kNone:
      WEFT_RELEASE_ASSERT((hp.flags & F_CHUNKED) == 0, "http-parser sees a body framing");
      break;
    case BodyFraming::Kind::kCloseDelimited:
    case BodyFraming::Kind::kUpgrade:
      break;
  }
}

}  // namespace
}  // namespace weft::http1

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer looks for.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::http1;
  if (size > 16 * 1024) return 0;  // keeps byte-at-a-time runs fast; limits are tested elsewhere
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  std::vector<std::size_t> none;
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < size; ++i) every.push_back(i);
  // Splits derived from the input itself, so the fuzzer can steer them.
  std::vector<std::size_t> some;
  for (std::size_t i = 0; i < std::min<std::size_t>(size, 8); ++i) {
    if (size > 1) some.push_back(1 + data[i] * (size - 1) / 256);
  }
  std::sort(some.begin(), some.end());
  some.erase(std::unique(some.begin(), some.end()), some.end());

  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "CONNECT", "POST"};
  const std::string_view method = kMethods[size % 4];

  const auto req = requestStream(in, none);
  WEFT_RELEASE_ASSERT(requestStream(in, every) == req,
                      "request: byte-at-a-time differs from whole");
  WEFT_RELEASE_ASSERT(requestStream(in, some) == req, "request: split differs from whole");
  const auto rsp = responseHead(in, method, none);
  WEFT_RELEASE_ASSERT(responseHead(in, method, every) == rsp, "response: byte-at-a-time differs");
  WEFT_RELEASE_ASSERT(responseHead(in, method, some) == rsp, "response: split differs");
  const auto chunked = chunkedBody(in, none);
  WEFT_RELEASE_ASSERT(chunkedBody(in, every) == chunked, "chunked: byte-at-a-time differs");
  WEFT_RELEASE_ASSERT(chunkedBody(in, some) == chunked, "chunked: split differs");

  checkRoundTripRequest(in);
  checkRoundTripResponse(in, method);
  checkAgainstHttpParser(in);
  return 0;
}
