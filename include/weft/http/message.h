// The proxy's protocol-neutral view of one HTTP exchange, shared by the HTTP/1 and HTTP/2 sides.
//
// A request arrives on a server side (HTTP/1 or HTTP/2 downstream connection), is routed, and is
// sent by a client side (HTTP/1 pool or HTTP/2 connection); the response travels back. Heads are
// values; bodies stream through a Body (body.h) so nothing is buffered whole.
//
// Field names: HTTP/2 sides produce lowercase names (RFC 9113 §8.2.1); HTTP/1 sides keep the case
// the peer sent, so a request that stays HTTP/1 end to end is re-emitted as sent. Compare names
// case-insensitively (Fields helpers below). Neither head carries pseudo-headers or hop-by-hop
// fields (Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade): each side
// derives those for its own hop.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/ascii.h"
#include "weft/http1/codec.h"

namespace weft::http {

class Body;

// The HTTP/1 codec's field type, so a parsed head's fields become a message's without a copy.
using Field = http1::Header;
using Fields = std::vector<Field>;

using ascii::iequals;
// First value of `name` (case-insensitive), or nullopt.
std::optional<std::string_view> find(const Fields& f, std::string_view name);
// Removes every field named `name` (case-insensitive). Returns how many were removed.
std::size_t erase(Fields& f, std::string_view name);

// The protocol a message arrived with (and, for HTTP/1 over the mesh, the one to restore).
enum class Proto : uint8_t { kHttp10, kHttp11, kHttp2 };
std::string_view protoName(Proto p);  // "HTTP/1.0", "HTTP/1.1", "HTTP/2"

struct RequestHead {
  std::string method;
  std::string scheme = "http";  // :scheme; "http" for HTTP/1 origin-form requests
  std::string authority;        // :authority, or the HTTP/1 Host / absolute-form authority
  std::string path;             // :path: origin-form "/p?q", or "*" (OPTIONS); empty for CONNECT
  Fields headers;
  Proto proto = Proto::kHttp11;
  // HTTP/1 only: the request was sent in absolute-form ("GET http://a/b HTTP/1.1"): restore it.
  bool absolute_form = false;
  // HTTP/1 only: the body was chunked (restore chunked rather than Content-Length).
  bool chunked = false;
  // HTTP/1 only: "Expect: 100-continue" was sent.
  bool expect_continue = false;
  // The request has no body at all (HTTP/2: HEADERS carried END_STREAM; HTTP/1: no framing).
  bool end_stream = false;
  // gRPC: content-type starts with "application/grpc". Errors are then reported as gRPC status.
  [[nodiscard]] bool isGrpc() const;
};

struct ResponseHead {
  int status = 200;
  Fields headers;
  std::string reason;  // HTTP/1 reason phrase as received, when it came from HTTP/1
  bool end_stream = false;  // no body and no trailers follow (HTTP/2 END_STREAM on HEADERS)
};

struct Request {
  RequestHead head;
  std::shared_ptr<Body> body;  // never null; already finished when head.end_stream
  // When the request was read whole (head) by the server side: latency is measured from here.
  std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
};

struct Response {
  ResponseHead head;
  std::shared_ptr<Body> body;  // never null; already finished when head.end_stream
};

}  // namespace weft::http
