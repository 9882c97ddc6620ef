// Protocol detection (contract: include/weft/detect/detect.h). Owns only the byte-level decision:
// no I/O, no clock, no metrics, no allocation except to fill the answer it returns. Every parser
// re-reads the prefix from its start on each call; prefixes are at most kMaxDetectBytes, and the
// incremental state this avoids would have to live in the proxy's connection.
#include "weft/detect/detect.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <string_view>

namespace weft::detect {
namespace {

// ---------------------------------------------------------------------------------------------
// TLS

constexpr uint8_t kContentTypeHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr std::size_t kRecordHeaderSize = 5;
constexpr std::size_t kHandshakeHeaderSize = 4;
constexpr uint32_t kMaxRecordLength = 16384;  // RFC 8446 §5.1: 2^14, for TLSPlaintext
// The smallest ClientHello body: legacy_version(2) random(32) session_id<0..32>(1)
// cipher_suites<2..2^16-2>(2+2) legacy_compression_methods<1..2^8-1>(1+1), no extensions.
constexpr uint32_t kMinClientHelloBody = 2 + 32 + 1 + 2 + 2 + 1 + 1;
// The largest, every vector at its maximum; it only bounds a fragmented message, whose end is not
// in the first record (an unfragmented one is bounded by its record).
constexpr uint32_t kMaxClientHelloBody = 2 + 32 + (1 + 32) + (2 + 65534) + (1 + 255) + (2 + 65535);
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint8_t kNameTypeHostName = 0;
constexpr std::size_t kMaxHostName = 255;  // as BoringSSL's TLSEXT_MAXLEN_host_name

// A cursor over one length-delimited TLS structure of which only a prefix may have arrived.
// `limit` is the structure's declared length; `avail` the bytes of it present so far (never more
// than `limit`). Every read first checks the declared length (overrunning it is kNo), then the
// bytes present (missing ones are kNeedMore), so a contradiction is reported as soon as the bytes
// that prove it arrive, and a structure that arrived whole and consistent reads as kYes.
class Reader {
 public:
  Reader() = default;
  Reader(std::span<const uint8_t> avail, std::size_t limit)
      : avail_(avail.first(std::min(avail.size(), limit))), limit_(limit) {}

  [[nodiscard]] std::size_t remaining() const { return limit_ - pos_; }
  [[nodiscard]] bool done() const { return pos_ == limit_; }
  // This structure's bytes present so far.
  [[nodiscard]] std::span<const uint8_t> available() const { return avail_; }

  // A `width`-byte big-endian integer that must lie in [min, max]. With only some of its bytes
  // present, the value is known to lie between "missing bytes all 0x00" and "all 0xff"; kNo as
  // soon as that interval misses [min, max].
  [[nodiscard]] ParseStatus readInt(std::size_t width, uint32_t min, uint32_t max, uint32_t* out) {
    if (width > remaining()) return ParseStatus::kNo;
    const std::size_t present = pos_ < avail_.size() ? std::min(width, avail_.size() - pos_) : 0;
    uint64_t lo = 0;
    uint64_t hi = 0;
    for (std::size_t i = 0; i < width; ++i) {
      lo = (lo << 8) | (i < present ? avail_[pos_ + i] : 0x00);
      hi = (hi << 8) | (i < present ? avail_[pos_ + i] : 0xff);
    }
    if (lo > max || hi < min) return ParseStatus::kNo;
    if (present < width) return ParseStatus::kNeedMore;
    pos_ += width;
    *out = static_cast<uint32_t>(lo);
    return ParseStatus::kYes;
  }

  // A vector: a `width`-byte length in [min, max] followed by that many bytes, which must fit in
  // what remains of this structure. `body` reads the vector; this reader moves past it, so the
  // caller must finish `body` (kYes) before reading on.
  [[nodiscard]] ParseStatus readVector(std::size_t width, uint32_t min, uint32_t max,
                                       Reader* body) {
    if (width > remaining()) return ParseStatus::kNo;
    const std::size_t room = remaining() - width;
    uint32_t len = 0;
    ParseStatus s =
        readInt(width, min, static_cast<uint32_t>(std::min<std::size_t>(max, room)), &len);
    if (s != ParseStatus::kYes) return s;
    const std::size_t start = std::min(pos_, avail_.size());
    *body = Reader(avail_.subspan(start), len);
    pos_ += len;
    return ParseStatus::kYes;
  }

  // A vector that must fill the rest of this structure exactly (and so be >= min bytes long).
  [[nodiscard]] ParseStatus readVectorFillingRest(std::size_t width, uint32_t min, uint32_t max,
                                                  Reader* body) {
    if (width > remaining()) return ParseStatus::kNo;
    const std::size_t rest = remaining() - width;
    if (rest < min || rest > max) return ParseStatus::kNo;
    const auto exact = static_cast<uint32_t>(rest);
    return readVector(width, exact, exact, body);
  }

  // Skips `n` bytes; kNeedMore until they are all present.
  [[nodiscard]] ParseStatus skip(std::size_t n) {
    if (n > remaining()) return ParseStatus::kNo;
    if (pos_ + n > avail_.size()) return ParseStatus::kNeedMore;
    pos_ += n;
    return ParseStatus::kYes;
  }

  [[nodiscard]] ParseStatus skipRest() { return skip(remaining()); }

 private:
  std::span<const uint8_t> avail_;
  std::size_t limit_ = 0;
  std::size_t pos_ = 0;
};

#define WEFT_DETECT_TRY(expr)               \
  do {                                      \
    const ParseStatus s_ = (expr);          \
    if (s_ != ParseStatus::kYes) return s_; \
  } while (0)

// What a well-formed ClientHello told us, as views into the input: strings are built only once the
// whole message has been accepted.
struct HelloViews {
  std::span<const uint8_t> sni;
  std::span<const uint8_t> alpn_list;  // validated ProtocolNameList contents
};

bool isHostNameByte(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

// RFC 6066 §3. Exactly one host_name entry, as BoringSSL and OpenSSL 1.1+ require in practice: the
// list was meant to be extensible, but other name types cannot be skipped by an old parser.
ParseStatus parseServerName(Reader& ext, std::span<const uint8_t>* host) {
  Reader list;
  // name_type(1) + HostName length(2) + at least one byte.
  WEFT_DETECT_TRY(ext.readVectorFillingRest(2, 1 + 2 + 1, 1 + 2 + kMaxHostName, &list));
  uint32_t name_type = 0;
  WEFT_DETECT_TRY(list.readInt(1, kNameTypeHostName, kNameTypeHostName, &name_type));
  Reader name;
  WEFT_DETECT_TRY(list.readVectorFillingRest(2, 1, kMaxHostName, &name));
  // Check the bytes already here, so a bad one is rejected before the rest of the name arrives.
  const auto present = name.available();
  if (!std::all_of(present.begin(), present.end(), isHostNameByte)) return ParseStatus::kNo;
  WEFT_DETECT_TRY(name.skipRest());
  *host = present;
  return ParseStatus::kYes;
}

// RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, ProtocolName opaque<1..2^8-1>.
ParseStatus parseAlpn(Reader& ext, std::span<const uint8_t>* names) {
  Reader list;
  WEFT_DETECT_TRY(ext.readVectorFillingRest(2, 2, 0xffff, &list));
  const auto present = list.available();
  while (!list.done()) {
    Reader name;
    WEFT_DETECT_TRY(list.readVector(1, 1, 0xff, &name));
    WEFT_DETECT_TRY(name.skipRest());
  }
  *names = present;
  return ParseStatus::kYes;
}

ParseStatus parseExtensions(Reader& exts, HelloViews* views) {
  // 8 KiB on the stack, cleared once per call: linear in the number of extensions however many
  // an attacker packs into 16 KiB (a list compared pairwise would be quadratic).
  std::bitset<0x10000> seen;
  while (!exts.done()) {
    uint32_t type = 0;
    WEFT_DETECT_TRY(exts.readInt(2, 0, 0xffff, &type));
    // RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type".
    if (seen.test(type)) return ParseStatus::kNo;
    seen.set(type);
    Reader body;
    WEFT_DETECT_TRY(exts.readVector(2, 0, 0xffff, &body));
    switch (type) {
      case kExtServerName:
        WEFT_DETECT_TRY(parseServerName(body, &views->sni));
        break;
      case kExtAlpn:
        WEFT_DETECT_TRY(parseAlpn(body, &views->alpn_list));
        break;
      default:
        WEFT_DETECT_TRY(body.skipRest());
        break;
    }
  }
  return ParseStatus::kYes;
}

// RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2, whose ClientHello has the same layout).
ParseStatus parseClientHelloBody(Reader& body, HelloViews* views) {
  uint32_t major = 0;
  uint32_t minor = 0;
  WEFT_DETECT_TRY(body.readInt(1, 0x03, 0x03, &major));
  WEFT_DETECT_TRY(body.readInt(1, 0x00, 0x04, &minor));
  WEFT_DETECT_TRY(body.skip(32));  // random
  Reader session_id;
  WEFT_DETECT_TRY(body.readVector(1, 0, 32, &session_id));
  WEFT_DETECT_TRY(session_id.skipRest());
  Reader cipher_suites;
  WEFT_DETECT_TRY(body.readVector(2, 2, 0xfffe, &cipher_suites));
  if (cipher_suites.remaining() % 2 != 0) return ParseStatus::kNo;
  WEFT_DETECT_TRY(cipher_suites.skipRest());
  Reader compression_methods;
  WEFT_DETECT_TRY(body.readVector(1, 1, 0xff, &compression_methods));
  WEFT_DETECT_TRY(compression_methods.skipRest());
  // Extensions are optional (SSL 3.0, and TLS 1.0-1.2 without any); when present the block must
  // fill the message exactly.
  if (body.done()) return ParseStatus::kYes;
  Reader extensions;
  WEFT_DETECT_TRY(body.readVectorFillingRest(2, 0, 0xffff, &extensions));
  return parseExtensions(extensions, views);
}

struct TlsHeaders {
  uint32_t record_length = 0;
  uint32_t handshake_length = 0;
};

// The record header and the handshake header in front of the ClientHello body.
ParseStatus parseTlsHeaders(std::span<const uint8_t> bytes, TlsHeaders* out) {
  Reader r(bytes, kRecordHeaderSize + kHandshakeHeaderSize);
  uint32_t v = 0;
  WEFT_DETECT_TRY(r.readInt(1, kContentTypeHandshake, kContentTypeHandshake, &v));
  WEFT_DETECT_TRY(r.readInt(1, 0x03, 0x03, &v));  // legacy_record_version 3.0 .. 3.4
  WEFT_DETECT_TRY(r.readInt(1, 0x00, 0x04, &v));
  // At least the handshake header: real stacks never split it, and without the message type
  // nothing would show that this is a ClientHello. Zero-length handshake fragments are banned.
  WEFT_DETECT_TRY(r.readInt(2, kHandshakeHeaderSize, kMaxRecordLength, &out->record_length));
  WEFT_DETECT_TRY(r.readInt(1, kHandshakeClientHello, kHandshakeClientHello, &v));
  // The first flight is the ClientHello alone, so nothing may follow it in its record: the message
  // fills the rest of the record exactly, or runs on into the next (fragmented).
  const uint32_t fills_record = out->record_length - static_cast<uint32_t>(kHandshakeHeaderSize);
  WEFT_DETECT_TRY(r.readInt(3, std::max(kMinClientHelloBody, fills_record), kMaxClientHelloBody,
                            &out->handshake_length));
  return ParseStatus::kYes;
}

bool isFragmented(const TlsHeaders& h) {
  return kHandshakeHeaderSize + h.handshake_length > h.record_length;
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// HTTP/1

// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_"
//                          / "`" / "|" / "~" / DIGIT / ALPHA
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<uint8_t>(c)] = true;
  return t;
}();

bool isTargetByte(uint8_t c) { return c >= 0x21 && c <= 0x7e; }

constexpr std::string_view kHttpVersionPrefix = "HTTP/1.";

std::string toString(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return {};
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

std::string_view protocolName(Protocol p) {
  switch (p) {
    case Protocol::kTls:
      return "tls";
    case Protocol::kHttp2:
      return "http2";
    case Protocol::kHttp1:
      return "http1";
    case Protocol::kOpaque:
      return "opaque";
  }
  // Only reachable through a cast of an out-of-range integer; label it as what the proxy does.
  return "opaque";
}

ParseStatus parseClientHello(std::span<const uint8_t> bytes, ClientHello* out) {
  TlsHeaders headers;
  WEFT_DETECT_TRY(parseTlsHeaders(bytes, &headers));
  const std::size_t headers_size = kRecordHeaderSize + kHandshakeHeaderSize;
  // Of the ClientHello body, only what the first record carries is looked at.
  const std::size_t in_record = headers.record_length - kHandshakeHeaderSize;
  const auto after_headers = bytes.subspan(headers_size);
  Reader body(after_headers.first(std::min(after_headers.size(), in_record)),
              headers.handshake_length);
  HelloViews views;
  const ParseStatus s = parseClientHelloBody(body, &views);
  if (s == ParseStatus::kNo) return s;
  if (isFragmented(headers)) {
    // The body runs past the record, so the parse stopped at the record's end (kNeedMore): the
    // record header plus a consistent start of a ClientHello is proof enough.
    if (bytes.size() < kRecordHeaderSize + headers.record_length) return ParseStatus::kNeedMore;
    if (out != nullptr) *out = ClientHello{};
    return ParseStatus::kYes;
  }
  if (s != ParseStatus::kYes) return s;
  if (out != nullptr) {
    out->sni = toString(views.sni);
    out->alpn.clear();
    // Already validated by parseAlpn; the bounds checks only guard against a future edit.
    std::span<const uint8_t> list = views.alpn_list;
    while (!list.empty() && std::size_t{list[0]} + 1 <= list.size()) {
      out->alpn.push_back(toString(list.subspan(1, list[0])));
      list = list.subspan(std::size_t{list[0]} + 1);
    }
  }
  return ParseStatus::kYes;
}

ParseStatus matchHttp2Preface(std::span<const uint8_t> bytes) {
  const std::size_t n = std::min(bytes.size(), kHttp2Preface.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != static_cast<uint8_t>(kHttp2Preface[i])) return ParseStatus::kNo;
  }
  return n == kHttp2Preface.size() ? ParseStatus::kYes : ParseStatus::kNeedMore;
}

ParseStatus parseRequestLine(std::span<const uint8_t> bytes, RequestLine* out) {
  enum class Part { kMethod, kTarget, kVersion, kLineEnd, kLf };
  Part part = Part::kMethod;
  std::size_t method_end = 0;
  std::size_t target_end = 0;
  std::size_t version_start = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const uint8_t c = bytes[i];
    switch (part) {
      case Part::kMethod:
        if (kTchar[c]) {
          if (i + 1 > kMaxMethodLength) return ParseStatus::kNo;
        } else if (c == ' ' && i > 0) {
          method_end = i;
          part = Part::kTarget;
        } else {
          return ParseStatus::kNo;
        }
        break;
      case Part::kTarget:
        if (isTargetByte(c)) break;
        if (c != ' ' || i == method_end + 1) return ParseStatus::kNo;
        target_end = i;
        version_start = i + 1;
        part = Part::kVersion;
        break;
      case Part::kVersion: {
        const std::size_t k = i - version_start;
        if (k < kHttpVersionPrefix.size()) {
          if (c != static_cast<uint8_t>(kHttpVersionPrefix[k])) return ParseStatus::kNo;
        } else {
          if (c != '0' && c != '1') return ParseStatus::kNo;
          part = Part::kLineEnd;
        }
        break;
      }
      case Part::kLineEnd:
        if (c == '\r') {
          part = Part::kLf;
          break;
        }
        [[fallthrough]];
      case Part::kLf:
        if (c != '\n') return ParseStatus::kNo;
        if (out != nullptr) {
          out->method = toString(bytes.first(method_end));
          out->target = toString(bytes.subspan(method_end + 1, target_end - method_end - 1));
          out->version_minor = bytes[version_start + kHttpVersionPrefix.size()] - '0';
        }
        return ParseStatus::kYes;
    }
    // The fewest bytes that could still complete the line (CRLF not counted): refuse a line as
    // soon as it can no longer end within kMaxRequestLine, not only once it has overrun it.
    std::size_t still_needed = 0;
    switch (part) {
      case Part::kMethod:
        still_needed = std::string_view(" / HTTP/1.1").size();
        break;
      case Part::kTarget:
        still_needed = std::string_view(" HTTP/1.1").size() + (i == method_end ? 1 : 0);
        break;
      case Part::kVersion:
        still_needed = kHttpVersionPrefix.size() + 1 - (i + 1 - version_start);
        break;
      case Part::kLineEnd:
      case Part::kLf:
        // The line's content is complete, and fitted (the check on its last byte saw to that);
        // the line end itself does not count.
        continue;
    }
    if (i + 1 + still_needed > kMaxRequestLine) return ParseStatus::kNo;
  }
  return ParseStatus::kNeedMore;
}

std::optional<Detection> detect(std::span<const uint8_t> prefix) {
  if (prefix.empty()) return std::nullopt;
  // A candidate still reading blocks every later one; it cannot actually bite past
  // kMaxDetectBytes (a first record ends by then, and the other two much sooner), but the bound
  // is the caller's contract, so it is kept here too.
  auto undecided = [&]() -> std::optional<Detection> {
    if (prefix.size() >= kMaxDetectBytes) return Detection{};
    return std::nullopt;
  };

  Detection d;
  ClientHello hello;
  switch (parseClientHello(prefix, &hello)) {
    case ParseStatus::kYes: {
      d.protocol = Protocol::kTls;
      TlsHeaders headers;
      // kYes above means the headers parsed; this only tells whether the message was whole.
      if (parseTlsHeaders(prefix, &headers) == ParseStatus::kYes && !isFragmented(headers)) {
        d.client_hello = std::move(hello);
      }
      return d;
    }
    case ParseStatus::kNeedMore:
      return undecided();
    case ParseStatus::kNo:
      break;
  }

  switch (matchHttp2Preface(prefix)) {
    case ParseStatus::kYes:
      d.protocol = Protocol::kHttp2;
      return d;
    case ParseStatus::kNeedMore:
      return undecided();
    case ParseStatus::kNo:
      break;
  }

  RequestLine line;
  switch (parseRequestLine(prefix, &line)) {
    case ParseStatus::kYes:
      d.protocol = Protocol::kHttp1;
      d.request_line = std::move(line);
      return d;
    case ParseStatus::kNeedMore:
      return undecided();
    case ParseStatus::kNo:
      break;
  }

  d.protocol = startsWithHttpMethod(prefix) ? Protocol::kHttp1 : Protocol::kOpaque;
  return d;
}

bool startsWithHttpMethod(std::span<const uint8_t> bytes) {
  static constexpr std::string_view kMethods[] = {"GET ",     "HEAD ",    "POST ",  "PUT ",  "DELETE ",
                                                  "CONNECT ", "OPTIONS ", "TRACE ", "PATCH "};
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  for (auto m : kMethods) {
    if (text.starts_with(m)) return true;
  }
  return false;
}

#undef WEFT_DETECT_TRY

}  // namespace weft::detect
