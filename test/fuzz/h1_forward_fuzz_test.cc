// Fuzzes what the proxy forwards for an HTTP/1 request: parse (strict codec) -> protocol-neutral
// head (http::fromHttp1) -> re-emitted head (http::serializeRequestHead), the exact bytes the
// proxy writes upstream. The property that matters for request smuggling: whatever we accept, we
// re-emit as a head that a strict parser reads back whole, as the same request (method, target,
// version, end-to-end fields in order) with the same body framing, and nothing after it.
// Seed corpus: http1_corpus/ (shared with http1_fuzz_test; replayed as a unit test).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "weft/common/assert.h"
#include "weft/http/h1.h"
#include "weft/http1/codec.h"

namespace {

using weft::http1::BodyFraming;
using weft::http1::ParseState;
using weft::http1::RequestHeadParser;

void check(std::string_view input) {
  RequestHeadParser parser;
  auto r = parser.feed(input);
  if (r.state != ParseState::kDone) return;
  weft::http1::RequestHead original = parser.head();  // keep a copy: fromHttp1 moves out
  if (!original.upgrade.empty() || original.method == "CONNECT") return;  // relayed as TCP
  weft::http::RequestHead neutral = weft::http::fromHttp1(parser.head());
  const bool chunked = neutral.chunked;
  const std::string out = weft::http::serializeRequestHead(neutral, chunked);

  RequestHeadParser again;
  auto r2 = again.feed(out);
  WEFT_RELEASE_ASSERT(r2.state == ParseState::kDone, "re-emitted head does not parse");
  WEFT_RELEASE_ASSERT(r2.consumed == out.size(), "re-emitted head has bytes after it");
  const auto& h = again.head();
  WEFT_RELEASE_ASSERT(h.method == original.method, "method changed");
  WEFT_RELEASE_ASSERT(h.target == original.target, "target changed");
  WEFT_RELEASE_ASSERT(h.version == original.version, "version changed");
  WEFT_RELEASE_ASSERT(h.framing.kind == original.framing.kind, "framing kind changed");
  if (h.framing.kind == BodyFraming::Kind::kContentLength) {
    WEFT_RELEASE_ASSERT(h.framing.length == original.framing.length, "content-length changed");
  }
  WEFT_RELEASE_ASSERT(h.authority == original.authority || original.authority.empty(), "authority changed");
  // Every end-to-end field survives, in order, as sent.
  std::size_t i = 0;
  for (const auto& f : neutral.headers) {
    while (i < h.headers.all().size() && h.headers.all()[i].name != f.name) ++i;
    WEFT_RELEASE_ASSERT(i < h.headers.all().size() && h.headers.all()[i].value == f.value,
                        "an end-to-end field was lost or changed");
    ++i;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  check(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
