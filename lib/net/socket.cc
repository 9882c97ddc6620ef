#include "weft/net/socket.h"

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace weft::net {

Result<asio::ip::tcp::endpoint> originalDestination(asio::ip::tcp::socket& socket) {
  asio::error_code ec;
  auto local = socket.local_endpoint(ec);
  if (ec) return Error{"no_original_dst", ErrorSource::kDownstream, ec.message(), ec.value()};
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  int rc = -1;
  if (local.address().is_v4() || local.address().to_v6().is_v4_mapped()) {
    rc = getsockopt(socket.native_handle(), SOL_IP, SO_ORIGINAL_DST, &ss, &len);
  } else {
    rc = getsockopt(socket.native_handle(), SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len);
  }
  if (rc != 0) {
    int err = errno;
    return Error{"no_original_dst", ErrorSource::kDownstream, std::strerror(err), err};
  }
  asio::ip::tcp::endpoint ep;
  std::memcpy(ep.data(), &ss, std::min<std::size_t>(len, ep.capacity()));
  ep.resize(len);
  return ep;
}

void setResetOnClose(asio::ip::tcp::socket& socket) {
  asio::error_code ec;
  socket.set_option(asio::socket_base::linger(true, 0), ec);  // best effort: the socket may be gone
}

std::string errnoName(int err) {
  if (err == 0) return {};
  if (const char* name = strerrorname_np(err)) return name;
  return "E" + std::to_string(err);
}

bool isLoopback(const asio::ip::address& address) { return unmapped(address).is_loopback(); }

asio::ip::address unmapped(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address;
}

}  // namespace weft::net
