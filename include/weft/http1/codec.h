// HTTP/1.x message heads and chunked bodies: a strict, incremental codec with no I/O.
//
// Why hand-written and not nodejs/http-parser: docs/dev/http1-parser.md (the evidence, and the
// list of request-smuggling vectors every parser here rejects, each with a named test row).
//
// Contract, for every parser in this file:
//  - Bytes are untrusted. Nothing here asserts on their content, reads past the span it is given,
//    or allocates more than the configured limits (plus one line being assembled).
//  - feed() may be called with any split of the stream, down to one byte at a time; the outcome
//    (kDone with the same head and the same total consumed count, or kError with the same status
//    and kind) never depends on the split.
//  - kNeedMore: every byte given was consumed (buffered); call feed() again with the next bytes.
//    kDone: `consumed` bytes of *this call's* input belonged to the message part; the rest belongs
//    to what follows (a body, or the next pipelined request). kError: sticky; the connection
//    must be answered with `error.status` (or 502 upstream, see ParseError) and closed.
//  - After kDone or kError, feed() returns the same outcome with consumed = 0 until reset().
// One parser serves one message at a time on one connection; it is not thread-safe (a worker
// owns its connections, docs/dev/threading.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::http1 {

enum class Version { kHttp10, kHttp11 };

// RFC 9112 §3.2.
enum class TargetForm {
  kOrigin,     // "/path?query"
  kAbsolute,   // "http://authority/path" (proxy requests)
  kAuthority,  // "host:port", CONNECT only
  kAsterisk,   // "*", OPTIONS only
};

// One field line, in the order received. `name` as sent (case kept, so a re-emitted head is what
// the peer sent); `value` without its leading and trailing whitespace.
struct Header {
  std::string name;
  std::string value;
  bool operator==(const Header&) const = default;
};

// An ordered field section with case-insensitive lookup.
class Headers {
 public:
  void add(std::string name, std::string value);
  // The first value of `name` (compared case-insensitively), or nullopt.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view name) const;
  [[nodiscard]] std::size_t count(std::string_view name) const;
  [[nodiscard]] const std::vector<Header>& all() const { return fields_; }
  // Moves the fields out (the proxy forwards them without copying); leaves this empty.
  std::vector<Header> release() { return std::move(fields_); }
  [[nodiscard]] std::size_t size() const { return fields_.size(); }
  bool operator==(const Headers&) const = default;

 private:
  std::vector<Header> fields_;
};

// How the message body is delimited (RFC 9112 §6.3), derived from the head.
struct BodyFraming {
  enum class Kind {
    kNone,            // no body: a request without Content-Length/Transfer-Encoding, a response
                      // to HEAD, a 1xx/204/304 response
    kContentLength,   // exactly `length` bytes follow (may be 0)
    kChunked,         // Transfer-Encoding: chunked; decode with ChunkedDecoder
    kCloseDelimited,  // responses only: the body runs to connection close
    kUpgrade,         // the connection stops being HTTP/1 after this head: a CONNECT request,
                      // a 2xx response to CONNECT, a 101 response. Bytes pass through as TCP.
  };
  Kind kind = Kind::kNone;
  uint64_t length = 0;  // kContentLength only
  bool operator==(const BodyFraming&) const = default;
};

struct RequestHead {
  std::string method;  // a token, case-sensitive ("get" is not "GET")
  std::string target;  // as sent
  TargetForm form = TargetForm::kOrigin;
  Version version = Version::kHttp11;
  Headers headers;
  // The request's authority: the target's for absolute and authority form, else the Host field's
  // value (empty when an HTTP/1.0 request has no Host).
  std::string authority;
  BodyFraming framing;
  // The connection may carry another request after this one (RFC 9112 §9.3).
  bool keep_alive = true;
  // "Expect: 100-continue" on an HTTP/1.1 request (RFC 9110 §10.1.1: ignored on HTTP/1.0).
  bool expect_continue = false;
  // The Upgrade field's value when Connection names "upgrade" (e.g. "websocket"), else empty.
  // The upgrade happens only if the response is 101.
  std::string upgrade;
  bool operator==(const RequestHead&) const = default;
};

struct ResponseHead {
  Version version = Version::kHttp11;
  int status = 200;    // 100..599
  std::string reason;  // may be empty
  Headers headers;
  BodyFraming framing;
  bool keep_alive = true;
  bool operator==(const ResponseHead&) const = default;
};

struct Limits {
  // Request line / status line, without its CRLF. Over it: 414 (request), 502 (response).
  std::size_t max_start_line = 8 * 1024;
  // All field lines with their CRLFs, not counting the start line. Over it: 431.
  std::size_t max_header_bytes = 64 * 1024;
  // Field lines. Over it: 431.
  std::size_t max_headers = 100;
};

struct ParseError {
  // The status the proxy answers the downstream with: 400, 414, 417, 431, 501 or 505 for request
  // parsing. Response parsing always reports 502 (the upstream is at fault; the client gets a
  // Bad Gateway whatever the defect was), and ChunkedDecoder reports 400: callers decoding a
  // response body map that to 502.
  int status = 400;
  // Stable snake_case name of the defect, e.g. "duplicate_content_length": the `error` label of
  // the proxy's *_errors_total metrics and the text of the weft-proxy-error header.
  std::string_view kind;
  bool operator==(const ParseError&) const = default;
};

enum class ParseState { kNeedMore, kDone, kError };

struct FeedResult {
  ParseState state = ParseState::kNeedMore;
  std::size_t consumed = 0;  // of this call's input
  ParseError error;          // kError only
};

// Shared machinery of the two head parsers; use RequestHeadParser / ResponseHeadParser.
class HeadParserBase {
 public:
  explicit HeadParserBase(Limits limits) : limits_(limits) {}
  [[nodiscard]] const Limits& limits() const { return limits_; }

 protected:
  FeedResult feedLines(std::string_view in, bool request);
  void resetBase();
  virtual ~HeadParserBase() = default;
  HeadParserBase(const HeadParserBase&) = default;
  HeadParserBase& operator=(const HeadParserBase&) = default;
  // Called once per complete line (CRLF stripped, content not yet validated). Returns an error
  // status/kind, or nullopt to continue.
  virtual std::optional<ParseError> onStartLine(std::string_view line) = 0;
  virtual std::optional<ParseError> onHeadersDone() = 0;

  Headers headers_;

 private:
  std::optional<ParseError> onLine(std::string_view line, bool request);

  Limits limits_;
  std::string line_;
  bool start_line_done_ = false;
  std::size_t header_bytes_ = 0;
  ParseState state_ = ParseState::kNeedMore;
  ParseError error_;
};

class RequestHeadParser final : public HeadParserBase {
 public:
  explicit RequestHeadParser(Limits limits = {}) : HeadParserBase(limits) {}
  FeedResult feed(std::string_view in) { return feedLines(in, true); }
  // The head; valid only after kDone. Moving it out is allowed.
  RequestHead& head() { return head_; }
  // Ready for the next request on the connection (same limits).
  void reset();

 private:
  std::optional<ParseError> onStartLine(std::string_view line) override;
  std::optional<ParseError> onHeadersDone() override;
  RequestHead head_;
};

class ResponseHeadParser final : public HeadParserBase {
 public:
  // `request_method` is the method of the request this response answers: a response to HEAD has
  // no body whatever its fields say, and a 2xx response to CONNECT starts a tunnel.
  explicit ResponseHeadParser(std::string_view request_method, Limits limits = {})
      : HeadParserBase(limits), request_method_(request_method) {}
  FeedResult feed(std::string_view in) { return feedLines(in, false); }
  ResponseHead& head() { return head_; }
  // Ready for the next response: after a 1xx (other than 101) the final response follows on the
  // same request, so `request_method` is kept unless a new one is given.
  void reset();
  void reset(std::string_view request_method);

 private:
  std::optional<ParseError> onStartLine(std::string_view line) override;
  std::optional<ParseError> onHeadersDone() override;
  std::string request_method_;
  ResponseHead head_;
};

struct ChunkedLimits {
  // A chunk-size line with its extensions, without CRLF.
  std::size_t max_chunk_line = 4096;
  // The trailer section: bytes (field lines with CRLFs) and field count.
  std::size_t max_trailer_bytes = 16 * 1024;
  std::size_t max_trailers = 32;
};

// Decodes a chunked body (RFC 9112 §7.1) incrementally. Strict: chunk-size is 1..16 HEXDIGs
// with no sign, prefix or whitespace; extensions are ";name[=token|quoted-string]" with no
// whitespace; every line ends in CRLF, including the one after each chunk's data; trailers are
// field lines validated as header fields are.
class ChunkedDecoder {
 public:
  explicit ChunkedDecoder(ChunkedLimits limits = {}) : limits_(limits) {}
  // Appends the decoded data of `in` to `body`. kDone once the last chunk and trailer section
  // ended; `consumed` then excludes the bytes after the body.
  FeedResult feed(std::string_view in, std::string& body);
  [[nodiscard]] const Headers& trailers() const { return trailers_; }
  void reset();

 private:
  enum class Phase { kSizeLine, kData, kDataCr, kDataLf, kTrailer, kDone, kError };
  std::optional<ParseError> onSizeLine(std::string_view line);
  std::optional<ParseError> onTrailerLine(std::string_view line);

  ChunkedLimits limits_;
  Phase phase_ = Phase::kSizeLine;
  std::string line_;
  uint64_t remaining_ = 0;
  std::size_t trailer_bytes_ = 0;
  Headers trailers_;
  ParseError error_;
};

// Normalized wire forms: start line, one "name: value\r\n" per header in order, "\r\n".
// Parsing the output gives back an equal head (tested: serializer round trips).
std::string serialize(const RequestHead& head);
std::string serialize(const ResponseHead& head);
// One chunk ("<hex size>\r\n<data>\r\n"); empty data is not allowed here, use lastChunk().
std::string encodeChunk(std::string_view data);
// "0\r\n", the trailers, "\r\n".
std::string lastChunk(const Headers& trailers = {});

std::string_view versionText(Version v);  // "HTTP/1.0" / "HTTP/1.1"

}  // namespace weft::http1
