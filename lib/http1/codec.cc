// HTTP/1.x codec (contract: include/weft/http1/codec.h; choices: docs/dev/http1-parser.md).
//
// Lines are assembled whole (bounded by the limits) and judged only once complete, except for the
// length limit, which is checked as bytes arrive. That order (limit first, then content) is what
// makes the outcome independent of how the stream is split. Every framing decision is taken from
// the complete field section, never from a prefix of it.
#include "weft/http1/codec.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "weft/common/ascii.h"

namespace weft::http1 {
namespace {

constexpr std::array<bool, 256> makeTcharTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTchar = makeTcharTable();

bool isTchar(char c) { return kTchar[static_cast<unsigned char>(c)]; }
bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isTchar(c)) return false;
  }
  return true;
}
bool isVchar(char c) { return c >= 0x21 && c <= 0x7e; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool isWs(char c) { return c == ' ' || c == '\t'; }
// field-vchar (VCHAR / obs-text) plus SP and HTAB: what may appear inside a field value or a
// reason phrase. Excludes NUL, CR, LF, every other CTL and DEL.
bool isFieldByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

// True when no byte of s is below 0x20 or DEL (0x7f): what a field value almost always is, checked
// eight bytes at a time with the "has a byte less than n" word test (exact for n <= 128: a set
// high bit marks a byte below n, and a borrow can only spread from such a byte). Bytes of 0x80 and
// above (obs-text) pass, as isFieldByte lets them. Written out because header values are the bulk
// of every head the proxy parses: counted with callgrind, this saves about 850 of the ~28,000
// user-space instructions an HTTP/1 request through the proxy costs (docs/dev/http.md).
bool noControlBytes(std::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, sizeof w);
    const uint64_t below_space = (w - kOnes * 0x20) & ~w & kHigh;
    const uint64_t x = w ^ (kOnes * 0x7f);
    const uint64_t del = (x - kOnes) & ~x & kHigh;
    if ((below_space | del) != 0) return false;
  }
  for (; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

using ascii::iequals;
using ascii::lower;

std::string_view trimWs(std::string_view s) {
  while (!s.empty() && isWs(s.front())) s.remove_prefix(1);
  while (!s.empty() && isWs(s.back())) s.remove_suffix(1);
  return s;
}

// Splits a comma-separated list (RFC 9110 §5.6.1). Returns false on an empty element, which is
// legal but never sent by a correct peer; strictness here closes list-confusion tricks.
template <typename F>
bool forEachListElement(std::string_view value, F&& f) {
  while (true) {
    const std::size_t comma = value.find(',');
    const std::string_view element = trimWs(value.substr(0, comma));
    if (element.empty()) return false;
    f(element);
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

ParseError err(int status, std::string_view kind) { return ParseError{status, kind}; }

// A field line "name: value". Shared by headers and trailers.
std::optional<ParseError> parseFieldLine(std::string_view line, Headers& out) {
  if (!line.empty() && isWs(line.front())) return err(400, "obs_fold");
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return err(400, "missing_colon");
  const std::string_view name = line.substr(0, colon);
  if (name.empty()) return err(400, "empty_header_name");
  if (isWs(name.back())) return err(400, "space_before_colon");
  if (!isToken(name)) return err(400, "invalid_header_name");
  const std::string_view raw = line.substr(colon + 1);
  if (!noControlBytes(raw)) {  // HTAB, which is allowed, or an error: look byte by byte
    for (char c : raw) {
      if (c == '\r') return err(400, "bare_cr");
      if (!isFieldByte(c)) return err(400, "invalid_header_value");
    }
  }
  out.add(std::string(name), std::string(trimWs(raw)));
  return std::nullopt;
}

// host = IP-literal / IPv4address / reg-name, [":" port] (RFC 3986). Deliberately narrow: no
// userinfo, no whitespace, no percent-escapes outside an IPv6 zone.
bool isValidAuthority(std::string_view a, bool require_port) {
  if (a.empty()) return false;
  std::string_view host = a;
  std::string_view port;
  bool has_port = false;
  if (a.front() == '[') {
    const std::size_t close = a.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (char c : a.substr(1, close - 1)) {
      if (!(isHex(c) || c == ':' || c == '.')) return false;
    }
    const std::string_view rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      has_port = true;
      port = rest.substr(1);
    }
    host = a.substr(0, close + 1);
  } else {
    const std::size_t colon = a.rfind(':');
    if (colon != std::string_view::npos) {
      has_port = true;
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
    }
    if (host.empty()) return false;
    for (char c : host) {
      const bool ok = (isDigit(c) || isAlpha(c)) || c == '-' || c == '.' || c == '_' || c == '~' ||
                      c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
                      c == '*' || c == '+' || c == ',' || c == ';' || c == '=';
      if (!ok) return false;
    }
  }
  if (has_port) {
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), isDigit))
      return false;
  }
  return has_port || !require_port;
}

struct Fields {
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool has_te = false;
  bool close = false;
  bool keep_alive_token = false;
  bool upgrade_token = false;
};

// Content-Length, Transfer-Encoding and Connection, the fields that decide framing. `status`
// is the status to report (400 for requests, 502 for responses; 501 becomes 502 too).
std::optional<ParseError> readFramingFields(const Headers& headers, bool request, Fields& f) {
  const int bad = request ? 400 : 502;
  const int unimpl = request ? 501 : 502;
  std::vector<std::string_view> codings;
  for (const Header& h : headers.all()) {
    if (iequals(h.name, "content-length")) {
      if (f.content_length) return err(bad, "duplicate_content_length");
      const std::string_view v = h.value;
      if (v.empty() || v.size() > 18 || !std::all_of(v.begin(), v.end(), isDigit)) {
        return err(bad, "invalid_content_length");
      }
      uint64_t n = 0;
      for (char c : v) n = n * 10 + static_cast<uint64_t>(c - '0');
      f.content_length = n;
    } else if (iequals(h.name, "transfer-encoding")) {
      f.has_te = true;
      if (!forEachListElement(h.value, [&](std::string_view e) { codings.push_back(e); })) {
        return err(bad, "invalid_transfer_encoding");
      }
    } else if (iequals(h.name, "connection")) {
      bool ok = forEachListElement(h.value, [&](std::string_view e) {
        if (iequals(e, "close")) f.close = true;
        if (iequals(e, "keep-alive")) f.keep_alive_token = true;
        if (iequals(e, "upgrade")) f.upgrade_token = true;
      });
      if (!ok) return err(bad, "invalid_connection");
    }
  }
  if (f.has_te) {
    if (f.content_length) return err(bad, "content_length_with_transfer_encoding");
    // RFC 9112 §6.3: chunked must be the final coding of a request, and is applied only once.
    std::size_t chunked_count = 0;
    for (std::string_view c : codings) chunked_count += iequals(c, "chunked") ? 1 : 0;
    if (!iequals(codings.back(), "chunked")) return err(bad, "transfer_encoding_not_chunked");
    if (chunked_count > 1) return err(bad, "transfer_encoding_chunked_twice");
    // gzip/deflate/compress or unknown codings under chunked: not implemented by this proxy.
    if (codings.size() > 1) return err(unimpl, "unsupported_transfer_coding");
    f.chunked = true;
  }
  return std::nullopt;
}

std::optional<Version> parseVersion(std::string_view v, bool& looks_like_version) {
  looks_like_version =
      v.size() == 8 && v.substr(0, 5) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]);
  if (v == "HTTP/1.1") return Version::kHttp11;
  if (v == "HTTP/1.0") return Version::kHttp10;
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Headers

void Headers::add(std::string name, std::string value) {
  if (fields_.empty()) fields_.reserve(16);  // typical heads carry fewer: one allocation
  fields_.push_back(Header{std::move(name), std::move(value)});
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const Header& h : fields_) {
    if (iequals(h.name, name)) return std::string_view(h.value);
  }
  return std::nullopt;
}

std::size_t Headers::count(std::string_view name) const {
  return static_cast<std::size_t>(std::count_if(
      fields_.begin(), fields_.end(), [&](const Header& h) { return iequals(h.name, name); }));
}

std::string_view versionText(Version v) { return v == Version::kHttp10 ? "HTTP/1.0" : "HTTP/1.1"; }

// ---------------------------------------------------------------------------------------------
// Head parsing

void HeadParserBase::resetBase() {
  headers_ = Headers{};
  line_.clear();
  start_line_done_ = false;
  header_bytes_ = 0;
  state_ = ParseState::kNeedMore;
  error_ = ParseError{};
}

FeedResult HeadParserBase::feedLines(std::string_view in, bool request) {
  if (state_ != ParseState::kNeedMore) return FeedResult{state_, 0, error_};
  auto fail = [&](ParseError e) {
    state_ = ParseState::kError;
    error_ = e;
    line_.clear();
    return FeedResult{state_, 0, error_};
  };
  const int over_status_line = request ? 414 : 502;
  const int over_headers = request ? 431 : 502;
  std::size_t pos = 0;
  while (pos < in.size()) {
    const void* lf = std::memchr(in.data() + pos, '\n', in.size() - pos);
    const std::size_t end =
        lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - in.data()) : in.size();
    // A line that arrived whole is judged in place; only a line split across calls is copied.
    const std::string_view piece(in.data() + pos, end - pos);
    std::string_view line = piece;
    if (!line_.empty() || !lf) {
      line_.append(piece);
      line = line_;
    }
    // The limit is judged before the content so that the outcome does not depend on whether the
    // line's end arrived in the same call. A pending CR may still be the line's CRLF.
    std::size_t body = line.size();
    if (body > 0 && line.back() == '\r') --body;
    if (!start_line_done_) {
      if (body > limits_.max_start_line)
        return fail(err(over_status_line, request ? "uri_too_long" : "status_line_too_long"));
    } else if (body != 0 && header_bytes_ + body + 2 > limits_.max_header_bytes) {
      return fail(err(over_headers, "header_fields_too_large"));
    }
    if (!lf) return FeedResult{ParseState::kNeedMore, in.size(), {}};
    pos = end + 1;
    if (line.empty() || line.back() != '\r') return fail(err(request ? 400 : 502, "bare_lf"));
    line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) return fail(err(request ? 400 : 502, "bare_cr"));
    if (auto e = onLine(line, request)) return fail(*e);
    line_.clear();
    if (state_ == ParseState::kDone) return FeedResult{ParseState::kDone, pos, {}};
  }
  return FeedResult{ParseState::kNeedMore, in.size(), {}};
}

std::optional<ParseError> HeadParserBase::onLine(std::string_view line, bool request) {
  if (!start_line_done_) {
    start_line_done_ = true;
    return onStartLine(line);
  }
  if (line.empty()) {
    auto e = onHeadersDone();
    if (!e) state_ = ParseState::kDone;
    return e;
  }
  header_bytes_ += line.size() + 2;
  if (headers_.size() + 1 > limits_.max_headers) {
    return err(request ? 431 : 502, "too_many_headers");
  }
  auto e = parseFieldLine(line, headers_);
  if (e && !request) e->status = 502;
  return e;
}

void RequestHeadParser::reset() {
  resetBase();
  head_ = RequestHead{};
}

std::optional<ParseError> RequestHeadParser::onStartLine(std::string_view line) {
  // RFC 9112 §2.2 lets a server skip empty lines before a request line; we do not (see the doc).
  if (line.empty()) return err(400, "empty_request_line");
  const std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return err(400, "invalid_request_line");
  const std::string_view method = line.substr(0, sp1);
  if (!isToken(method)) return err(400, "invalid_method");
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return err(400, "invalid_request_line");
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (target.empty()) return err(400, "invalid_target");
  for (char c : target) {
    if (!isVchar(c)) return err(400, "invalid_target");
  }
  bool looks_like_version = false;
  const auto v = parseVersion(version, looks_like_version);
  if (!v) return looks_like_version ? err(505, "unsupported_version") : err(400, "invalid_version");

  head_.method = std::string(method);
  head_.target = std::string(target);
  head_.version = *v;
  if (target == "*") {
    if (method != "OPTIONS") return err(400, "asterisk_form_not_options");
    head_.form = TargetForm::kAsterisk;
  } else if (method == "CONNECT") {
    if (!isValidAuthority(target, /*require_port=*/true)) return err(400, "invalid_authority_form");
    head_.form = TargetForm::kAuthority;
    head_.authority = std::string(target);
  } else if (target.front() == '/') {
    head_.form = TargetForm::kOrigin;
  } else {
    // absolute-form: scheme "://" authority [path-abempty] ["?" query]. Only http and https:
    // a proxy has no business forwarding other schemes.
    const std::size_t sep = target.find("://");
    if (sep == std::string_view::npos) return err(400, "invalid_target");
    const std::string_view scheme = target.substr(0, sep);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) return err(400, "invalid_target");
    const std::string_view rest = target.substr(sep + 3);
    const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    if (!isValidAuthority(authority, /*require_port=*/false)) return err(400, "invalid_target");
    if (target.find('#') != std::string_view::npos) return err(400, "invalid_target");
    head_.form = TargetForm::kAbsolute;
    head_.authority = std::string(authority);
  }
  if (head_.form == TargetForm::kOrigin && target.find('#') != std::string_view::npos) {
    return err(400, "invalid_target");  // a fragment is never sent (RFC 9112 §3.2)
  }
  return std::nullopt;
}

std::optional<ParseError> RequestHeadParser::onHeadersDone() {
  head_.headers = std::move(headers_);
  const Headers& h = head_.headers;
  const bool http11 = head_.version == Version::kHttp11;

  const std::size_t hosts = h.count("host");
  if (hosts > 1) return err(400, "multiple_host");
  if (hosts == 0 && http11) return err(400, "missing_host");
  if (hosts == 1) {
    const std::string_view host = *h.get("host");
    if (!isValidAuthority(host, false)) return err(400, "invalid_host");
    if (head_.form == TargetForm::kAbsolute || head_.form == TargetForm::kAuthority) {
      // RFC 9112 §3.2.2 says to ignore Host here; we refuse the disagreement instead, so no hop
      // can route on one authority while another hop routes on the other.
      if (!iequals(host, head_.authority)) return err(400, "host_mismatch");
    } else {
      head_.authority = std::string(host);
    }
  }

  Fields f;
  if (auto e = readFramingFields(h, true, f)) return e;
  if (f.has_te && !http11) return err(400, "transfer_encoding_http10");  // RFC 9112 §6.1

  if (head_.form == TargetForm::kAuthority) {
    if (f.has_te || (f.content_length && *f.content_length != 0)) {
      return err(400, "connect_with_body");
    }
    head_.framing = BodyFraming{BodyFraming::Kind::kUpgrade, 0};
  } else if (f.chunked) {
    head_.framing = BodyFraming{BodyFraming::Kind::kChunked, 0};
  } else if (f.content_length) {
    head_.framing = BodyFraming{BodyFraming::Kind::kContentLength, *f.content_length};
  } else {
    head_.framing = BodyFraming{BodyFraming::Kind::kNone, 0};
  }
  head_.keep_alive = http11 ? !f.close : (f.keep_alive_token && !f.close);

  if (const std::size_t expects = h.count("expect"); expects > 0) {
    if (expects > 1 || !iequals(*h.get("expect"), "100-continue")) {
      return err(417, "unsupported_expectation");
    }
    head_.expect_continue = http11;
  }
  if (f.upgrade_token) {
    if (h.count("upgrade") > 1) return err(400, "multiple_upgrade");
    if (auto up = h.get("upgrade")) {
      if (up->empty()) return err(400, "invalid_upgrade");
      head_.upgrade = std::string(*up);
    }
  }
  return std::nullopt;
}

void ResponseHeadParser::reset() {
  resetBase();
  head_ = ResponseHead{};
}

void ResponseHeadParser::reset(std::string_view request_method) {
  reset();
  request_method_ = std::string(request_method);
}

std::optional<ParseError> ResponseHeadParser::onStartLine(std::string_view line) {
  // status-line = HTTP-version SP 3DIGIT SP [reason-phrase]; the second SP may be missing.
  if (line.size() < 12 || line[8] != ' ') {
    bool looks = false;
    if (line.size() >= 8 && !parseVersion(line.substr(0, 8), looks) && looks) {
      return err(502, "unsupported_version");
    }
    return err(502, "invalid_status_line");
  }
  bool looks_like_version = false;
  const auto v = parseVersion(line.substr(0, 8), looks_like_version);
  if (!v) return err(502, looks_like_version ? "unsupported_version" : "invalid_status_line");
  const std::string_view code = line.substr(9, 3);
  if (!std::all_of(code.begin(), code.end(), isDigit)) return err(502, "invalid_status_code");
  const int status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  if (status < 100 || status > 599) return err(502, "invalid_status_code");
  std::string_view reason;
  if (line.size() > 12) {
    if (line[12] != ' ') return err(502, "invalid_status_line");
    reason = line.substr(13);
  }
  for (char c : reason) {
    if (!isFieldByte(c)) return err(502, "invalid_reason_phrase");
  }
  head_.version = *v;
  head_.status = status;
  head_.reason = std::string(reason);
  return std::nullopt;
}

std::optional<ParseError> ResponseHeadParser::onHeadersDone() {
  head_.headers = std::move(headers_);
  const Headers& h = head_.headers;
  const bool http11 = head_.version == Version::kHttp11;
  const int s = head_.status;
  Fields f;
  if (auto e = readFramingFields(h, false, f)) return e;
  if (f.has_te && !http11) return err(502, "transfer_encoding_http10");
  // RFC 9110 §8.6 / RFC 9112 §6.1: never in 1xx or 204.
  if ((s < 200 || s == 204) && (f.has_te || f.content_length)) {
    return err(502, "body_framing_on_bodiless_status");
  }
  using K = BodyFraming::Kind;
  const bool connect_ok = request_method_ == "CONNECT" && s >= 200 && s < 300;
  if (s == 101 || connect_ok) {
    head_.framing = BodyFraming{K::kUpgrade, 0};
  } else if (request_method_ == "HEAD" || s < 200 || s == 204 || s == 304) {
    head_.framing = BodyFraming{K::kNone, 0};
  } else if (f.chunked) {
    head_.framing = BodyFraming{K::kChunked, 0};
  } else if (f.content_length) {
    head_.framing = BodyFraming{K::kContentLength, *f.content_length};
  } else {
    head_.framing = BodyFraming{K::kCloseDelimited, 0};
  }
  head_.keep_alive = (http11 ? !f.close : (f.keep_alive_token && !f.close)) &&
                     head_.framing.kind != K::kCloseDelimited;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

void ChunkedDecoder::reset() {
  phase_ = Phase::kSizeLine;
  line_.clear();
  remaining_ = 0;
  trailer_bytes_ = 0;
  trailers_ = Headers{};
  error_ = ParseError{};
}

std::optional<ParseError> ChunkedDecoder::onSizeLine(std::string_view line) {
  std::size_t i = 0;
  uint64_t size = 0;
  while (i < line.size() && isHex(line[i])) {
    if (i == 16) return err(400, "chunk_size_overflow");
    const char c = lower(line[i]);
    size = size * 16 + static_cast<uint64_t>(isDigit(c) ? c - '0' : c - 'a' + 10);
    ++i;
  }
  if (i == 0) return err(400, "invalid_chunk_size");
  if (size > (uint64_t{1} << 62)) return err(400, "chunk_size_overflow");
  // chunk-ext = *( ";" ext-name [ "=" ext-val ] ), no whitespace (strict: BWS is refused).
  std::string_view ext = line.substr(i);
  while (!ext.empty()) {
    if (ext.front() != ';') return err(400, "invalid_chunk_size");
    ext.remove_prefix(1);
    std::size_t n = 0;
    while (n < ext.size() && isTchar(ext[n])) ++n;
    if (n == 0) return err(400, "invalid_chunk_extension");
    ext.remove_prefix(n);
    if (ext.empty() || ext.front() != '=') continue;
    ext.remove_prefix(1);
    if (!ext.empty() && ext.front() == '"') {
      std::size_t j = 1;
      bool closed = false;
      while (j < ext.size()) {
        const char c = ext[j];
        if (c == '"') {
          closed = true;
          ++j;
          break;
        }
        if (c == '\\') {
          if (j + 1 >= ext.size() || !isFieldByte(ext[j + 1]))
            return err(400, "invalid_chunk_extension");
          j += 2;
          continue;
        }
        if (!isFieldByte(c)) return err(400, "invalid_chunk_extension");
        ++j;
      }
      if (!closed) return err(400, "invalid_chunk_extension");
      ext.remove_prefix(j);
    } else {
      n = 0;
      while (n < ext.size() && isTchar(ext[n])) ++n;
      if (n == 0) return err(400, "invalid_chunk_extension");
      ext.remove_prefix(n);
    }
  }
  remaining_ = size;
  phase_ = size == 0 ? Phase::kTrailer : Phase::kData;
  return std::nullopt;
}

std::optional<ParseError> ChunkedDecoder::onTrailerLine(std::string_view line) {
  if (line.empty()) {
    phase_ = Phase::kDone;
    return std::nullopt;
  }
  trailer_bytes_ += line.size() + 2;
  if (trailers_.size() + 1 > limits_.max_trailers) return err(400, "too_many_trailers");
  if (auto e = parseFieldLine(line, trailers_)) return e;
  // Framing fields have no meaning after the body, and a hop that merged trailers into the head
  // would be open to smuggling (RFC 9110 §6.5.1).
  const std::string_view name = trailers_.all().back().name;
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
      iequals(name, "host")) {
    return err(400, "forbidden_trailer");
  }
  return std::nullopt;
}

FeedResult ChunkedDecoder::feed(std::string_view in, std::string& body) {
  if (phase_ == Phase::kDone) return FeedResult{ParseState::kDone, 0, {}};
  if (phase_ == Phase::kError) return FeedResult{ParseState::kError, 0, error_};
  auto fail = [&](ParseError e) {
    phase_ = Phase::kError;
    error_ = e;
    line_.clear();
    return FeedResult{ParseState::kError, 0, error_};
  };
  std::size_t pos = 0;
  while (pos < in.size()) {
    switch (phase_) {
      case Phase::kData: {
        const std::size_t n = static_cast<std::size_t>(
            std::min<uint64_t>(remaining_, static_cast<uint64_t>(in.size() - pos)));
        body.append(in.data() + pos, n);
        pos += n;
        remaining_ -= n;
        if (remaining_ == 0) phase_ = Phase::kDataCr;
        break;
      }
      case Phase::kDataCr:
        if (in[pos++] != '\r') return fail(err(400, "missing_chunk_crlf"));
        phase_ = Phase::kDataLf;
        break;
      case Phase::kDataLf:
        if (in[pos++] != '\n') return fail(err(400, "missing_chunk_crlf"));
        phase_ = Phase::kSizeLine;
        break;
      case Phase::kSizeLine:
      case Phase::kTrailer: {
        const void* lf = std::memchr(in.data() + pos, '\n', in.size() - pos);
        const std::size_t end =
            lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - in.data()) : in.size();
        line_.append(in.data() + pos, end - pos);
        std::size_t len = line_.size();
        if (len > 0 && line_.back() == '\r') --len;
        if (phase_ == Phase::kSizeLine && len > limits_.max_chunk_line) {
          return fail(err(400, "chunk_line_too_long"));
        }
        if (phase_ == Phase::kTrailer && len > 0 &&
            trailer_bytes_ + len + 2 > limits_.max_trailer_bytes) {
          return fail(err(400, "trailers_too_large"));
        }
        if (!lf) return FeedResult{ParseState::kNeedMore, in.size(), {}};
        pos = end + 1;
        if (line_.empty() || line_.back() != '\r') return fail(err(400, "bare_lf"));
        line_.pop_back();
        if (line_.find('\r') != std::string::npos) return fail(err(400, "bare_cr"));
        auto e = phase_ == Phase::kSizeLine ? onSizeLine(line_) : onTrailerLine(line_);
        if (e) return fail(*e);
        line_.clear();
        if (phase_ == Phase::kDone) return FeedResult{ParseState::kDone, pos, {}};
        break;
      }
      case Phase::kDone:
      case Phase::kError:
        break;  // unreachable: both return above
    }
  }
  return FeedResult{ParseState::kNeedMore, in.size(), {}};
}

// ---------------------------------------------------------------------------------------------
// Serialization

namespace {
void appendFields(std::string& out, const Headers& headers) {
  for (const Header& h : headers.all()) {
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  out.append("\r\n");
}
}  // namespace

std::string serialize(const RequestHead& head) {
  std::string out;
  out.append(head.method)
      .append(" ")
      .append(head.target)
      .append(" ")
      .append(versionText(head.version));
  out.append("\r\n");
  appendFields(out, head.headers);
  return out;
}

std::string serialize(const ResponseHead& head) {
  std::string out(versionText(head.version));
  const int s = head.status;
  out.push_back(' ');
  out.push_back(static_cast<char>('0' + (s / 100) % 10));
  out.push_back(static_cast<char>('0' + (s / 10) % 10));
  out.push_back(static_cast<char>('0' + s % 10));
  out.push_back(' ');
  out.append(head.reason).append("\r\n");
  appendFields(out, head.headers);
  return out;
}

std::string encodeChunk(std::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  // Hex digits written backwards into a fixed buffer (also sidesteps GCC 12's false -Wrestrict
  // on string::insert at -O2).
  char digits[2 * sizeof(std::size_t)];
  std::size_t len = 0;
  std::size_t n = data.size();
  do {
    digits[sizeof(digits) - 1 - len++] = kHex[n % 16];
    n /= 16;
  } while (n > 0);
  std::string out;
  out.reserve(len + data.size() + 4);
  out.append(digits + sizeof(digits) - len, len).append("\r\n").append(data).append("\r\n");
  return out;
}

std::string lastChunk(const Headers& trailers) {
  std::string out = "0\r\n";
  appendFields(out, trailers);
  return out;
}

}  // namespace weft::http1
