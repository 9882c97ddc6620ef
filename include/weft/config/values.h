// Parsers for the value syntaxes of WEFT_* settings (docs/proxy-config.md), shared by every binary.
// Each returns an Error whose context says the accepted form, so a caller can name the variable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/result.h"

namespace weft::config {

// "500ms", "10s", "2m", "1h", or a sum of them ("1m30s"). Bare numbers are refused: a unit is
// required so "10" can never mean ten milliseconds to one reader and ten seconds to another.
Result<std::chrono::milliseconds> parseDuration(std::string_view text);
std::string formatDuration(std::chrono::milliseconds d);

// An inclusive port range; a single port has first == last.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  bool operator==(const PortRange&) const = default;
};

// A set of TCP ports: "25,587,3306", ranges "8000-8010", spaces allowed around items, empty text
// is the empty set. Port 0 and reversed ranges are refused.
class PortSet {
 public:
  PortSet() = default;
  static Result<PortSet> parse(std::string_view text);

  [[nodiscard]] bool contains(uint16_t port) const;
  [[nodiscard]] bool empty() const { return ranges_.empty(); }
  [[nodiscard]] const std::vector<PortRange>& ranges() const { return ranges_; }
  // Canonical text: sorted, merged, "a,b-c".
  [[nodiscard]] std::string toString() const;

 private:
  std::vector<PortRange> ranges_;  // sorted and merged
};

// "host:port" where host is an IPv4 literal, or "[v6]:port". Names are refused: a proxy's
// listen address must not depend on DNS.
struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
  bool ipv6 = false;
  [[nodiscard]] std::string toString() const;
};
Result<HostPort> parseHostPort(std::string_view text);

// A CIDR subnet "10.0.0.0/8" or "fd00::/8".
struct Subnet {
  std::string address;  // the network address as written, normalised
  int prefix = 0;
  bool ipv6 = false;
  [[nodiscard]] std::string toString() const;
};
Result<Subnet> parseSubnet(std::string_view text);
// Comma-separated subnets; empty text is none.
Result<std::vector<Subnet>> parseSubnets(std::string_view text);

// "1", "true", "yes", "on" / "0", "false", "no", "off" (any case).
Result<bool> parseBool(std::string_view text);

}  // namespace weft::config
