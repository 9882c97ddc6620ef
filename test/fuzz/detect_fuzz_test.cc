// Fuzzes protocol detection (include/weft/detect/detect.h) with arbitrary first bytes.
//
// Beyond "no crash, no sanitizer report", it checks the properties the proxy relies on when it
// calls detect() after every read:
//  - monotonicity: a parser's kYes or kNo on a prefix, and detect()'s answer on a prefix, stay
//    the same (fields included) on the whole input;
//  - detect() follows the SPEC §2 order over the three parsers' statuses;
//  - what a kYes fills in satisfies the grammar it was accepted under;
//  - on a complete first record or request line, the answer matches a simple whole-input
//    reference parser;
//  - `out` is left alone unless the answer is kYes.
// Seed corpus: detect_corpus/ (replayed as a unit test in every build).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "weft/common/assert.h"
#include "weft/detect/detect.h"

namespace weft::detect {
namespace {

bool sameHello(const ClientHello& a, const ClientHello& b) {
  return a.sni == b.sni && a.alpn == b.alpn;
}

bool sameLine(const RequestLine& a, const RequestLine& b) {
  return a.method == b.method && a.target == b.target && a.version_minor == b.version_minor;
}

bool sameDetection(const Detection& a, const Detection& b) {
  if (a.protocol != b.protocol) return false;
  if (a.client_hello.has_value() != b.client_hello.has_value()) return false;
  if (a.client_hello && !sameHello(*a.client_hello, *b.client_hello)) return false;
  if (a.request_line.has_value() != b.request_line.has_value()) return false;
  if (a.request_line && !sameLine(*a.request_line, *b.request_line)) return false;
  return true;
}

struct Parsed {
  ParseStatus tls = ParseStatus::kNo;
  ParseStatus h2 = ParseStatus::kNo;
  ParseStatus h1 = ParseStatus::kNo;
  ClientHello hello;
  RequestLine line;
  std::optional<Detection> detection;
};

const std::string kSentinel = "untouched";

Parsed parseAll(std::span<const uint8_t> bytes) {
  Parsed p;
  p.hello.sni = kSentinel;
  p.line.method = kSentinel;
  p.tls = parseClientHello(bytes, &p.hello);
  p.h2 = matchHttp2Preface(bytes);
  p.h1 = parseRequestLine(bytes, &p.line);
  p.detection = detect(bytes);

  // A null `out` is allowed and changes nothing about the answer.
  WEFT_RELEASE_ASSERT(parseClientHello(bytes, nullptr) == p.tls, "null out changed TLS status");
  WEFT_RELEASE_ASSERT(parseRequestLine(bytes, nullptr) == p.h1, "null out changed HTTP/1 status");
  // `out` is written only on kYes.
  if (p.tls != ParseStatus::kYes) {
    WEFT_RELEASE_ASSERT(p.hello.sni == kSentinel && p.hello.alpn.empty(), "ClientHello written");
  }
  if (p.h1 != ParseStatus::kYes) {
    WEFT_RELEASE_ASSERT(p.line.method == kSentinel, "RequestLine written");
  }
  return p;
}

bool isHostNameByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool isTchar(char c) {
  static const std::string kSymbols = "!#$%&'*+-.^_`|~";
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         kSymbols.find(c) != std::string::npos;
}

void checkFields(std::span<const uint8_t> bytes, const Parsed& p) {
  if (p.tls == ParseStatus::kYes) {
    WEFT_RELEASE_ASSERT(bytes.size() >= 9 && bytes[0] == 0x16 && bytes[5] == 0x01,
                        "TLS kYes without record and handshake headers");
    WEFT_RELEASE_ASSERT(p.hello.sni.size() <= 255, "SNI too long");
    WEFT_RELEASE_ASSERT(std::all_of(p.hello.sni.begin(), p.hello.sni.end(), isHostNameByte),
                        "SNI byte outside the host name alphabet");
    for (const auto& name : p.hello.alpn) {
      WEFT_RELEASE_ASSERT(!name.empty() && name.size() <= 255, "ALPN name length");
    }
  }
  if (p.h1 == ParseStatus::kYes) {
    const auto& l = p.line;
    WEFT_RELEASE_ASSERT(!l.method.empty() && l.method.size() <= kMaxMethodLength, "method length");
    WEFT_RELEASE_ASSERT(std::all_of(l.method.begin(), l.method.end(), isTchar), "method token");
    WEFT_RELEASE_ASSERT(!l.target.empty(), "empty target");
    WEFT_RELEASE_ASSERT(std::all_of(l.target.begin(), l.target.end(),
                                    [](char c) { return c >= 0x21 && c <= 0x7e; }),
                        "target byte outside VCHAR");
    WEFT_RELEASE_ASSERT(l.version_minor == 0 || l.version_minor == 1, "version");
    // method SP target SP "HTTP/1.x" is the line without its terminator.
    WEFT_RELEASE_ASSERT(l.method.size() + l.target.size() + 10 <= kMaxRequestLine, "line length");
  }
}

// SPEC §2: the first candidate in order that is not kNo decides (kYes) or blocks (kNeedMore).
void checkOrder(std::span<const uint8_t> bytes, const Parsed& p) {
  if (bytes.empty()) {
    WEFT_RELEASE_ASSERT(!p.detection.has_value(), "empty prefix decided");
    return;
  }
  // All three kNo: a malformed request that starts with an HTTP method is still HTTP/1.
  std::optional<Protocol> expected = startsWithHttpMethod(bytes) ? Protocol::kHttp1 : Protocol::kOpaque;
  bool blocked = false;
  const std::pair<ParseStatus, Protocol> order[] = {
      {p.tls, Protocol::kTls}, {p.h2, Protocol::kHttp2}, {p.h1, Protocol::kHttp1}};
  for (const auto& [status, protocol] : order) {
    if (status == ParseStatus::kNo) continue;
    if (status == ParseStatus::kYes) expected = protocol;
    blocked = status == ParseStatus::kNeedMore;
    break;
  }
  if (blocked) {
    // Every candidate ends within kMaxDetectBytes, so the budget fallback never fires.
    WEFT_RELEASE_ASSERT(bytes.size() < kMaxDetectBytes, "undecided at kMaxDetectBytes");
    WEFT_RELEASE_ASSERT(!p.detection.has_value(), "decided while a candidate needs more");
    return;
  }
  WEFT_RELEASE_ASSERT(p.detection.has_value(), "undecided although every candidate answered");
  const Detection& d = *p.detection;
  WEFT_RELEASE_ASSERT(d.protocol == *expected, "detect() broke the SPEC order");
  WEFT_RELEASE_ASSERT(!protocolName(d.protocol).empty(), "protocol label");
  if (d.protocol == Protocol::kTls) {
    // kYes means the 9 header bytes are present; the message is whole when it fits its record.
    const std::size_t record_length = (std::size_t{bytes[3]} << 8) | bytes[4];
    const std::size_t message_length =
        (std::size_t{bytes[6]} << 16) | (std::size_t{bytes[7]} << 8) | bytes[8];
    WEFT_RELEASE_ASSERT(d.client_hello.has_value() == (4 + message_length <= record_length),
                        "client_hello iff the ClientHello fits its first record");
  }
  if (d.client_hello) {
    WEFT_RELEASE_ASSERT(d.protocol == Protocol::kTls && sameHello(*d.client_hello, p.hello),
                        "client_hello differs from parseClientHello");
  }
  WEFT_RELEASE_ASSERT(d.request_line.has_value() == (d.protocol == Protocol::kHttp1 && p.h1 == ParseStatus::kYes),
                      "request_line iff http1 with a valid request line");
  if (d.request_line) {
    WEFT_RELEASE_ASSERT(sameLine(*d.request_line, p.line), "request_line differs");
  }
}

// Differential oracles: straightforward whole-input parsers written independently of the
// incremental ones, consulted only where they can decide (a complete first record, a complete
// line). They catch grammar slips that self-consistency cannot, e.g. an off-by-one in a bound.

// A bounds-checked cursor that latches failure instead of branching at every read.
struct Cursor {
  std::span<const uint8_t> b;
  std::size_t pos = 0;
  bool ok = true;
  std::size_t num(std::size_t width) {
    if (!ok || b.size() - pos < width) {
      ok = false;
      return 0;
    }
    std::size_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v = (v << 8) | b[pos++];
    return v;
  }
  Cursor sub(std::size_t len) {
    if (!ok || b.size() - pos < len) {
      ok = false;
      return Cursor{{}, 0, false};
    }
    Cursor c{b.subspan(pos, len)};
    pos += len;
    return c;
  }
  [[nodiscard]] bool atEnd() const { return ok && pos == b.size(); }
};

std::string text(std::span<const uint8_t> b) { return {b.begin(), b.end()}; }

// nullopt: the first record is incomplete or the ClientHello is fragmented (not judged here).
std::optional<bool> referenceHello(std::span<const uint8_t> in, ClientHello* out) {
  if (in.size() < 5) return std::nullopt;
  const std::size_t record_length = (std::size_t{in[3]} << 8) | in[4];
  if (in[0] != 0x16 || in[1] != 0x03 || in[2] > 0x04) return false;
  if (record_length < 4 || record_length > 16384) return false;
  if (in.size() < 5 + record_length) return std::nullopt;
  Cursor rec{in.subspan(5, record_length)};
  if (rec.num(1) != 0x01) return false;
  const std::size_t length = rec.num(3);
  if (length < 41 || length > 131396) return false;
  if (4 + length > record_length) return std::nullopt;
  if (4 + length < record_length) return false;
  Cursor m = rec.sub(length);
  if (m.num(1) != 0x03 || m.num(1) > 0x04) return false;
  m.sub(32);
  const std::size_t session_id = m.num(1);
  if (session_id > 32) return false;
  m.sub(session_id);
  const std::size_t suites = m.num(2);
  if (suites < 2 || suites % 2 != 0) return false;
  m.sub(suites);
  const std::size_t methods = m.num(1);
  if (methods < 1) return false;
  m.sub(methods);
  ClientHello hello;
  if (!m.ok) return false;
  if (!m.atEnd()) {
    Cursor exts = m.sub(m.num(2));
    if (!m.atEnd()) return false;
    std::vector<std::size_t> seen;
    while (exts.ok && !exts.atEnd()) {
      const std::size_t type = exts.num(2);
      Cursor e = exts.sub(exts.num(2));
      if (!exts.ok) return false;
      if (std::find(seen.begin(), seen.end(), type) != seen.end()) return false;
      seen.push_back(type);
      if (type == 0) {
        Cursor list = e.sub(e.num(2));
        if (list.num(1) != 0) return false;
        Cursor name = list.sub(list.num(2));
        if (!e.atEnd() || !list.atEnd() || !name.ok) return false;
        hello.sni = text(name.b);
        if (hello.sni.empty() || hello.sni.size() > 255 ||
            !std::all_of(hello.sni.begin(), hello.sni.end(), isHostNameByte)) {
          return false;
        }
      } else if (type == 16) {
        Cursor list = e.sub(e.num(2));
        if (!e.atEnd() || list.b.empty()) return false;
        while (list.ok && !list.atEnd()) {
          Cursor name = list.sub(list.num(1));
          if (!name.ok || name.b.empty()) return false;
          hello.alpn.push_back(text(name.b));
        }
        if (!list.ok) return false;
      }
    }
    if (!exts.ok) return false;
  }
  *out = hello;
  return true;
}

// nullopt: no line feed yet.
std::optional<bool> referenceRequestLine(std::span<const uint8_t> in, RequestLine* out) {
  const std::string all = text(in);
  const std::size_t lf = all.find('\n');
  if (lf == std::string::npos) return std::nullopt;
  std::string_view line(all.data(), lf);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxRequestLine) return false;
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || method.size() > kMaxMethodLength ||
      !std::all_of(method.begin(), method.end(), isTchar)) {
    return false;
  }
  if (target.empty() ||
      !std::all_of(target.begin(), target.end(), [](char c) { return c >= 0x21 && c <= 0x7e; })) {
    return false;
  }
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return false;
  *out = RequestLine{std::string(method), std::string(target), version.back() - '0'};
  return true;
}

void checkAgainstReferences(std::span<const uint8_t> bytes, const Parsed& p) {
  ClientHello hello;
  if (const auto valid = referenceHello(bytes, &hello)) {
    WEFT_RELEASE_ASSERT(*valid == (p.tls == ParseStatus::kYes), "TLS differs from the reference");
    WEFT_RELEASE_ASSERT(*valid || p.tls == ParseStatus::kNo, "complete record left undecided");
    if (*valid) WEFT_RELEASE_ASSERT(sameHello(hello, p.hello), "ClientHello differs");
  }
  RequestLine line;
  if (const auto valid = referenceRequestLine(bytes, &line)) {
    WEFT_RELEASE_ASSERT(*valid == (p.h1 == ParseStatus::kYes), "HTTP/1 differs from the reference");
    WEFT_RELEASE_ASSERT(*valid || p.h1 == ParseStatus::kNo, "complete line left undecided");
    if (*valid) WEFT_RELEASE_ASSERT(sameLine(line, p.line), "RequestLine differs");
  }
}

// A prefix's settled answers must survive the rest of the input.
void checkPrefix(const Parsed& prefix, const Parsed& whole) {
  if (prefix.tls != ParseStatus::kNeedMore) {
    WEFT_RELEASE_ASSERT(prefix.tls == whole.tls, "TLS answer changed with more bytes");
    if (prefix.tls == ParseStatus::kYes) {
      WEFT_RELEASE_ASSERT(sameHello(prefix.hello, whole.hello), "ClientHello changed");
    }
  }
  if (prefix.h2 != ParseStatus::kNeedMore) {
    WEFT_RELEASE_ASSERT(prefix.h2 == whole.h2, "preface answer changed with more bytes");
  }
  if (prefix.h1 != ParseStatus::kNeedMore) {
    WEFT_RELEASE_ASSERT(prefix.h1 == whole.h1, "HTTP/1 answer changed with more bytes");
    if (prefix.h1 == ParseStatus::kYes) {
      WEFT_RELEASE_ASSERT(sameLine(prefix.line, whole.line), "RequestLine changed");
    }
  }
  if (prefix.detection) {
    WEFT_RELEASE_ASSERT(whole.detection && sameDetection(*prefix.detection, *whole.detection),
                        "detect() answer changed with more bytes");
  }
}

}  // namespace
}  // namespace weft::detect

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer looks for.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::detect;
  const std::span<const uint8_t> input(data, size);
  const Parsed whole = parseAll(input);
  checkFields(input, whole);
  checkOrder(input, whole);
  checkAgainstReferences(input, whole);

  // Every short prefix (where the headers and the first decisions live), then a few split points
  // further in; each parse is linear, so this stays cheap.
  std::vector<std::size_t> cuts;
  for (std::size_t n = 0; n < std::min<std::size_t>(size, 16); ++n) cuts.push_back(n);
  for (std::size_t n : {size / 4, size / 2, size - size / 4, size - 2, size - 1}) {
    if (n < size) cuts.push_back(n);  // size - k wraps for tiny inputs: skipped
  }
  // Just before and at the end of a TLS record, where a ClientHello becomes decidable.
  if (size >= 5) {
    const std::size_t record_end = 5 + ((std::size_t{data[3]} << 8) | data[4]);
    if (record_end - 1 < size) cuts.push_back(record_end - 1);
    if (record_end < size) cuts.push_back(record_end);
  }
  for (std::size_t n : cuts) {
    const auto prefix = input.first(n);
    const Parsed p = parseAll(prefix);
    checkFields(prefix, p);
    checkOrder(prefix, p);
    checkPrefix(p, whole);
  }
  return 0;
}
