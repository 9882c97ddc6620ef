// The protobuf wire format (varints and length-delimited fields), enough to encode and decode
// the proxy's control-plane messages by hand.
//
// Why not libprotobuf in the proxy: linking libprotobuf + grpc++ raises weft-proxy's idle RSS
// from 4.1 MB to 12.8 MB (measured, 2026-11-26) just by being loaded, against a budget of 10 MB
// (SPEC §8). The control plane, where memory is not per-pod, uses the generated code; the
// proxy's handful of messages are encoded here and tested against it (test/lib/grpc).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace weft::grpc::wire {

enum WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void putVarint(std::string& out, uint64_t v);
void putBytes(std::string& out, uint32_t field, std::string_view v);
void putUint64(std::string& out, uint32_t field, uint64_t v);

struct Field {
  uint32_t number = 0;
  WireType type = kVarint;
  uint64_t varint = 0;      // kVarint, kFixed32, kFixed64
  std::string_view bytes;   // kLengthDelimited
};

// Calls `fn` for each field of `msg` in order. Returns false on malformed input (truncated
// varint or length, field number 0, deprecated group wire types) or when `fn` returns false.
// Untrusted input: never reads past `msg`.
bool forEachField(std::string_view msg, const std::function<bool(const Field&)>& fn);

}  // namespace weft::grpc::wire
