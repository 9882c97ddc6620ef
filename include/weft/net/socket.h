// Socket facts the kernel knows and Asio does not expose: the pre-NAT destination, abortive
// close, and errno names for metric labels.
#pragma once

#include <asio/ip/tcp.hpp>
#include <string>

#include "weft/common/result.h"

namespace weft::net {

// The destination the client dialled before iptables REDIRECTed it to us: SO_ORIGINAL_DST for
// IPv4, IP6T_SO_ORIGINAL_DST for IPv6 (both read the conntrack entry). Fails with
// "no_original_dst" when the connection was not NATed and conntrack has no entry.
Result<asio::ip::tcp::endpoint> originalDestination(asio::ip::tcp::socket& socket);

// Makes the next close() send RST instead of FIN (SO_LINGER with a zero timeout), so a reset
// seen on one side is propagated to the other.
void setResetOnClose(asio::ip::tcp::socket& socket);

// "ECONNRESET" for ECONNRESET, "" for 0; "E<n>" when glibc has no name.
std::string errnoName(int err);

// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool isLoopback(const asio::ip::address& address);

// An IPv4-mapped IPv6 address as plain IPv4; others unchanged.
asio::ip::address unmapped(const asio::ip::address& address);

}  // namespace weft::net
