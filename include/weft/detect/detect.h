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
// An HTTP/1 request line longer than this is not detected as HTTP (it is forwarded as opaque).
inline constexpr std::size_t kMaxRequestLine = 8192;

enum class Protocol { kTls, kHttp2, kHttp1, kOpaque };

// Stable label values: "tls", "http2", "http1", "opaque".
std::string_view protocolName(Protocol p);

enum class ParseStatus {
  kNeedMore,  // a valid prefix so far; more bytes may complete it
  kNo,        // definitely not this protocol
  kYes,       // complete and valid
};

struct ClientHello {
  std::string sni;                 // server_name (host_name type), empty when absent
  std::vector<std::string> alpn;   // application_layer_protocol_negotiation, in order
};

struct RequestLine {
  std::string method;
  std::string target;
  int version_minor = 1;           // HTTP/1.<minor>: 0 or 1
};

// A TLS record carrying a complete ClientHello (handshake type 1) with well-formed lengths.
// Only the first record is parsed; a ClientHello fragmented over several records yields kYes
// from the header alone (with no SNI), since the record header already proves it is TLS.
ParseStatus parseClientHello(std::span<const uint8_t> bytes, ClientHello* out);

// The 24-byte HTTP/2 client connection preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
ParseStatus matchHttp2Preface(std::span<const uint8_t> bytes);

// "METHOD SP request-target SP HTTP/1.x CRLF" per RFC 9112 §3 (token method, no CTL or SP in the
// target, version 1.0 or 1.1). A bare LF line end is accepted, as RFC 9112 §2.2 allows.
ParseStatus parseRequestLine(std::span<const uint8_t> bytes, RequestLine* out);

struct Detection {
  Protocol protocol = Protocol::kOpaque;
  std::optional<ClientHello> client_hello;   // set when protocol == kTls and it parsed whole
  std::optional<RequestLine> request_line;   // set when protocol == kHttp1
};

// Decides from the bytes read so far. nullopt: undecided, read more (the caller stops at
// kMaxDetectBytes, EOF or timeout and then treats the connection as opaque).
// Order (SPEC §2): TLS ClientHello, then the HTTP/2 preface, then an HTTP/1 request line,
// else opaque. Decides as early as the bytes allow: one byte that no candidate accepts is enough
// to answer kOpaque.
std::optional<Detection> detect(std::span<const uint8_t> prefix);

}  // namespace weft::detect
