// Fuzzes the proxy's decoding of weft.destination.v1.Update (proxy/discovery): the bytes come from
// the destination service over the network. Each input is applied to an empty set, then again
// onto the result (as a later update) and as a reconnected stream's first update. Whatever the
// input, the set must hold each address once and only addresses with a port.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "proxy/discovery/destination_client.h"

namespace {

void check(const weft::proxy::Discovery& d) {
  std::set<asio::ip::tcp::endpoint> seen;
  for (const auto& e : d.endpoints) {
    if (e.addr.port() == 0 || !seen.insert(e.addr).second) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  weft::proxy::Discovery d;
  if (!weft::proxy::applyUpdate(in, d)) return 0;
  check(d);
  if (weft::proxy::applyUpdate(in, d)) check(d);
  if (weft::proxy::applyFirstUpdate(in, d)) check(d);
  return 0;
}
