#include "weft/config/values.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace weft::config {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

template <typename T>
bool parseUnsigned(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

Error invalid(std::string_view text, std::string_view form) {
  return Error::internal("invalid_value",
                         "\"" + std::string(text) + "\" is not " + std::string(form));
}

constexpr std::string_view kDurationForm =
    "a duration with a unit, such as 500ms, 10s, 2m, 1h or 1m30s";
constexpr std::string_view kPortsForm =
    "a comma-separated list of ports (1-65535) and ranges, such as 25,587,8000-8010";

}  // namespace

Result<std::chrono::milliseconds> parseDuration(std::string_view text) {
  std::string_view s = trim(text);
  if (s.empty()) return invalid(text, kDurationForm);
  std::chrono::milliseconds total{0};
  while (!s.empty()) {
    std::size_t digits = 0;
    while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
    uint64_t n = 0;
    if (digits == 0 || !parseUnsigned(s.substr(0, digits), &n)) return invalid(text, kDurationForm);
    s.remove_prefix(digits);
    std::size_t unit_len = 0;
    while (unit_len < s.size() && std::isalpha(static_cast<unsigned char>(s[unit_len]))) ++unit_len;
    std::string_view unit = s.substr(0, unit_len);
    s.remove_prefix(unit_len);
    uint64_t factor = 0;
    if (unit == "ms") factor = 1;
    else if (unit == "s") factor = 1000;
    else if (unit == "m") factor = 60'000;
    else if (unit == "h") factor = 3'600'000;
    else return invalid(text, kDurationForm);
    // Anything over ~a year is surely a typo, and this bound keeps the multiply from overflowing.
    if (n > 365ULL * 24 * 3'600'000 / factor) return invalid(text, kDurationForm);
    total += std::chrono::milliseconds(n * factor);
  }
  return total;
}

std::string formatDuration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

Result<PortSet> PortSet::parse(std::string_view text) {
  PortSet set;
  std::string_view rest = text;
  while (!trim(rest).empty()) {
    auto comma = rest.find(',');
    std::string_view item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    if (item.empty()) return invalid(text, kPortsForm);
    auto dash = item.find('-');
    uint32_t first = 0;
    uint32_t last = 0;
    if (dash == std::string_view::npos) {
      if (!parseUnsigned(item, &first)) return invalid(text, kPortsForm);
      last = first;
    } else if (!parseUnsigned(trim(item.substr(0, dash)), &first) ||
               !parseUnsigned(trim(item.substr(dash + 1)), &last)) {
      return invalid(text, kPortsForm);
    }
    if (first == 0 || last > 65535 || first > last) return invalid(text, kPortsForm);
    set.ranges_.push_back({static_cast<uint16_t>(first), static_cast<uint16_t>(last)});
  }
  std::sort(set.ranges_.begin(), set.ranges_.end(),
            [](const PortRange& a, const PortRange& b) { return a.first < b.first; });
  std::vector<PortRange> merged;
  for (const auto& r : set.ranges_) {
    if (!merged.empty() && r.first <= static_cast<uint32_t>(merged.back().last) + 1) {
      merged.back().last = std::max(merged.back().last, r.last);
    } else {
      merged.push_back(r);
    }
  }
  set.ranges_ = std::move(merged);
  return set;
}

bool PortSet::contains(uint16_t port) const {
  // Few ranges in practice (the default opaque list has 8); a linear scan beats a binary search.
  for (const auto& r : ranges_) {
    if (port < r.first) return false;
    if (port <= r.last) return true;
  }
  return false;
}

std::string PortSet::toString() const {
  std::string out;
  for (const auto& r : ranges_) {
    if (!out.empty()) out += ',';
    out += std::to_string(r.first);
    if (r.last != r.first) out += "-" + std::to_string(r.last);
  }
  return out;
}

std::string HostPort::toString() const {
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HostPort> parseHostPort(std::string_view text) {
  constexpr std::string_view kForm = "an address as IPv4:PORT or [IPv6]:PORT, such as 0.0.0.0:4143";
  std::string_view s = trim(text);
  HostPort hp;
  std::string_view host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return invalid(text, kForm);
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    hp.ipv6 = true;
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return invalid(text, kForm);
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  uint32_t p = 0;
  if (!parseUnsigned(port, &p) || p > 65535) return invalid(text, kForm);
  unsigned char buf[sizeof(in6_addr)];
  std::string h(host);
  if (inet_pton(hp.ipv6 ? AF_INET6 : AF_INET, h.c_str(), buf) != 1) return invalid(text, kForm);
  char norm[INET6_ADDRSTRLEN];
  inet_ntop(hp.ipv6 ? AF_INET6 : AF_INET, buf, norm, sizeof(norm));
  hp.host = norm;
  hp.port = static_cast<uint16_t>(p);
  return hp;
}

std::string Subnet::toString() const { return address + "/" + std::to_string(prefix); }

Result<Subnet> parseSubnet(std::string_view text) {
  constexpr std::string_view kForm = "a CIDR subnet such as 10.0.0.0/8 or fd00::/8";
  std::string_view s = trim(text);
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return invalid(text, kForm);
  std::string addr(s.substr(0, slash));
  Subnet sn;
  sn.ipv6 = addr.find(':') != std::string::npos;
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(sn.ipv6 ? AF_INET6 : AF_INET, addr.c_str(), buf) != 1) return invalid(text, kForm);
  uint32_t prefix = 0;
  if (!parseUnsigned(s.substr(slash + 1), &prefix) || prefix > (sn.ipv6 ? 128U : 32U)) {
    return invalid(text, kForm);
  }
  char norm[INET6_ADDRSTRLEN];
  inet_ntop(sn.ipv6 ? AF_INET6 : AF_INET, buf, norm, sizeof(norm));
  sn.address = norm;
  sn.prefix = static_cast<int>(prefix);
  return sn;
}

Result<std::vector<Subnet>> parseSubnets(std::string_view text) {
  std::vector<Subnet> out;
  std::string_view rest = text;
  while (!trim(rest).empty()) {
    auto comma = rest.find(',');
    auto sn = parseSubnet(rest.substr(0, comma));
    if (!sn) return sn.error();
    out.push_back(std::move(sn).value());
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  return out;
}

Result<bool> parseBool(std::string_view text) {
  std::string s(trim(text));
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  return invalid(text, "a boolean: true/false, 1/0, yes/no or on/off");
}

}  // namespace weft::config
