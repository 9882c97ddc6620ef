// Fuzzes the proxy's protobuf wire decoder (it reads CertifyResponse from the network) and the
// transport header parser (the first bytes inside inbound mesh TLS).
#include <cstdint>
#include <cstring>
#include <string_view>

#include "weft/grpc/wire.h"
#include "weft/tls/transport_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  int depth = 0;
  std::function<bool(const weft::grpc::wire::Field&)> visit = [&](const weft::grpc::wire::Field& f) {
    if (f.type == weft::grpc::wire::kLengthDelimited && depth < 4) {
      ++depth;
      weft::grpc::wire::forEachField(f.bytes, visit);  // nested messages, as Timestamp is
      --depth;
    }
    return true;
  };
  weft::grpc::wire::forEachField(in, visit);
  if (size >= weft::tls::kTransportHeaderSize) {
    std::array<uint8_t, weft::tls::kTransportHeaderSize> h{};
    std::memcpy(h.data(), data, h.size());
    (void)weft::tls::parseTransportHeader(h);
  }
  return 0;
}
