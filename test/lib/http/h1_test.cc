// fromHttp1: what of a parsed HTTP/1 request head the proxy forwards. Hop-by-hop fields, and the
// fields the Connection header names, stay on their hop (RFC 9110 §7.6.1); everything else goes
// on, in order, with its case.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "weft/http/h1.h"

namespace weft::http {
namespace {

Fields forwarded(const std::string& head) {
  http1::RequestHeadParser parser;
  auto r = parser.feed(head);
  EXPECT_EQ(r.state, http1::ParseState::kDone) << head;
  return fromHttp1(parser.head()).headers;
}

std::vector<std::string> names(const Fields& f) {
  std::vector<std::string> out;
  for (const auto& field : f) out.push_back(field.name);
  return out;
}

TEST(FromHttp1, DropsHopByHopAndConnectionListedFieldsKeepsTheRestInOrder) {
  const Fields f = forwarded(
      "GET / HTTP/1.1\r\n"
      "Host: svc\r\n"
      "X-First: 1\r\n"
      "Connection: keep-alive, X-Secret , close\r\n"
      "Keep-Alive: timeout=5\r\n"
      "X-Secret: s\r\n"
      "TE: trailers\r\n"
      "Close: c\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "x-last: 2\r\n"
      "\r\n");
  EXPECT_EQ(names(f), (std::vector<std::string>{"Host", "X-First", "x-last"}));
  EXPECT_EQ(f[1].value, "1");
  EXPECT_EQ(f[2].value, "2");
}

TEST(FromHttp1, NothingToDropKeepsEveryField) {
  const Fields f = forwarded("GET / HTTP/1.1\r\nHost: svc\r\nA: 1\r\nB: 2\r\n\r\n");
  EXPECT_EQ(names(f), (std::vector<std::string>{"Host", "A", "B"}));
}

TEST(FromHttp1, ManyConnectionTokensAreAllHonoured) {
  // Many names listed in Connection: every one is honoured.
  std::string head = "GET / HTTP/1.1\r\nHost: svc\r\nConnection: ";
  std::string fields;
  for (int i = 0; i < 20; ++i) {
    head += (i ? ", " : "") + std::string("x-t") + std::to_string(i);
    fields += "X-T" + std::to_string(i) + ": v\r\n";
  }
  head += "\r\n" + fields + "X-Kept: k\r\n\r\n";
  EXPECT_EQ(names(forwarded(head)), (std::vector<std::string>{"Host", "X-Kept"}));
}

TEST(FromHttp1, ManyFieldsAreAllJudged) {
  // A long head: fields far down the list are judged like the first.
  std::string head = "GET / HTTP/1.1\r\nHost: svc\r\nConnection: x-gone\r\n";
  std::vector<std::string> want{"Host"};
  for (int i = 0; i < 80; ++i) {
    head += "X-F" + std::to_string(i) + ": v\r\n";
    want.push_back("X-F" + std::to_string(i));
    if (i == 70) head += "X-Gone: g\r\nUpgrade: h2c\r\n";
  }
  head += "\r\n";
  EXPECT_EQ(names(forwarded(head)), want);
}

}  // namespace
}  // namespace weft::http
