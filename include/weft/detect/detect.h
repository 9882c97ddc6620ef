// Protocol detection: what a connection speaks, decided from its first bytes.
//
// Pure functions over a byte prefix, no I/O: the proxy reads (bounded by kMaxDetectBytes and by
// WEFT_PROXY_DETECT_TIMEOUT) and calls detect() after every read until it answers. Every input
// here is untrusted; the parsers never read past the span and never assert on its content.
// Fuzzed by test/fuzz/detect_fuzz_test.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weft::detect {

// At most this many bytes are read before deciding. A TLS ClientHello is read whole (one
// record holds at most 16 KiB of plaintext plus its 5-byte header) so the SNI is known.
inline constexpr std::size_t kMaxDetectBytes = 16384 + 5;
// An HTTP/1 request line longer than this (not counting its CRLF or LF) is not detected as HTTP
// (it is forwarded as opaque); it is refused as soon as it can no longer end within the bound.
inline constexpr std::size_t kMaxRequestLine = 8192;
// Longest HTTP/1 method accepted. The longest method in the IANA registry, UPDATEREDIRECTREF, has
// 17 characters; the bound lets a long run of token bytes (another protocol) be ruled out early.
inline constexpr std::size_t kMaxMethodLength = 20;

enum class Protocol { kTls, kHttp2, kHttp1, kOpaque };

// Stable label values: "tls", "http2", "http1", "opaque".
std::string_view protocolName(Protocol p);

enum class ParseStatus {
  kNeedMore,  // a valid prefix so far; more bytes may complete it
  kNo,        // definitely not this protocol
  kYes,       // complete and valid
};

struct ClientHello {
  // server_name (host_name type), empty when absent; as sent, so compare case-insensitively.
  std::string sni;
  std::vector<std::string> alpn;  // application_layer_protocol_negotiation, in order
};

struct RequestLine {
  std::string method;
  std::string target;
  int version_minor = 1;  // HTTP/1.<minor>: 0 or 1
};

// For the three parsers below: kNo as soon as the bytes so far contradict the format, kNeedMore
// while they are a consistent proper prefix, kYes once complete. Bytes after the parsed structure
// are ignored, and a kYes or kNo never changes when more bytes are appended. `out` may be null;
// it is written only on kYes.

// A TLS record (content type 22, version 3.0..3.4, length 4..2^14) starting with a ClientHello
// (handshake type 1) whose every length is consistent: session_id <= 32 bytes, a non-empty even
// cipher_suites, at least one compression method, and an optional extensions block that fills the
// message exactly, with no extension type repeated. server_name must hold exactly one host_name
// of 1..255 bytes of [A-Za-z0-9._-] (as BoringSSL requires); ALPN must be a non-empty list of
// non-empty names. Anything else, including a message that does not fill its record exactly, is
// a malformed ClientHello and so kNo: the connection is then opaque, and the real server decides.
// Only the first record is parsed. A ClientHello fragmented over several records yields kYes
// with no SNI or ALPN once the whole first record is present and the part of the message it holds
// is consistent, since that already proves the peer speaks TLS. SSLv2-format hellos are kNo.
ParseStatus parseClientHello(std::span<const uint8_t> bytes, ClientHello* out);

// The 24-byte HTTP/2 client connection preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
ParseStatus matchHttp2Preface(std::span<const uint8_t> bytes);

// "METHOD SP request-target SP HTTP/1.x CRLF" per RFC 9112 §3: a token method of at most
// kMaxMethodLength bytes, exactly one SP, a non-empty target of visible ASCII (0x21-0x7E: no SP,
// CTL or byte >= 0x80; its form is not checked), exactly one SP, "HTTP/1.0" or "HTTP/1.1"
// (case-sensitive), then CRLF. A bare LF line end is accepted, as RFC 9112 §2.2 allows. Empty
// lines before the request line are not skipped: these are the first bytes of a connection.
ParseStatus parseRequestLine(std::span<const uint8_t> bytes, RequestLine* out);

// The bytes start with a method of RFC 9110 §9 or PATCH (RFC 5789) followed by SP: the client
// is speaking HTTP/1 even when its request line then fails parseRequestLine (a space in the
// target, HTTP/1.2, a line over kMaxRequestLine). Such a connection is detected as HTTP/1 with no
// request_line, so the proxy's strict parser answers it (400, 414, 505) instead of passing it on
// as opaque bytes an application might parse leniently (and past the proxy's HTTP policy).
bool startsWithHttpMethod(std::span<const uint8_t> bytes);

struct Detection {
  Protocol protocol = Protocol::kOpaque;
  // Set when protocol == kTls and the ClientHello fit in its first record (parsed whole).
  std::optional<ClientHello> client_hello;
  // Set when protocol == kHttp1 and the request line parsed; unset for a malformed request that
  // startsWithHttpMethod().
  std::optional<RequestLine> request_line;
};

// Decides from the bytes read so far. nullopt: undecided, read more (the caller stops at
// kMaxDetectBytes, EOF or timeout and then treats the connection as opaque).
// Order (SPEC §2): TLS ClientHello, then the HTTP/2 preface, then an HTTP/1 request line,
// else opaque; a candidate that still needs more bytes blocks every later one, so "PRI * HTTP/2.0"
// is never taken for an HTTP/1 request. Decides as early as the bytes allow: one byte that no
// candidate accepts is enough to answer kOpaque. Once it answers, appending bytes never changes
// the answer. Empty prefix: nullopt. Allocates only to fill the Detection it returns.
std::optional<Detection> detect(std::span<const uint8_t> prefix);

}  // namespace weft::detect
