// The transport header: the first bytes a client proxy sends inside mesh TLS, naming the port
// its application dialled (SPEC §2: opaque TCP rides mTLS "with a small header naming the target
// port"). With it the server proxy does not depend on its own iptables rules to learn the port,
// so a client proxy may also connect straight to the inbound port.
//
//   "WEFT" | version (1) | flags (0) | port (big-endian u16)      -- 8 bytes
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

namespace weft::tls {

inline constexpr std::size_t kTransportHeaderSize = 8;

inline std::array<uint8_t, kTransportHeaderSize> makeTransportHeader(uint16_t port) {
  return {'W', 'E', 'F', 'T', 1, 0, static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port & 0xff)};
}

// The port, or nullopt for anything that is not a version-1 header with a non-zero port.
inline std::optional<uint16_t> parseTransportHeader(std::span<const uint8_t, kTransportHeaderSize> h) {
  if (h[0] != 'W' || h[1] != 'E' || h[2] != 'F' || h[3] != 'T' || h[4] != 1 || h[5] != 0) {
    return std::nullopt;
  }
  auto port = static_cast<uint16_t>((h[6] << 8) | h[7]);
  if (port == 0) return std::nullopt;
  return port;
}

}  // namespace weft::tls
