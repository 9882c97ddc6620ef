// Tests for the HTTP/1 codec (include/weft/http1/codec.h). The rejection tables name each vector
// listed in docs/dev/http1-parser.md; every row asserts the exact status and error kind.
#include "weft/http1/codec.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace weft::http1 {
namespace {

using K = BodyFraming::Kind;

struct Outcome {
  ParseState state = ParseState::kNeedMore;
  std::size_t consumed = 0;
  ParseError error;
};

// Feeds `in` whole, or one byte at a time; consumed is the total over all calls.
Outcome parseRequest(std::string_view in, RequestHead* out = nullptr, Limits limits = {},
                     bool bytewise = false) {
  RequestHeadParser p(limits);
  Outcome o;
  if (!bytewise) {
    const FeedResult r = p.feed(in);
    o = Outcome{r.state, r.consumed, r.error};
  } else {
    for (std::size_t i = 0; i < in.size(); ++i) {
      const FeedResult r = p.feed(in.substr(i, 1));
      o = Outcome{r.state, o.consumed + r.consumed, r.error};
      if (r.state != ParseState::kNeedMore) break;
    }
  }
  if (out && o.state == ParseState::kDone) *out = p.head();
  return o;
}

Outcome parseResponse(std::string_view in, std::string_view method = "GET",
                      ResponseHead* out = nullptr, bool bytewise = false) {
  ResponseHeadParser p(method);
  Outcome o;
  if (!bytewise) {
    const FeedResult r = p.feed(in);
    o = Outcome{r.state, r.consumed, r.error};
  } else {
    for (std::size_t i = 0; i < in.size(); ++i) {
      const FeedResult r = p.feed(in.substr(i, 1));
      o = Outcome{r.state, o.consumed + r.consumed, r.error};
      if (r.state != ParseState::kNeedMore) break;
    }
  }
  if (out && o.state == ParseState::kDone) *out = p.head();
  return o;
}

// ---------------------------------------------------------------------------------------------
// Request rejections

struct RejectCase {
  const char* name;
  std::string input;
  int status;
  const char* kind;
};

std::ostream& operator<<(std::ostream& os, const RejectCase& c) { return os << c.name; }

class RequestRejectTest : public ::testing::TestWithParam<RejectCase> {};

TEST_P(RequestRejectTest, RejectsWithExactStatus) {
  const RejectCase& c = GetParam();
  for (bool bytewise : {false, true}) {
    const Outcome o = parseRequest(c.input, nullptr, Limits{}, bytewise);
    ASSERT_EQ(o.state, ParseState::kError) << c.name << (bytewise ? " (bytewise)" : "");
    EXPECT_EQ(o.error.status, c.status) << c.name;
    EXPECT_EQ(o.error.kind, c.kind) << c.name;
  }
}

const std::string kH = "Host: a.example\r\n";
const std::string kPost = "POST /p HTTP/1.1\r\n" + kH;

INSTANTIATE_TEST_SUITE_P(
    Vectors, RequestRejectTest,
    ::testing::Values(
        // Content-Length / Transfer-Encoding smuggling (CL.CL, CL.TE, TE.TE).
        RejectCase{"ContentLengthConflicting",
                   kPost + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
                   "duplicate_content_length"},
        RejectCase{"ContentLengthRepeatedIdentical",
                   kPost + "Content-Length: 1\r\nContent-Length: 1\r\n\r\n", 400,
                   "duplicate_content_length"},
        RejectCase{"ContentLengthList", kPost + "Content-Length: 1, 1\r\n\r\n", 400,
                   "invalid_content_length"},
        RejectCase{"ContentLengthNegative", kPost + "Content-Length: -1\r\n\r\n", 400,
                   "invalid_content_length"},
        RejectCase{"ContentLengthPlusSign", kPost + "Content-Length: +1\r\n\r\n", 400,
                   "invalid_content_length"},
        RejectCase{"ContentLengthHex", kPost + "Content-Length: 0x10\r\n\r\n", 400,
                   "invalid_content_length"},
        RejectCase{"ContentLengthEmpty", kPost + "Content-Length: \r\n\r\n", 400,
                   "invalid_content_length"},
        RejectCase{"ContentLengthInnerSpace", kPost + "Content-Length: 1 2\r\n\r\n", 400,
                   "invalid_content_length"},
        RejectCase{"ContentLengthOverflow", kPost + "Content-Length: 99999999999999999999\r\n\r\n",
                   400, "invalid_content_length"},
        RejectCase{"ContentLengthWithTransferEncoding",
                   kPost + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                   "content_length_with_transfer_encoding"},
        RejectCase{"TransferEncodingWithContentLength",
                   kPost + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
                   "content_length_with_transfer_encoding"},
        RejectCase{"TransferEncodingUnknownOnly", kPost + "Transfer-Encoding: xchunked\r\n\r\n",
                   400, "transfer_encoding_not_chunked"},
        RejectCase{"TransferEncodingChunkedNotFinal",
                   kPost + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400,
                   "transfer_encoding_not_chunked"},
        RejectCase{"TransferEncodingIdentity", kPost + "Transfer-Encoding: identity\r\n\r\n", 400,
                   "transfer_encoding_not_chunked"},
        RejectCase{"TransferEncodingChunkedTwiceOneLine",
                   kPost + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400,
                   "transfer_encoding_chunked_twice"},
        RejectCase{"TransferEncodingChunkedTwiceTwoLines",
                   kPost + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                   "transfer_encoding_chunked_twice"},
        RejectCase{"TransferEncodingGzipThenChunked",
                   kPost + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501,
                   "unsupported_transfer_coding"},
        RejectCase{"TransferEncodingEmptyElement", kPost + "Transfer-Encoding: , chunked\r\n\r\n",
                   400, "invalid_transfer_encoding"},
        RejectCase{"TransferEncodingEmpty", kPost + "Transfer-Encoding: \r\n\r\n", 400,
                   "invalid_transfer_encoding"},
        RejectCase{"TransferEncodingChunkedWithParameter",
                   kPost + "Transfer-Encoding: chunked;q=1\r\n\r\n", 400,
                   "transfer_encoding_not_chunked"},
        RejectCase{"TransferEncodingOnHttp10",
                   "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                   "transfer_encoding_http10"},
        RejectCase{"TransferEncodingVerticalTab", kPost + "Transfer-Encoding: \vchunked\r\n\r\n",
                   400, "invalid_header_value"},
        // Line structure.
        RejectCase{"ObsFoldSpace", "GET / HTTP/1.1\r\n" + kH + "X: a\r\n b\r\n\r\n", 400,
                   "obs_fold"},
        RejectCase{"ObsFoldTab", "GET / HTTP/1.1\r\n" + kH + "X: a\r\n\tb\r\n\r\n", 400,
                   "obs_fold"},
        RejectCase{"WhitespaceBeforeFirstHeader", "GET / HTTP/1.1\r\n " + kH + "\r\n", 400,
                   "obs_fold"},
        RejectCase{"BareLfAfterRequestLine", "GET / HTTP/1.1\n" + kH + "\r\n", 400, "bare_lf"},
        RejectCase{"BareLfAfterHeader", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare_lf"},
        RejectCase{"BareLfEndOfHead", "GET / HTTP/1.1\r\n" + kH + "\n", 400, "bare_lf"},
        RejectCase{"BareCrInValue", "GET / HTTP/1.1\r\n" + kH + "X: a\rb\r\n\r\n", 400, "bare_cr"},
        RejectCase{"BareCrInRequestLine", "GET /\r HTTP/1.1\r\n" + kH + "\r\n", 400, "bare_cr"},
        RejectCase{"BareCrAsLineEnd", "GET / HTTP/1.1\r\n" + kH + "X: a\r\r\n\r\n", 400, "bare_cr"},
        RejectCase{"NulInValue", "GET / HTTP/1.1\r\n" + kH + std::string("X: a\0b\r\n\r\n", 10),
                   400, "invalid_header_value"},
        RejectCase{"NulInName", "GET / HTTP/1.1\r\n" + kH + std::string("X\0: a\r\n\r\n", 9), 400,
                   "invalid_header_name"},
        RejectCase{"CtlInValue", "GET / HTTP/1.1\r\n" + kH + "X: a\x01\r\n\r\n", 400,
                   "invalid_header_value"},
        RejectCase{"DelInValue", "GET / HTTP/1.1\r\n" + kH + "X: a\x7f\r\n\r\n", 400,
                   "invalid_header_value"},
        RejectCase{"SpaceBeforeColon", "GET / HTTP/1.1\r\n" + kH + "X : a\r\n\r\n", 400,
                   "space_before_colon"},
        RejectCase{"TabBeforeColon", "GET / HTTP/1.1\r\n" + kH + "Content-Length\t: 1\r\n\r\n", 400,
                   "space_before_colon"},
        RejectCase{"NonTcharInName", "GET / HTTP/1.1\r\n" + kH + "X(y): a\r\n\r\n", 400,
                   "invalid_header_name"},
        RejectCase{"NonAsciiInName", "GET / HTTP/1.1\r\n" + kH + "X\xc3\xa9: a\r\n\r\n", 400,
                   "invalid_header_name"},
        RejectCase{"EmptyName", "GET / HTTP/1.1\r\n" + kH + ": a\r\n\r\n", 400,
                   "empty_header_name"},
        RejectCase{"NoColon", "GET / HTTP/1.1\r\n" + kH + "Xa\r\n\r\n", 400, "missing_colon"},
        // Request line.
        RejectCase{"LeadingEmptyLine", "\r\nGET / HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "empty_request_line"},
        RejectCase{"MethodNonToken", "G(T / HTTP/1.1\r\n" + kH + "\r\n", 400, "invalid_method"},
        RejectCase{"MethodEmpty", " / HTTP/1.1\r\n" + kH + "\r\n", 400, "invalid_method"},
        RejectCase{"MethodNonAscii", "G\xc3\x89T / HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_method"},
        RejectCase{"TwoSpacesAfterMethod", "GET  / HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_target"},
        RejectCase{"TargetWithTab", "GET /a\tb HTTP/1.1\r\n" + kH + "\r\n", 400, "invalid_target"},
        RejectCase{"TargetWithDel", "GET /a\x7f HTTP/1.1\r\n" + kH + "\r\n", 400, "invalid_target"},
        RejectCase{"TargetNonAscii", "GET /\xc3\xa9 HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_target"},
        RejectCase{"TargetWithNul", "GET /" + std::string(1, '\0') + " HTTP/1.1\r\n" + kH + "\r\n",
                   400, "invalid_target"},
        RejectCase{"TargetWithSpace", "GET /a b HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_version"},
        RejectCase{"TargetWithFragment", "GET /a#b HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_target"},
        RejectCase{"TargetRelative", "GET a/b HTTP/1.1\r\n" + kH + "\r\n", 400, "invalid_target"},
        RejectCase{"TargetUnknownScheme", "GET ftp://a.example/ HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_target"},
        RejectCase{"TargetUserinfo", "GET http://u@a.example/ HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_target"},
        RejectCase{"AsteriskNotOptions", "GET * HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "asterisk_form_not_options"},
        RejectCase{"ConnectOriginForm", "CONNECT / HTTP/1.1\r\n" + kH + "\r\n", 400,
                   "invalid_authority_form"},
        RejectCase{"ConnectWithoutPort", "CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n",
                   400, "invalid_authority_form"},
        RejectCase{
            "ConnectWithBody",
            "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nContent-Length: 3\r\n\r\n",
            400, "connect_with_body"},
        RejectCase{"VersionHttp12", "GET / HTTP/1.2\r\n" + kH + "\r\n", 505, "unsupported_version"},
        RejectCase{"VersionHttp20", "GET / HTTP/2.0\r\n" + kH + "\r\n", 505, "unsupported_version"},
        RejectCase{"VersionHttp09", "GET / HTTP/0.9\r\n" + kH + "\r\n", 505, "unsupported_version"},
        RejectCase{"VersionLowercase", "GET / http/1.1\r\n" + kH + "\r\n", 400, "invalid_version"},
        RejectCase{"VersionTwoDigitMinor", "GET / HTTP/1.10\r\n" + kH + "\r\n", 400,
                   "invalid_version"},
        RejectCase{"VersionMissing", "GET /\r\n" + kH + "\r\n", 400, "invalid_request_line"},
        RejectCase{"TrailingSpaceAfterVersion", "GET / HTTP/1.1 \r\n" + kH + "\r\n", 400,
                   "invalid_version"},
        // Host.
        RejectCase{"Http11WithoutHost", "GET / HTTP/1.1\r\n\r\n", 400, "missing_host"},
        RejectCase{"MultipleHost", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
                   "multiple_host"},
        RejectCase{"MultipleHostIdentical", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400,
                   "multiple_host"},
        RejectCase{"MultipleHostHttp10", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400,
                   "multiple_host"},
        RejectCase{"HostWithSpace", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid_host"},
        RejectCase{"HostWithUserinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, "invalid_host"},
        RejectCase{"HostEmpty", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400, "invalid_host"},
        RejectCase{"HostList", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400, "invalid_host"},
        RejectCase{"AbsoluteFormHostMismatch",
                   "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", 400,
                   "host_mismatch"},
        RejectCase{"AbsoluteFormHostPortMismatch",
                   "GET http://a.example:8080/ HTTP/1.1\r\nHost: a.example\r\n\r\n", 400,
                   "host_mismatch"},
        RejectCase{"AbsoluteFormWithoutHost", "GET http://a.example/ HTTP/1.1\r\n\r\n", 400,
                   "missing_host"},
        RejectCase{"ConnectHostMismatch",
                   "CONNECT a.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n", 400,
                   "host_mismatch"},
        // Other fields.
        RejectCase{"ExpectUnknown", "GET / HTTP/1.1\r\n" + kH + "Expect: 200-ok\r\n\r\n", 417,
                   "unsupported_expectation"},
        RejectCase{"ConnectionEmptyElement",
                   "GET / HTTP/1.1\r\n" + kH + "Connection: close,\r\n\r\n", 400,
                   "invalid_connection"}),
    [](const ::testing::TestParamInfo<RejectCase>& i) { return std::string(i.param.name); });

// ---------------------------------------------------------------------------------------------
// Limits

TEST(RequestLimitsTest, RequestLineAtLimitAccepted) {
  Limits l;
  l.max_start_line = 64;
  const std::string target =
      "/" + std::string(64 - 4 - 9 - 1, 'a');  // "GET " + target + " HTTP/1.1"
  const std::string line = "GET " + target + " HTTP/1.1";
  ASSERT_EQ(line.size(), 64u);
  EXPECT_EQ(parseRequest(line + "\r\nHost: a\r\n\r\n", nullptr, l).state, ParseState::kDone);
}

TEST(RequestLimitsTest, RequestLineOverLimitIs414EvenBeforeItsEnd) {
  Limits l;
  l.max_start_line = 64;
  const std::string line = "GET /" + std::string(60, 'a');  // 65 bytes, no end yet
  const Outcome o = parseRequest(line, nullptr, l);
  EXPECT_EQ(o.state, ParseState::kError);
  EXPECT_EQ(o.error.status, 414);
  EXPECT_EQ(o.error.kind, "uri_too_long");
}

TEST(RequestLimitsTest, DefaultRequestLineLimitIs8KiB) {
  const std::string ok = "GET /" + std::string(8192 - 14, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(parseRequest(ok).state, ParseState::kDone);
  const std::string over = "GET /" + std::string(8192 - 13, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(parseRequest(over).error.status, 414);
  EXPECT_EQ(parseRequest(over, nullptr, {}, true).error.status, 414);
}

TEST(RequestLimitsTest, HeaderBytesOverLimitIs431) {
  Limits l;
  l.max_header_bytes = 100;
  // "Host: a\r\n" = 9 bytes; "X: " + 87 value + CRLF = 92: total 101 > 100.
  const std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(87, 'v') + "\r\n\r\n";
  for (bool bytewise : {false, true}) {
    const Outcome o = parseRequest(big, nullptr, l, bytewise);
    EXPECT_EQ(o.error.status, 431);
    EXPECT_EQ(o.error.kind, "header_fields_too_large");
  }
  const std::string fits = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(85, 'v') + "\r\n\r\n";
  EXPECT_EQ(parseRequest(fits, nullptr, l).state, ParseState::kDone);
}

TEST(RequestLimitsTest, HeaderCountOverLimitIs431) {
  Limits l;
  l.max_headers = 3;
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n";
  EXPECT_EQ(parseRequest(req + "\r\n", nullptr, l).state, ParseState::kDone);
  const Outcome o = parseRequest(req + "C: 3\r\n\r\n", nullptr, l);
  EXPECT_EQ(o.error.status, 431);
  EXPECT_EQ(o.error.kind, "too_many_headers");
}

TEST(RequestLimitsTest, DefaultHeaderCountIs100) {
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 99; ++i) req += "X" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(parseRequest(req + "\r\n").state, ParseState::kDone);
  EXPECT_EQ(parseRequest(req + "Y: v\r\n\r\n").error.status, 431);
}

// ---------------------------------------------------------------------------------------------
// Accepted requests and what they derive

TEST(RequestParseTest, OriginFormGet) {
  RequestHead h;
  const std::string in = "GET /a?b=c HTTP/1.1\r\nHost: svc.ns:8080\r\nAccept: */*\r\n\r\n";
  const Outcome o = parseRequest(in, &h);
  ASSERT_EQ(o.state, ParseState::kDone);
  EXPECT_EQ(o.consumed, in.size());
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/a?b=c");
  EXPECT_EQ(h.form, TargetForm::kOrigin);
  EXPECT_EQ(h.version, Version::kHttp11);
  EXPECT_EQ(h.authority, "svc.ns:8080");
  EXPECT_EQ(h.framing, (BodyFraming{K::kNone, 0}));
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.expect_continue);
  ASSERT_EQ(h.headers.size(), 2u);
  EXPECT_EQ(h.headers.all()[0], (Header{"Host", "svc.ns:8080"}));
}

TEST(RequestParseTest, HeaderNamesKeptAsSentAndLookedUpCaseInsensitively) {
  RequestHead h;
  ASSERT_EQ(
      parseRequest("GET / HTTP/1.1\r\nhOsT: a\r\nX-Foo:  \t bar baz \t\r\nx-foo: 2\r\n\r\n", &h)
          .state,
      ParseState::kDone);
  EXPECT_EQ(h.headers.all()[0].name, "hOsT");
  EXPECT_EQ(h.headers.get("HOST"), "a");
  EXPECT_EQ(h.headers.get("x-FOO"), "bar baz");  // OWS trimmed, inner whitespace kept
  EXPECT_EQ(h.headers.count("X-Foo"), 2u);
  EXPECT_FALSE(h.headers.get("missing").has_value());
}

TEST(RequestParseTest, ObsTextInValueAccepted) {
  RequestHead h;
  ASSERT_EQ(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", &h).state,
            ParseState::kDone);
  EXPECT_EQ(h.headers.get("x"), "caf\xc3\xa9");
}

// Every byte of a value is checked wherever it sits: at each position of a long value (the parser
// looks at values eight bytes at a time), a control byte or DEL is rejected, HTAB and obs-text
// are kept.
TEST(RequestParseTest, EveryValueByteIsCheckedAtEveryPosition) {
  struct Case {
    char byte;
    const char* kind;  // nullptr: accepted
  };
  const Case cases[] = {{'\0', "invalid_header_value"},
                        {'\x01', "invalid_header_value"},
                        {'\x1f', "invalid_header_value"},
                        {'\x7f', "invalid_header_value"},
                        {'\r', "bare_cr"},
                        {'\t', nullptr},
                        {'\x80', nullptr},
                        {'\xff', nullptr},
                        {' ', nullptr},
                        {'~', nullptr}};
  for (const Case& c : cases) {
    for (std::size_t pos = 1; pos < 40; ++pos) {  // not at the ends, where OWS would be trimmed
      std::string value(41, 'v');
      value[pos] = c.byte;
      RequestHead h;
      const Outcome o = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\n\r\n", &h);
      SCOPED_TRACE(testing::Message()
                   << "byte " << int(static_cast<unsigned char>(c.byte)) << " at " << pos);
      if (c.kind == nullptr) {
        ASSERT_EQ(o.state, ParseState::kDone);
        EXPECT_EQ(h.headers.get("x"), value);
      } else {
        ASSERT_EQ(o.state, ParseState::kError);
        EXPECT_EQ(o.error.status, 400);
        EXPECT_EQ(o.error.kind, c.kind);
      }
    }
  }
}

TEST(RequestParseTest, ExtensionMethodAccepted) {
  RequestHead h;
  ASSERT_EQ(parseRequest("PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n", &h).state, ParseState::kDone);
  EXPECT_EQ(h.method, "PROPFIND");
}

TEST(RequestParseTest, AbsoluteForm) {
  RequestHead h;
  ASSERT_EQ(
      parseRequest("GET http://A.example:80/x HTTP/1.1\r\nHost: a.EXAMPLE:80\r\n\r\n", &h).state,
      ParseState::kDone);
  EXPECT_EQ(h.form, TargetForm::kAbsolute);
  EXPECT_EQ(h.authority, "A.example:80");
}

TEST(RequestParseTest, AbsoluteFormHttp10WithoutHost) {
  RequestHead h;
  ASSERT_EQ(parseRequest("GET https://a.example HTTP/1.0\r\n\r\n", &h).state, ParseState::kDone);
  EXPECT_EQ(h.authority, "a.example");
  EXPECT_FALSE(h.keep_alive);
}

TEST(RequestParseTest, AuthorityFormConnectIsUpgrade) {
  RequestHead h;
  ASSERT_EQ(parseRequest("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", &h).state,
            ParseState::kDone);
  EXPECT_EQ(h.form, TargetForm::kAuthority);
  EXPECT_EQ(h.authority, "[::1]:443");
  EXPECT_EQ(h.framing.kind, K::kUpgrade);
}

TEST(RequestParseTest, AsteriskFormOptions) {
  RequestHead h;
  ASSERT_EQ(parseRequest("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &h).state, ParseState::kDone);
  EXPECT_EQ(h.form, TargetForm::kAsterisk);
}

TEST(RequestParseTest, ContentLengthFraming) {
  RequestHead h;
  ASSERT_EQ(parseRequest(kPost + "Content-Length: 0012\r\n\r\n", &h).state, ParseState::kDone);
  EXPECT_EQ(h.framing, (BodyFraming{K::kContentLength, 12}));
}

TEST(RequestParseTest, ChunkedFramingCaseInsensitive) {
  RequestHead h;
  ASSERT_EQ(parseRequest(kPost + "Transfer-Encoding: Chunked\r\n\r\n", &h).state,
            ParseState::kDone);
  EXPECT_EQ(h.framing.kind, K::kChunked);
}

TEST(RequestParseTest, FieldNamedWithFramingPrefixIsAnOrdinaryField) {
  // Found by http1_fuzz_test's http-parser oracle: http-parser 2.9.4 reads "Transfer-EncodingX"
  // as Transfer-Encoding and drops the chunked framing. Here it is just another field.
  RequestHead h;
  ASSERT_EQ(parseRequest(kPost + "Transfer-Encoding: chunked\r\nTransfer-EncodingX: x\r\n"
                                 "Content-LengthX: 3\r\n\r\n",
                         &h)
                .state,
            ParseState::kDone);
  EXPECT_EQ(h.framing.kind, K::kChunked);
  EXPECT_EQ(h.headers.get("transfer-encodingx"), "x");
}

struct KeepAliveCase {
  const char* name;
  std::string version;
  std::string connection;  // empty: no Connection field
  bool keep_alive;
};

class KeepAliveTest : public ::testing::TestWithParam<KeepAliveCase> {};

TEST_P(KeepAliveTest, FollowsRfc9112Section9_3) {
  const KeepAliveCase& c = GetParam();
  std::string in = "GET / " + c.version + "\r\nHost: a\r\n";
  if (!c.connection.empty()) in += "Connection: " + c.connection + "\r\n";
  RequestHead h;
  ASSERT_EQ(parseRequest(in + "\r\n", &h).state, ParseState::kDone);
  EXPECT_EQ(h.keep_alive, c.keep_alive);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KeepAliveTest,
    ::testing::Values(KeepAliveCase{"Http11Default", "HTTP/1.1", "", true},
                      KeepAliveCase{"Http11Close", "HTTP/1.1", "close", false},
                      KeepAliveCase{"Http11CloseInList", "HTTP/1.1", "foo, CLOSE", false},
                      KeepAliveCase{"Http10Default", "HTTP/1.0", "", false},
                      KeepAliveCase{"Http10KeepAlive", "HTTP/1.0", "Keep-Alive", true},
                      KeepAliveCase{"Http10KeepAliveAndClose", "HTTP/1.0", "keep-alive, close",
                                    false}),
    [](const ::testing::TestParamInfo<KeepAliveCase>& i) { return std::string(i.param.name); });

TEST(RequestParseTest, ExpectContinueOnHttp11Only) {
  RequestHead h;
  ASSERT_EQ(parseRequest(kPost + "Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n", &h).state,
            ParseState::kDone);
  EXPECT_TRUE(h.expect_continue);
  ASSERT_EQ(parseRequest("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", &h)
                .state,
            ParseState::kDone);
  EXPECT_FALSE(h.expect_continue);
}

TEST(RequestParseTest, WebSocketUpgradeRequest) {
  RequestHead h;
  ASSERT_EQ(
      parseRequest(
          "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", &h)
          .state,
      ParseState::kDone);
  EXPECT_EQ(h.upgrade, "websocket");
  EXPECT_EQ(h.framing.kind, K::kNone);
  ASSERT_EQ(parseRequest("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &h).state,
            ParseState::kDone);
  EXPECT_EQ(h.upgrade, "");  // Upgrade not named by Connection: not an upgrade request
}

TEST(RequestParseTest, IncompleteHeadNeedsMoreAndConsumesAll) {
  const std::string part = "GET / HTTP/1.1\r\nHost: a\r\n\r";
  const Outcome o = parseRequest(part);
  EXPECT_EQ(o.state, ParseState::kNeedMore);
  EXPECT_EQ(o.consumed, part.size());
}

TEST(RequestParseTest, ByteAtATimeEqualsWhole) {
  const std::vector<std::string> inputs = {
      "GET /a HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n",
      kPost + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n",
      "GET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\nrest",
  };
  for (const std::string& in : inputs) {
    RequestHead whole;
    RequestHead bytes;
    const Outcome a = parseRequest(in, &whole);
    const Outcome b = parseRequest(in, &bytes, {}, true);
    ASSERT_EQ(a.state, ParseState::kDone) << in;
    EXPECT_EQ(b.state, a.state) << in;
    EXPECT_EQ(b.consumed, a.consumed) << in;
    EXPECT_EQ(bytes, whole) << in;
  }
}

TEST(RequestParseTest, PipelinedRequestsReportConsumedBytes) {
  const std::string r1 = "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
  const std::string r2 = "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string stream = r1 + "abc" + r2 + "GET /3";
  RequestHeadParser p;
  FeedResult r = p.feed(stream);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, r1.size());
  EXPECT_EQ(p.head().framing, (BodyFraming{K::kContentLength, 3}));
  // After kDone the parser is finished until reset().
  EXPECT_EQ(p.feed(std::string_view("x")).consumed, 0u);
  p.reset();
  std::string_view rest = std::string_view(stream).substr(r1.size() + 3);
  r = p.feed(rest);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, r2.size());
  EXPECT_EQ(p.head().target, "/2");
  p.reset();
  r = p.feed(rest.substr(r2.size()));
  EXPECT_EQ(r.state, ParseState::kNeedMore);
  EXPECT_EQ(r.consumed, 6u);
}

TEST(RequestParseTest, ErrorIsSticky) {
  RequestHeadParser p;
  ASSERT_EQ(p.feed(std::string_view("GET / HTTP/1.1\n")).state, ParseState::kError);
  const FeedResult r = p.feed(std::string_view("Host: a\r\n\r\n"));
  EXPECT_EQ(r.state, ParseState::kError);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.error.kind, "bare_lf");
}

// ---------------------------------------------------------------------------------------------
// Responses

struct ResponseCase {
  const char* name;
  std::string method;
  std::string input;
  bool ok;
  K framing;         // when ok
  uint64_t length;   // when ok
  const char* kind;  // when !ok (status is always 502)
};

std::ostream& operator<<(std::ostream& os, const ResponseCase& c) { return os << c.name; }

class ResponseTest : public ::testing::TestWithParam<ResponseCase> {};

TEST_P(ResponseTest, FramingOrRejection) {
  const ResponseCase& c = GetParam();
  for (bool bytewise : {false, true}) {
    ResponseHead h;
    const Outcome o = parseResponse(c.input, c.method, &h, bytewise);
    if (c.ok) {
      ASSERT_EQ(o.state, ParseState::kDone) << c.name << " " << o.error.kind;
      EXPECT_EQ(o.consumed, c.input.size());
      EXPECT_EQ(h.framing, (BodyFraming{c.framing, c.length})) << c.name;
    } else {
      ASSERT_EQ(o.state, ParseState::kError) << c.name;
      EXPECT_EQ(o.error.status, 502) << c.name;
      EXPECT_EQ(o.error.kind, c.kind) << c.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Vectors, ResponseTest,
    ::testing::Values(
        ResponseCase{"ContentLength", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true,
                     K::kContentLength, 5, ""},
        ResponseCase{"Chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                     true, K::kChunked, 0, ""},
        ResponseCase{"CloseDelimited", "GET", "HTTP/1.1 200 OK\r\n\r\n", true, K::kCloseDelimited,
                     0, ""},
        ResponseCase{"NoReasonNoSpace", "GET", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", true,
                     K::kContentLength, 0, ""},
        ResponseCase{"EmptyReason", "GET", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", true,
                     K::kContentLength, 0, ""},
        ResponseCase{"Status204NoBody", "GET", "HTTP/1.1 204 No Content\r\n\r\n", true, K::kNone, 0,
                     ""},
        ResponseCase{"Status304WithContentLengthNoBody", "GET",
                     "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", true, K::kNone, 0,
                     ""},
        ResponseCase{"Status100NoBody", "POST", "HTTP/1.1 100 Continue\r\n\r\n", true, K::kNone, 0,
                     ""},
        ResponseCase{
            "Status101Upgrade", "GET",
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            true, K::kUpgrade, 0, ""},
        ResponseCase{"HeadResponseNoBody", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                     true, K::kNone, 0, ""},
        ResponseCase{"HeadResponseChunkedNoBody", "HEAD",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, K::kNone, 0,
                     ""},
        ResponseCase{"Connect2xxTunnel", "CONNECT", "HTTP/1.1 200 Connection Established\r\n\r\n",
                     true, K::kUpgrade, 0, ""},
        ResponseCase{"Connect407NotTunnel", "CONNECT",
                     "HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", true, K::kContentLength, 0,
                     ""},
        ResponseCase{"Status999Rejected", "GET", "HTTP/1.1 999 X\r\n\r\n", false, K::kNone, 0,
                     "invalid_status_code"},
        ResponseCase{"Status099Rejected", "GET", "HTTP/1.1 099 X\r\n\r\n", false, K::kNone, 0,
                     "invalid_status_code"},
        ResponseCase{"StatusFourDigits", "GET", "HTTP/1.1 1000 X\r\n\r\n", false, K::kNone, 0,
                     "invalid_status_line"},
        ResponseCase{"StatusTwoDigits", "GET", "HTTP/1.1 20 X\r\n\r\n", false, K::kNone, 0,
                     "invalid_status_code"},
        ResponseCase{"StatusNonDigit", "GET", "HTTP/1.1 2x0 X\r\n\r\n", false, K::kNone, 0,
                     "invalid_status_code"},
        ResponseCase{"VersionHttp20", "GET", "HTTP/2.0 200 OK\r\n\r\n", false, K::kNone, 0,
                     "unsupported_version"},
        ResponseCase{"ReasonWithNul", "GET", std::string("HTTP/1.1 200 O\0K\r\n\r\n", 20), false,
                     K::kNone, 0, "invalid_reason_phrase"},
        ResponseCase{"DuplicateContentLength", "GET",
                     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", false,
                     K::kNone, 0, "duplicate_content_length"},
        ResponseCase{"ContentLengthWithTransferEncoding", "GET",
                     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                     false, K::kNone, 0, "content_length_with_transfer_encoding"},
        ResponseCase{"TransferEncodingNotChunked", "GET",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, K::kNone, 0,
                     "transfer_encoding_not_chunked"},
        ResponseCase{"TransferEncodingGzipChunked", "GET",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, K::kNone,
                     0, "unsupported_transfer_coding"},
        ResponseCase{"Status204WithContentLength", "GET",
                     "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false, K::kNone, 0,
                     "body_framing_on_bodiless_status"},
        ResponseCase{"Status1xxWithTransferEncoding", "GET",
                     "HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n", false,
                     K::kNone, 0, "body_framing_on_bodiless_status"},
        ResponseCase{"ObsFold", "GET", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
                     false, K::kNone, 0, "obs_fold"},
        ResponseCase{"BareLf", "GET", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", false, K::kNone, 0,
                     "bare_lf"},
        ResponseCase{"SpaceBeforeColon", "GET", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
                     false, K::kNone, 0, "space_before_colon"}),
    [](const ::testing::TestParamInfo<ResponseCase>& i) { return std::string(i.param.name); });

TEST(ResponseParseTest, KeepAliveAndReason) {
  ResponseHead h;
  ASSERT_EQ(parseResponse(
                "HTTP/1.0 200 Fine Thanks\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                "GET", &h)
                .state,
            ParseState::kDone);
  EXPECT_EQ(h.reason, "Fine Thanks");
  EXPECT_EQ(h.version, Version::kHttp10);
  EXPECT_TRUE(h.keep_alive);
  ASSERT_EQ(parseResponse("HTTP/1.1 200 OK\r\n\r\n", "GET", &h).state, ParseState::kDone);
  EXPECT_FALSE(h.keep_alive);  // close-delimited
}

TEST(ResponseParseTest, InterimThenFinalOnOneParser) {
  const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  const std::string final_head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
  const std::string stream = interim + final_head + "ok";
  ResponseHeadParser p("HEAD");
  FeedResult r = p.feed(stream);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, interim.size());
  EXPECT_EQ(p.head().status, 100);
  p.reset();  // same request: still a response to HEAD
  r = p.feed(std::string_view(stream).substr(interim.size()));
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, final_head.size());
  EXPECT_EQ(p.head().framing.kind, K::kNone);
  p.reset("GET");
  ASSERT_EQ(p.feed(std::string_view(final_head)).state, ParseState::kDone);
  EXPECT_EQ(p.head().framing, (BodyFraming{K::kContentLength, 2}));
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

struct ChunkOutcome {
  ParseState state;
  std::size_t consumed;
  std::string body;
  ParseError error;
};

ChunkOutcome decode(std::string_view in, std::size_t split = std::string_view::npos,
                    ChunkedLimits l = {}) {
  ChunkedDecoder d(l);
  ChunkOutcome o{ParseState::kNeedMore, 0, {}, {}};
  std::vector<std::string_view> parts;
  if (split == std::string_view::npos || split >= in.size()) {
    parts = {in};
  } else {
    parts = {in.substr(0, split), in.substr(split)};
  }
  for (std::string_view part : parts) {
    const FeedResult r = d.feed(part, o.body);
    o.state = r.state;
    o.consumed += r.consumed;
    o.error = r.error;
    if (r.state != ParseState::kNeedMore) break;
  }
  return o;
}

TEST(ChunkedDecoderTest, DecodesChunksExtensionsAndTrailers) {
  const std::string body =
      "5\r\nhello\r\n1;name=val;q=\"a \\\"b\"\r\n \r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n";
  ChunkedDecoder d;
  std::string out;
  const FeedResult r = d.feed(body + "NEXT", out);
  ASSERT_EQ(r.state, ParseState::kDone) << r.error.kind;
  EXPECT_EQ(r.consumed, body.size());
  EXPECT_EQ(out, "hello 0123456789");
  EXPECT_EQ(d.trailers().get("x-sum"), "1");
}

TEST(ChunkedDecoderTest, SplitAtEveryOffsetAgrees) {
  const std::string body = "3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
  const ChunkOutcome whole = decode(body);
  ASSERT_EQ(whole.state, ParseState::kDone);
  for (std::size_t i = 0; i <= body.size(); ++i) {
    const ChunkOutcome o = decode(body, i);
    EXPECT_EQ(o.state, ParseState::kDone) << i;
    EXPECT_EQ(o.consumed, body.size()) << i;
    EXPECT_EQ(o.body, "abc0123456789abcdef") << i;
  }
  // And a byte at a time.
  ChunkedDecoder d;
  std::string out;
  std::size_t consumed = 0;
  FeedResult r;
  for (char c : body) {
    r = d.feed(std::string_view(&c, 1), out);
    consumed += r.consumed;
  }
  EXPECT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(consumed, body.size());
  EXPECT_EQ(out, "abc0123456789abcdef");
}

struct ChunkRejectCase {
  const char* name;
  std::string input;
  const char* kind;
};

std::ostream& operator<<(std::ostream& os, const ChunkRejectCase& c) { return os << c.name; }

class ChunkedRejectTest : public ::testing::TestWithParam<ChunkRejectCase> {};

TEST_P(ChunkedRejectTest, RejectsAtEverySplit) {
  const ChunkRejectCase& c = GetParam();
  ChunkedLimits l;
  l.max_chunk_line = 32;
  l.max_trailer_bytes = 64;
  l.max_trailers = 2;
  for (std::size_t split = 0; split <= c.input.size(); ++split) {
    const ChunkOutcome o = decode(c.input, split, l);
    ASSERT_EQ(o.state, ParseState::kError) << c.name << " split " << split;
    EXPECT_EQ(o.error.status, 400) << c.name;
    EXPECT_EQ(o.error.kind, c.kind) << c.name << " split " << split;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Vectors, ChunkedRejectTest,
    ::testing::Values(
        ChunkRejectCase{"SizeNonHex", "g\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"SizeEmpty", "\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"SizeNegative", "-1\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"SizePlus", "+1\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"Size0xPrefix", "0x1\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"SizeTrailingSpace", "1 \r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"SizeLeadingSpace", " 1\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"SizeTab", "1\t\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"SizeOverflow17Digits", "10000000000000001\r\nx\r\n",
                        "chunk_size_overflow"},
        ChunkRejectCase{"SizeOverflow16Digits", "ffffffffffffffff\r\nx\r\n", "chunk_size_overflow"},
        ChunkRejectCase{"SizeBareLf", "1\nx\r\n0\r\n\r\n", "bare_lf"},
        ChunkRejectCase{"SizeBareCr", "1\rx\r\n0\r\n\r\n", "bare_cr"},
        ChunkRejectCase{"DataMissingCrlf", "1\r\nxZZ0\r\n\r\n", "missing_chunk_crlf"},
        ChunkRejectCase{"DataLfOnly", "1\r\nx\n0\r\n\r\n", "missing_chunk_crlf"},
        ChunkRejectCase{"DataTooLong", "1\r\nxy\r\n0\r\n\r\n", "missing_chunk_crlf"},
        ChunkRejectCase{"ExtensionWhitespace", "1 ;a=b\r\nx\r\n0\r\n\r\n", "invalid_chunk_size"},
        ChunkRejectCase{"ExtensionEmptyName", "1;=b\r\nx\r\n0\r\n\r\n", "invalid_chunk_extension"},
        ChunkRejectCase{"ExtensionEmptyValue", "1;a=\r\nx\r\n0\r\n\r\n", "invalid_chunk_extension"},
        ChunkRejectCase{"ExtensionUnterminatedQuote", "1;a=\"b\r\nx\r\n0\r\n\r\n",
                        "invalid_chunk_extension"},
        ChunkRejectCase{"ExtensionTooLong", "1;a=" + std::string(40, 'b') + "\r\nx\r\n0\r\n\r\n",
                        "chunk_line_too_long"},
        ChunkRejectCase{"TrailerObsFold", "0\r\nA: b\r\n c\r\n\r\n", "obs_fold"},
        ChunkRejectCase{"TrailerContentLength", "0\r\nContent-Length: 5\r\n\r\n",
                        "forbidden_trailer"},
        ChunkRejectCase{"TrailerTransferEncoding", "0\r\nTransfer-Encoding: chunked\r\n\r\n",
                        "forbidden_trailer"},
        ChunkRejectCase{"TrailerNulInValue", std::string("0\r\nA: \0\r\n\r\n", 11),
                        "invalid_header_value"},
        ChunkRejectCase{"TrailersTooMany", "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                        "too_many_trailers"},
        ChunkRejectCase{"TrailersTooLarge", "0\r\nA: " + std::string(70, 'v') + "\r\n\r\n",
                        "trailers_too_large"},
        ChunkRejectCase{"LastChunkBareLf", "0\r\n\n", "bare_lf"}),
    [](const ::testing::TestParamInfo<ChunkRejectCase>& i) { return std::string(i.param.name); });

TEST(ChunkedDecoderTest, LargestAcceptedSizeNeedsMore) {
  // 2^62 is the bound: accepted as a size (then waits for data).
  const ChunkOutcome o = decode("4000000000000000\r\nabc");
  EXPECT_EQ(o.state, ParseState::kNeedMore);
  EXPECT_EQ(o.body, "abc");
}

TEST(ChunkedDecoderTest, LeadingZerosWithinSixteenDigits) {
  const ChunkOutcome o = decode("0000000000000001\r\nx\r\n0\r\n\r\n");
  EXPECT_EQ(o.state, ParseState::kDone);
  EXPECT_EQ(o.body, "x");
}

// ---------------------------------------------------------------------------------------------
// Serializer

TEST(SerializeTest, RequestRoundTripNormalizes) {
  RequestHead h;
  ASSERT_EQ(
      parseRequest("POST /x HTTP/1.1\r\nHost:a\r\nX-A:   v  \r\nContent-Length: 2\r\n\r\n", &h)
          .state,
      ParseState::kDone);
  const std::string wire = serialize(h);
  EXPECT_EQ(wire, "POST /x HTTP/1.1\r\nHost: a\r\nX-A: v\r\nContent-Length: 2\r\n\r\n");
  RequestHead again;
  const Outcome o = parseRequest(wire, &again);
  ASSERT_EQ(o.state, ParseState::kDone);
  EXPECT_EQ(o.consumed, wire.size());
  EXPECT_EQ(again, h);
  EXPECT_EQ(serialize(again), wire);
}

TEST(SerializeTest, ResponseRoundTrip) {
  for (std::string in :
       {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.0 404 \r\nA: b\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"}) {
    ResponseHead h;
    ASSERT_EQ(parseResponse(in, "GET", &h).state, ParseState::kDone) << in;
    EXPECT_EQ(serialize(h), in);
    ResponseHead again;
    ASSERT_EQ(parseResponse(serialize(h), "GET", &again).state, ParseState::kDone);
    EXPECT_EQ(again, h);
  }
}

TEST(SerializeTest, ChunkEncodingRoundTrip) {
  Headers t;
  t.add("Grpc-Status", "0");
  const std::string wire = encodeChunk("hello") + encodeChunk(std::string(300, 'z')) + lastChunk(t);
  EXPECT_EQ(wire.substr(0, 10), "5\r\nhello\r\n");
  EXPECT_NE(wire.find("12c\r\n"), std::string::npos);
  ChunkedDecoder d;
  std::string body;
  const FeedResult r = d.feed(wire, body);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, wire.size());
  EXPECT_EQ(body, "hello" + std::string(300, 'z'));
  EXPECT_EQ(d.trailers(), t);
}

}  // namespace
}  // namespace weft::http1
