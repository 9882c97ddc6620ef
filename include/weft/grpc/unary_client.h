// One gRPC unary call over TLS 1.3 + HTTP/2 (nghttp2), blocking, on a fresh connection.
//
// For the proxy's identity requests: one call every ~17 hours per proxy, made from the identity
// thread, where blocking is fine and an idle connection kept between calls would only cost
// memory. The server's certificate must chain to `trust_anchors_pem` and name `server_name`.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "weft/common/result.h"

namespace weft::grpc {

struct UnaryTarget {
  std::string address;            // IP:PORT or [IPv6]:PORT
  std::string server_name;        // SNI and the DNS SAN the server must prove
  std::string trust_anchors_pem;  // roots
  std::chrono::milliseconds timeout{10'000};  // the whole call: connect to last byte
};

struct UnaryResponse {
  int grpc_status = 0;            // 0 OK; see grpc::StatusCode for the rest
  std::string grpc_message;
  std::string message;            // the response message bytes (protobuf), when status is 0
};

// Error kinds: "connect" (TCP), "tls" (handshake or verification, with OpenSSL's reason),
// "timeout", "protocol" (HTTP/2 or gRPC framing), "http_status" (non-200).
Result<UnaryResponse> unaryCall(const UnaryTarget& target, std::string_view method_path,
                                std::string_view request_message);

}  // namespace weft::grpc
