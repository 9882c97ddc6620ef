#include "weft/grpc/wire.h"

namespace weft::grpc::wire {

void putVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void putBytes(std::string& out, uint32_t field, std::string_view v) {
  putVarint(out, (static_cast<uint64_t>(field) << 3) | kLengthDelimited);
  putVarint(out, v.size());
  out.append(v);
}

void putUint64(std::string& out, uint32_t field, uint64_t v) {
  putVarint(out, (static_cast<uint64_t>(field) << 3) | kVarint);
  putVarint(out, v);
}

namespace {

bool readVarint(std::string_view& in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;  // more than 10 bytes
}

}  // namespace

bool forEachField(std::string_view msg, const std::function<bool(const Field&)>& fn) {
  while (!msg.empty()) {
    uint64_t tag = 0;
    if (!readVarint(msg, &tag)) return false;
    Field f;
    const uint64_t number = tag >> 3;
    if (number == 0 || number > 0x1fffffff) return false;
    f.number = static_cast<uint32_t>(number);
    switch (tag & 7) {
      case kVarint:
        f.type = kVarint;
        if (!readVarint(msg, &f.varint)) return false;
        break;
      case kFixed64:
      case kFixed32: {
        const std::size_t n = (tag & 7) == kFixed64 ? 8 : 4;
        if (msg.size() < n) return false;
        f.type = (tag & 7) == kFixed64 ? kFixed64 : kFixed32;
        for (std::size_t i = 0; i < n; ++i) {
          f.varint |= static_cast<uint64_t>(static_cast<uint8_t>(msg[i])) << (8 * i);
        }
        msg.remove_prefix(n);
        break;
      }
      case kLengthDelimited: {
        uint64_t len = 0;
        if (!readVarint(msg, &len) || len > msg.size()) return false;
        f.type = kLengthDelimited;
        f.bytes = msg.substr(0, len);
        msg.remove_prefix(len);
        break;
      }
      default:
        return false;  // groups (3, 4) are deprecated and never used by our messages
    }
    if (!fn(f)) return false;
  }
  return true;
}

}  // namespace weft::grpc::wire
