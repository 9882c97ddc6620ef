// The transport header: the first bytes a client proxy sends inside mesh TLS, naming the port
// its application dialled (SPEC §2: opaque TCP rides mTLS "with a small header naming the target
// port"). With it the server proxy does not depend on its own iptables rules to learn the port,
// so a client proxy may also connect straight to the inbound port.
//
//   "WEFT" | version (1) | flags | port (big-endian u16)      -- 8 bytes
//
// Flags: 0 = the application's bytes follow as they are (opaque TCP, or an HTTP/1 upgrade
// tunnel); kTransportH2 = an HTTP/2 connection between the two proxies follows, multiplexing the
// requests for that port (HTTP/1 requests tagged with weft-orig-proto). Other bits: refused.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

namespace weft::tls {

inline constexpr std::size_t kTransportHeaderSize = 8;

inline constexpr uint8_t kTransportH2 = 1;

struct TransportHeader {
  uint16_t port = 0;
  uint8_t flags = 0;
  [[nodiscard]] bool h2() const { return (flags & kTransportH2) != 0; }
  bool operator==(const TransportHeader&) const = default;
};

inline std::array<uint8_t, kTransportHeaderSize> makeTransportHeader(uint16_t port, uint8_t flags = 0) {
  return {'W', 'E', 'F', 'T', 1, flags, static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port & 0xff)};
}

// The header, or nullopt for anything that is not a version-1 header with known flags and a
// non-zero port.
inline std::optional<TransportHeader> parseTransportHeader(std::span<const uint8_t, kTransportHeaderSize> h) {
  if (h[0] != 'W' || h[1] != 'E' || h[2] != 'F' || h[3] != 'T' || h[4] != 1 ||
      (h[5] & ~kTransportH2) != 0) {
    return std::nullopt;
  }
  auto port = static_cast<uint16_t>((h[6] << 8) | h[7]);
  if (port == 0) return std::nullopt;
  return TransportHeader{port, h[5]};
}

}  // namespace weft::tls
