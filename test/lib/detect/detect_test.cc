#include "weft/detect/detect.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weft::detect {
namespace {

using Bytes = std::vector<uint8_t>;
using namespace std::string_view_literals;

// Real ClientHellos, captured from what openssl s_client sent to a local listener.
// `openssl s_client -servername foo.example -alpn h2,http/1.1` (OpenSSL 3.0): TLS 1.3.
constexpr uint8_t kTls13Hello[] = {
    0x16, 0x03, 0x01, 0x01, 0x4a, 0x01, 0x00, 0x01, 0x46, 0x03, 0x03, 0x1f, 0x41, 0x00, 0xe7, 0x2b,
    0x5e, 0x5f, 0x72, 0x02, 0x9b, 0xd1, 0xd1, 0x74, 0x0b, 0xfb, 0x95, 0xf8, 0xa3, 0xd0, 0xdc, 0x87,
    0xe3, 0x62, 0x13, 0x57, 0x14, 0x82, 0xf1, 0xf8, 0x55, 0xd4, 0x2e, 0x20, 0xd5, 0x06, 0xd2, 0xa5,
    0x99, 0x04, 0xc5, 0xf4, 0x4a, 0x2e, 0xa7, 0x68, 0x33, 0x84, 0xe9, 0x2e, 0x41, 0x93, 0x47, 0x0e,
    0x22, 0xef, 0xef, 0x17, 0x04, 0x10, 0xc5, 0xd8, 0xcf, 0x17, 0xe1, 0xce, 0x00, 0x3e, 0x13, 0x02,
    0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
    0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xbf,
    0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x00, 0x0b, 0x66, 0x6f, 0x6f, 0x2e, 0x65, 0x78, 0x61,
    0x6d, 0x70, 0x6c, 0x65, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16,
    0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01,
    0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c,
    0x02, 0x68, 0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x16, 0x00, 0x00,
    0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03,
    0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06,
    0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02,
    0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00,
    0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x2b,
    0xfe, 0xee, 0x2a, 0x0c, 0xae, 0x39, 0xfb, 0xf9, 0xa2, 0x21, 0x95, 0x88, 0x36, 0x6b, 0x12, 0xf0,
    0xfc, 0x72, 0xde, 0xc3, 0x22, 0xe5, 0xaa, 0x45, 0x41, 0xa0, 0xbe, 0x62, 0x9f, 0xc1, 0x70,
};

// `openssl s_client -tls1_2 -noservername`: TLS 1.2, neither SNI nor ALPN.
constexpr uint8_t kTls12HelloNoSni[] = {
    0x16, 0x03, 0x01, 0x00, 0xb7, 0x01, 0x00, 0x00, 0xb3, 0x03, 0x03, 0xab, 0x45, 0x0d, 0x2d, 0xf7,
    0x20, 0x1e, 0xce, 0xf6, 0x23, 0x35, 0xb5, 0x85, 0xc7, 0x24, 0x1e, 0x19, 0xd4, 0x4e, 0xa5, 0x43,
    0x9b, 0x85, 0x6f, 0xb7, 0xb8, 0xbb, 0x82, 0xe1, 0x5a, 0x65, 0x5c, 0x00, 0x00, 0x38, 0xc0, 0x2c,
    0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e,
    0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14,
    0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c,
    0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x52, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00,
    0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19,
    0x00, 0x18, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d,
    0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09,
    0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01,
    0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
};

// As kTls13Hello plus `-split_send_frag 128`: the ClientHello (0x146 bytes) spans three
// records; the first carries its first 124 bytes.
constexpr uint8_t kFragmentedHello[] = {
    0x16, 0x03, 0x01, 0x00, 0x80, 0x01, 0x00, 0x01, 0x46, 0x03, 0x03, 0x8c, 0xcd, 0x3b, 0x2b, 0x63,
    0x49, 0xc6, 0x84, 0x11, 0xc6, 0xf5, 0xdd, 0xca, 0xd8, 0x08, 0x55, 0xc9, 0x72, 0xe4, 0x8f, 0x80,
    0x78, 0x4e, 0xc6, 0x14, 0x58, 0xb4, 0xe4, 0x57, 0xc8, 0x14, 0x20, 0x20, 0x57, 0x8c, 0x67, 0x44,
    0xae, 0x2a, 0xf8, 0x8c, 0xc8, 0xf8, 0xfd, 0x20, 0x0b, 0x77, 0x1d, 0xed, 0x1a, 0xc7, 0x77, 0x81,
    0x17, 0xb9, 0xd2, 0x49, 0x67, 0x43, 0x3e, 0x50, 0x66, 0x5b, 0xa8, 0xb6, 0x00, 0x3e, 0x13, 0x02,
    0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
    0x00, 0x9c, 0x00, 0x3d, 0x00, 0x16, 0x03, 0x01, 0x00, 0x80, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00,
    0xff, 0x01, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x00, 0x0b, 0x66, 0x6f,
    0x6f, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01,
    0x02, 0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00,
    0x18, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00,
    0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 0x68, 0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e,
    0x31, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04,
    0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08,
    0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x16, 0x03, 0x01, 0x00, 0x4a, 0x01,
    0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b, 0x00, 0x09,
    0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00,
    0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x06, 0x73, 0xa0, 0x6e, 0x8f, 0xa7, 0x8b,
    0xe9, 0xa6, 0xdd, 0x4f, 0x12, 0x9f, 0x44, 0x76, 0xb9, 0x52, 0xe4, 0xc9, 0x16, 0xd3, 0x9c, 0x27,
    0x65, 0xb8, 0x54, 0xe9, 0x3e, 0x18, 0x8a, 0x90, 0x16,
};

Bytes bytesOf(std::string_view s) { return {s.begin(), s.end()}; }

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes u8(std::size_t n) { return {static_cast<uint8_t>(n)}; }
Bytes u16(std::size_t n) { return {static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)}; }
Bytes u24(std::size_t n) {
  return {static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
}

// A synthetic ClientHello, every length computed unless a test overrides a part with raw bytes.
struct HelloParts {
  Bytes legacy_version = {0x03, 0x03};
  Bytes session_id = {};
  Bytes cipher_suites = {0x13, 0x01};
  Bytes compression_methods = {0x00};
  // Concatenated extensions; nullopt: no extensions block at all.
  std::optional<Bytes> extensions = Bytes{};
  // When set, replaces the extensions block (length included).
  std::optional<Bytes> raw_tail;
};

Bytes helloBody(const HelloParts& h) {
  Bytes body = cat({h.legacy_version, Bytes(32, 0xaa), u8(h.session_id.size()), h.session_id,
                    u16(h.cipher_suites.size()), h.cipher_suites, u8(h.compression_methods.size()),
                    h.compression_methods});
  if (h.raw_tail) return cat({body, *h.raw_tail});
  if (h.extensions) return cat({body, u16(h.extensions->size()), *h.extensions});
  return body;
}

Bytes handshake(const Bytes& body, uint8_t type = 0x01) {
  return cat({{type}, u24(body.size()), body});
}

Bytes record(const Bytes& fragment, uint8_t content_type = 0x16,
             const Bytes& version = {0x03, 0x01}) {
  return cat({{content_type}, version, u16(fragment.size()), fragment});
}

Bytes hello(const HelloParts& h) { return record(handshake(helloBody(h))); }

Bytes extension(uint16_t type, const Bytes& data) {
  return cat({u16(type), u16(data.size()), data});
}

Bytes sniExtension(std::string_view host) {
  return extension(0, cat({u16(3 + host.size()), {0x00}, u16(host.size()), bytesOf(host)}));
}

Bytes alpnExtension(std::initializer_list<std::string_view> names) {
  Bytes list;
  for (auto n : names) list = cat({list, u8(n.size()), bytesOf(n)});
  return extension(16, cat({u16(list.size()), list}));
}

Bytes helloWith(std::initializer_list<Bytes> extensions) {
  HelloParts h;
  h.extensions = cat(extensions);
  return hello(h);
}

std::span<const uint8_t> first(std::span<const uint8_t> bytes, std::size_t n) {
  return bytes.first(n);
}

ParseStatus tls(std::span<const uint8_t> bytes) { return parseClientHello(bytes, nullptr); }
ParseStatus http1(std::string_view line) { return parseRequestLine(bytesOf(line), nullptr); }
std::optional<Detection> detectText(std::string_view text) { return detect(bytesOf(text)); }

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// protocolName

TEST(ProtocolName, ReturnsTheStableLabels) {
  EXPECT_EQ(protocolName(Protocol::kTls), "tls");
  EXPECT_EQ(protocolName(Protocol::kHttp2), "http2");
  EXPECT_EQ(protocolName(Protocol::kHttp1), "http1");
  EXPECT_EQ(protocolName(Protocol::kOpaque), "opaque");
}

// ---------------------------------------------------------------------------------------------
// parseClientHello: real hellos

TEST(ParseClientHello, RealTls13HelloYieldsSniAndAlpnInOrder) {
  ClientHello out;
  ASSERT_EQ(parseClientHello(kTls13Hello, &out), ParseStatus::kYes);
  EXPECT_EQ(out.sni, "foo.example");
  EXPECT_EQ(out.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
}

TEST(ParseClientHello, RealTls12HelloWithoutServerNameHasEmptyFields) {
  ClientHello out;
  ASSERT_EQ(parseClientHello(kTls12HelloNoSni, &out), ParseStatus::kYes);
  EXPECT_EQ(out.sni, "");
  EXPECT_TRUE(out.alpn.empty());
}

TEST(ParseClientHello, EveryProperPrefixOfARealHelloNeedsMore) {
  const std::span<const uint8_t> whole(kTls13Hello);
  for (std::size_t n = 0; n < whole.size(); ++n) {
    EXPECT_EQ(tls(whole.first(n)), ParseStatus::kNeedMore) << n;
  }
}

TEST(ParseClientHello, IgnoresBytesAfterTheFirstRecord) {
  const Bytes with_early_data = cat({Bytes(std::begin(kTls13Hello), std::end(kTls13Hello)),
                                     {0x17, 0x03, 0x03, 0x00, 0x01, 0x00}});
  ClientHello out;
  ASSERT_EQ(parseClientHello(with_early_data, &out), ParseStatus::kYes);
  EXPECT_EQ(out.sni, "foo.example");
}

TEST(ParseClientHello, FragmentedHelloIsYesWithNoFieldsOnceTheFirstRecordIsWhole) {
  const std::span<const uint8_t> bytes(kFragmentedHello);
  const std::size_t first_record = 5 + 0x80;
  ClientHello out;
  out.sni = "stale";
  out.alpn = {"stale"};
  ASSERT_EQ(parseClientHello(bytes.first(first_record), &out), ParseStatus::kYes);
  EXPECT_EQ(out.sni, "");
  EXPECT_TRUE(out.alpn.empty());
  EXPECT_EQ(tls(bytes), ParseStatus::kYes);
}

TEST(ParseClientHello, FragmentedHelloNeedsMoreUntilTheFirstRecordIsWhole) {
  const std::span<const uint8_t> bytes(kFragmentedHello);
  for (std::size_t n = 0; n < 5 + 0x80; ++n) {
    EXPECT_EQ(tls(bytes.first(n)), ParseStatus::kNeedMore) << n;
  }
}

TEST(ParseClientHello, FragmentedHelloWithAMalformedStartIsNo) {
  Bytes bytes(std::begin(kFragmentedHello), std::end(kFragmentedHello));
  bytes[9 + 2 + 32] = 33;  // session_id length
  EXPECT_EQ(tls(bytes), ParseStatus::kNo);
}

// ---------------------------------------------------------------------------------------------
// parseClientHello: record and handshake headers

TEST(ParseClientHello, HandshakeContentTypeAloneNeedsMore) {
  EXPECT_EQ(tls(Bytes{0x16}), ParseStatus::kNeedMore);
  EXPECT_EQ(tls(Bytes{}), ParseStatus::kNeedMore);
}

TEST(ParseClientHello, OtherContentTypesAreNo) {
  for (uint8_t type : std::initializer_list<uint8_t>{0x14, 0x15, 0x17, 0x18, 0x00, 0x80, 'G'}) {
    EXPECT_EQ(tls(Bytes{type}), ParseStatus::kNo) << int{type};
  }
}

TEST(ParseClientHello, RecordVersionOutsideSsl3ToTls13IsNo) {
  EXPECT_EQ(tls(Bytes{0x16, 0x02}), ParseStatus::kNo);
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x05}), ParseStatus::kNo);
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x04}), ParseStatus::kNeedMore);
}

TEST(ParseClientHello, Ssl3HelloWithoutExtensionsIsYes) {
  HelloParts h;
  h.legacy_version = {0x03, 0x00};
  h.extensions = std::nullopt;
  const Bytes bytes = record(handshake(helloBody(h)), 0x16, {0x03, 0x00});
  ClientHello out;
  ASSERT_EQ(parseClientHello(bytes, &out), ParseStatus::kYes);
  EXPECT_EQ(out.sni, "");
}

TEST(ParseClientHello, RecordLongerThan16KiBIsNoFromItsFirstLengthByte) {
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x41}), ParseStatus::kNo);
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x40}), ParseStatus::kNeedMore);
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x40, 0x01}), ParseStatus::kNo);
}

TEST(ParseClientHello, RecordTooShortForTheHandshakeHeaderIsNo) {
  for (uint8_t len : std::initializer_list<uint8_t>{0, 1, 3}) {
    EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x00, len}), ParseStatus::kNo) << int{len};
  }
}

TEST(ParseClientHello, HandshakeTypeOtherThanClientHelloIsNo) {
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x03, 0x00, 0x30, 0x02}), ParseStatus::kNo);  // ServerHello
}

TEST(ParseClientHello, MessageShorterThanTheSmallestClientHelloIsNo) {
  // 40 bytes cannot hold version, random, session_id, one cipher suite and one compression method.
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x00, 0x2c, 0x01, 0x00, 0x00, 0x28}), ParseStatus::kNo);
}

TEST(ParseClientHello, MessageLongerThanAnyClientHelloIsNoFromItsFirstLengthByte) {
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x00, 0x80, 0x01, 0x03}), ParseStatus::kNo);
}

TEST(ParseClientHello, MessageEndingBeforeItsRecordIsNoFromItsLengthPrefix) {
  // A 16 KiB record whose message is at most 0x1ff bytes long would carry something after it.
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00}), ParseStatus::kNeedMore);
  EXPECT_EQ(tls(Bytes{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x01}), ParseStatus::kNo);
}

TEST(ParseClientHello, RecordWithBytesAfterTheClientHelloIsNoFromTheHeaders) {
  Bytes bytes = helloWith({sniExtension("a.example")});
  const std::size_t record_length = bytes.size() - 5 + 1;
  bytes[3] = static_cast<uint8_t>(record_length >> 8);
  bytes[4] = static_cast<uint8_t>(record_length);
  EXPECT_EQ(tls(first(bytes, 9)), ParseStatus::kNo);
}

// ---------------------------------------------------------------------------------------------
// parseClientHello: body

TEST(ParseClientHello, LegacyVersionOutsideSsl3ToTls13IsNo) {
  HelloParts h;
  h.legacy_version = {0x02, 0x00};
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
  h.legacy_version = {0x03, 0x05};
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
}

TEST(ParseClientHello, SessionIdLongerThan32IsNoBeforeTheRecordCompletes) {
  HelloParts h;
  h.session_id = Bytes(33, 0x01);
  const Bytes bytes = hello(h);
  EXPECT_EQ(tls(first(bytes, 9 + 2 + 32 + 1)), ParseStatus::kNo);
}

TEST(ParseClientHello, SessionIdOf32IsYes) {
  HelloParts h;
  h.session_id = Bytes(32, 0x01);
  EXPECT_EQ(tls(hello(h)), ParseStatus::kYes);
}

TEST(ParseClientHello, OddLengthCipherSuitesIsNo) {
  HelloParts h;
  h.cipher_suites = {0x13, 0x01, 0x13};
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
}

TEST(ParseClientHello, EmptyCipherSuitesIsNo) {
  HelloParts h;
  h.cipher_suites = {};
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
}

TEST(ParseClientHello, NoCompressionMethodIsNo) {
  HelloParts h;
  h.compression_methods = {};
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
}

TEST(ParseClientHello, EmptyExtensionsBlockIsYes) {
  EXPECT_EQ(tls(helloWith({})), ParseStatus::kYes);
}

TEST(ParseClientHello, ExtensionsBlockNotFillingTheMessageIsNo) {
  HelloParts h;
  h.raw_tail = cat({u16(5), extension(23, {})});  // declares 5 bytes, holds 4
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
  h.raw_tail = cat({u16(3), extension(23, {})});  // declares 3 bytes, holds 4
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
}

TEST(ParseClientHello, SingleByteWhereTheExtensionsLengthBelongsIsNo) {
  HelloParts h;
  h.raw_tail = Bytes{0x00};
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
}

TEST(ParseClientHello, ExtensionOverrunningTheBlockIsNo) {
  HelloParts h;
  h.raw_tail = cat({u16(6), u16(23), u16(3), {0x00}});
  EXPECT_EQ(tls(hello(h)), ParseStatus::kNo);
}

TEST(ParseClientHello, UnknownAndGreaseExtensionsAreSkipped) {
  ClientHello out;
  ASSERT_EQ(parseClientHello(helloWith({extension(0x0a0a, {}), sniExtension("x.example"),
                                        extension(21, Bytes(300, 0)), extension(0xfafa, {0x00})}),
                             &out),
            ParseStatus::kYes);
  EXPECT_EQ(out.sni, "x.example");
}

TEST(ParseClientHello, DuplicateExtensionTypeIsNo) {
  EXPECT_EQ(tls(helloWith({extension(23, {}), sniExtension("a.example"), extension(23, {})})),
            ParseStatus::kNo);
  EXPECT_EQ(tls(helloWith({sniExtension("a.example"), sniExtension("b.example")})),
            ParseStatus::kNo);
}

TEST(ParseClientHello, DuplicateExtensionIsNoBeforeTheRecordCompletes) {
  const Bytes bytes =
      helloWith({extension(23, {}), extension(23, {}), extension(21, Bytes(100, 0))});
  const std::size_t second_type_end = bytes.size() - 104 - 4 + 2;
  EXPECT_EQ(tls(first(bytes, second_type_end - 1)), ParseStatus::kNeedMore);
  EXPECT_EQ(tls(first(bytes, second_type_end)), ParseStatus::kNo);
}

TEST(ParseClientHello, HelloFillingAMaximalRecordIsYes) {
  const Bytes base = helloWith({sniExtension("a.example"), extension(21, {})});
  const std::size_t padding = 16384 - (base.size() - 5);
  const Bytes bytes = helloWith({sniExtension("a.example"), extension(21, Bytes(padding, 0))});
  ASSERT_EQ(bytes.size(), 5u + 16384u);
  EXPECT_EQ(tls(first(bytes, bytes.size() - 1)), ParseStatus::kNeedMore);
  EXPECT_EQ(tls(bytes), ParseStatus::kYes);
}

// ---------------------------------------------------------------------------------------------
// parseClientHello: server_name

TEST(ParseClientHello, ServerNameKeepsCaseUnderscoresAndTrailingDot) {
  ClientHello out;
  ASSERT_EQ(parseClientHello(helloWith({sniExtension("My_Svc.Example.")}), &out),
            ParseStatus::kYes);
  EXPECT_EQ(out.sni, "My_Svc.Example.");
}

TEST(ParseClientHello, ServerNameOf255BytesIsYes) {
  ClientHello out;
  const std::string name(255, 'a');
  ASSERT_EQ(parseClientHello(helloWith({sniExtension(name)}), &out), ParseStatus::kYes);
  EXPECT_EQ(out.sni, name);
}

TEST(ParseClientHello, ServerNameOf256BytesIsNo) {
  EXPECT_EQ(tls(helloWith({sniExtension(std::string(256, 'a'))})), ParseStatus::kNo);
}

TEST(ParseClientHello, EmptyServerNameIsNo) {
  EXPECT_EQ(tls(helloWith({sniExtension("")})), ParseStatus::kNo);
}

TEST(ParseClientHello, ServerNameWithByteOutsideTheHostNameAlphabetIsNo) {
  for (std::string_view bad : std::initializer_list<std::string_view>{
           "foo example", "foo\0x"sv, "foo*.example", "f\xc3\xb6o.example", "foo:443", "foo/bar"}) {
    EXPECT_EQ(tls(helloWith({sniExtension(bad)})), ParseStatus::kNo) << bad;
  }
}

TEST(ParseClientHello, ServerNameWithBadByteIsNoBeforeTheNameCompletes) {
  const Bytes bytes = helloWith({sniExtension("foo example")});
  const std::size_t space = bytes.size() - std::string_view("example").size() - 1;
  EXPECT_EQ(tls(first(bytes, space)), ParseStatus::kNeedMore);
  EXPECT_EQ(tls(first(bytes, space + 1)), ParseStatus::kNo);
}

TEST(ParseClientHello, ServerNameListWithTwoEntriesIsNo) {
  const Bytes entry = cat({{0x00}, u16(1), {'a'}});
  EXPECT_EQ(tls(helloWith({extension(0, cat({u16(8), entry, entry}))})), ParseStatus::kNo);
}

TEST(ParseClientHello, ServerNameOfNonHostNameTypeIsNo) {
  EXPECT_EQ(tls(helloWith({extension(0, cat({u16(4), {0x01}, u16(1), {'a'}}))})), ParseStatus::kNo);
}

TEST(ParseClientHello, ServerNameListLengthMismatchIsNo) {
  EXPECT_EQ(tls(helloWith({extension(0, cat({u16(5), {0x00}, u16(1), {'a'}}))})), ParseStatus::kNo);
  EXPECT_EQ(tls(helloWith({extension(0, cat({u16(4), {0x00}, u16(2), {'a'}}))})), ParseStatus::kNo);
}

TEST(ParseClientHello, EmptyServerNameExtensionIsNo) {
  EXPECT_EQ(tls(helloWith({extension(0, {})})), ParseStatus::kNo);
}

// ---------------------------------------------------------------------------------------------
// parseClientHello: ALPN

TEST(ParseClientHello, AlpnNamesAreOpaqueBytes) {
  ClientHello out;
  ASSERT_EQ(parseClientHello(helloWith({alpnExtension({"h2", "\xff\x01 x"})}), &out),
            ParseStatus::kYes);
  EXPECT_EQ(out.alpn, (std::vector<std::string>{"h2", "\xff\x01 x"}));
}

TEST(ParseClientHello, AlpnWithAnEmptyNameIsNo) {
  EXPECT_EQ(tls(helloWith({alpnExtension({"h2", ""})})), ParseStatus::kNo);
}

TEST(ParseClientHello, AlpnWithAnEmptyListIsNo) {
  EXPECT_EQ(tls(helloWith({extension(16, u16(0))})), ParseStatus::kNo);
  EXPECT_EQ(tls(helloWith({extension(16, {})})), ParseStatus::kNo);
}

TEST(ParseClientHello, AlpnListLengthMismatchIsNo) {
  EXPECT_EQ(tls(helloWith({extension(16, cat({u16(4), {0x02, 'h', '2'}}))})), ParseStatus::kNo);
  EXPECT_EQ(tls(helloWith({extension(16, cat({u16(3), {0x03, 'h', '2'}}))})), ParseStatus::kNo);
}

// ---------------------------------------------------------------------------------------------
// parseClientHello: the output parameter

TEST(ParseClientHello, OutIsLeftAloneUnlessYes) {
  ClientHello out;
  out.sni = "before";
  EXPECT_EQ(parseClientHello(first(kTls13Hello, 200), &out), ParseStatus::kNeedMore);
  EXPECT_EQ(parseClientHello(Bytes{0x17}, &out), ParseStatus::kNo);
  EXPECT_EQ(out.sni, "before");
}

TEST(ParseClientHello, YesReplacesStaleOutput) {
  ClientHello out;
  out.sni = "stale";
  out.alpn = {"stale"};
  ASSERT_EQ(parseClientHello(kTls12HelloNoSni, &out), ParseStatus::kYes);
  EXPECT_EQ(out.sni, "");
  EXPECT_TRUE(out.alpn.empty());
}

// ---------------------------------------------------------------------------------------------
// matchHttp2Preface

TEST(MatchHttp2Preface, ExactPrefaceIsYes) {
  EXPECT_EQ(matchHttp2Preface(bytesOf(kPreface)), ParseStatus::kYes);
}

TEST(MatchHttp2Preface, PrefaceFollowedBySettingsIsYes) {
  const Bytes settings = {0x00, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
                          0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x64};
  EXPECT_EQ(matchHttp2Preface(cat({bytesOf(kPreface), settings})), ParseStatus::kYes);
}

TEST(MatchHttp2Preface, EveryProperPrefixNeedsMore) {
  for (std::size_t n = 0; n < kPreface.size(); ++n) {
    EXPECT_EQ(matchHttp2Preface(bytesOf(kPreface.substr(0, n))), ParseStatus::kNeedMore) << n;
  }
}

TEST(MatchHttp2Preface, FirstMismatchingByteIsNo) {
  for (std::size_t n = 0; n < kPreface.size(); ++n) {
    Bytes bytes = bytesOf(kPreface.substr(0, n + 1));
    bytes[n] ^= 0x20;
    EXPECT_EQ(matchHttp2Preface(bytes), ParseStatus::kNo) << n;
  }
}

TEST(MatchHttp2Preface, PriMethodHttp11RequestIsNo) {
  EXPECT_EQ(matchHttp2Preface(bytesOf("PRI * HTTP/1.1\r\n")), ParseStatus::kNo);
}

// ---------------------------------------------------------------------------------------------
// parseRequestLine

TEST(ParseRequestLine, GetIsYesWithItsFields) {
  RequestLine out;
  ASSERT_EQ(parseRequestLine(bytesOf("GET /index.html?q=1 HTTP/1.1\r\nHost: a\r\n\r\n"), &out),
            ParseStatus::kYes);
  EXPECT_EQ(out.method, "GET");
  EXPECT_EQ(out.target, "/index.html?q=1");
  EXPECT_EQ(out.version_minor, 1);
}

TEST(ParseRequestLine, Http10IsYesWithMinorZero) {
  RequestLine out;
  ASSERT_EQ(parseRequestLine(bytesOf("GET / HTTP/1.0\r\n"), &out), ParseStatus::kYes);
  EXPECT_EQ(out.version_minor, 0);
}

TEST(ParseRequestLine, BareLfEndsTheLine) {
  RequestLine out;
  ASSERT_EQ(parseRequestLine(bytesOf("GET /x HTTP/1.1\n"), &out), ParseStatus::kYes);
  EXPECT_EQ(out.target, "/x");
}

TEST(ParseRequestLine, PostAbsoluteFormIsYes) {
  RequestLine out;
  ASSERT_EQ(parseRequestLine(bytesOf("POST http://foo.example:8080/api HTTP/1.1\r\n"), &out),
            ParseStatus::kYes);
  EXPECT_EQ(out.method, "POST");
  EXPECT_EQ(out.target, "http://foo.example:8080/api");
}

TEST(ParseRequestLine, OptionsAsteriskFormIsYes) {
  RequestLine out;
  ASSERT_EQ(parseRequestLine(bytesOf("OPTIONS * HTTP/1.1\r\n"), &out), ParseStatus::kYes);
  EXPECT_EQ(out.method, "OPTIONS");
  EXPECT_EQ(out.target, "*");
}

TEST(ParseRequestLine, ConnectAuthorityFormIsYes) {
  RequestLine out;
  ASSERT_EQ(parseRequestLine(bytesOf("CONNECT foo.example:443 HTTP/1.1\r\n"), &out),
            ParseStatus::kYes);
  EXPECT_EQ(out.method, "CONNECT");
  EXPECT_EQ(out.target, "foo.example:443");
}

TEST(ParseRequestLine, ExtensionMethodOfTokenCharsIsYes) {
  EXPECT_EQ(http1("M-SEARCH * HTTP/1.1\r\n"), ParseStatus::kYes);
  EXPECT_EQ(http1("!#$%&'*+-.^_`|~09az * HTTP/1.1\r\n"), ParseStatus::kYes);
}

TEST(ParseRequestLine, ConsistentPrefixesNeedMore) {
  const std::string_view line = "GET /path HTTP/1.1\r\n";
  for (std::size_t n = 0; n < line.size(); ++n) {
    EXPECT_EQ(http1(line.substr(0, n)), ParseStatus::kNeedMore) << n;
  }
}

TEST(ParseRequestLine, MethodWithNonTokenByteIsNo) {
  for (std::string_view bad : std::initializer_list<std::string_view>{
           "GE(T", "GE\"T", "G\x80", "GE\tT", "GET\r", "GET\n", "GET:"}) {
    EXPECT_EQ(http1(bad), ParseStatus::kNo) << bad;
  }
}

TEST(ParseRequestLine, EmptyMethodIsNo) { EXPECT_EQ(http1(" / HTTP/1.1\r\n"), ParseStatus::kNo); }

TEST(ParseRequestLine, MethodOfMaxLengthIsYesAndOneLongerIsNo) {
  const std::string longest(kMaxMethodLength, 'A');
  EXPECT_EQ(http1(longest + " / HTTP/1.1\r\n"), ParseStatus::kYes);
  EXPECT_EQ(http1(longest), ParseStatus::kNeedMore);
  EXPECT_EQ(http1(longest + "A"), ParseStatus::kNo);
}

TEST(ParseRequestLine, EmptyTargetIsNo) { EXPECT_EQ(http1("GET  HTTP/1.1\r\n"), ParseStatus::kNo); }

TEST(ParseRequestLine, TargetWithControlDelOrHighByteIsNo) {
  for (std::string_view bad : std::initializer_list<std::string_view>{
           "GET /a\tb", "GET /a\rb", "GET /a\x7f", "GET /a\x80", "GET /\xff", "GET /a\0"sv}) {
    EXPECT_EQ(http1(bad), ParseStatus::kNo) << bad;
  }
}

TEST(ParseRequestLine, TargetEndedByLineEndIsNo) {
  // HTTP/0.9's "GET /" has no version; it is not HTTP/1.
  EXPECT_EQ(http1("GET /\r\n"), ParseStatus::kNo);
  EXPECT_EQ(http1("GET /\n"), ParseStatus::kNo);
}

TEST(ParseRequestLine, ExtraSpaceBeforeTheVersionIsNo) {
  EXPECT_EQ(http1("GET /  HTTP/1.1\r\n"), ParseStatus::kNo);
}

TEST(ParseRequestLine, LowercaseVersionIsNo) {
  EXPECT_EQ(http1("GET / http/1.1\r\n"), ParseStatus::kNo);
  EXPECT_EQ(http1("GET / h"), ParseStatus::kNo);
}

TEST(ParseRequestLine, VersionOtherThan10Or11IsNo) {
  for (std::string_view bad : std::initializer_list<std::string_view>{
           "GET / HTTP/2.0\r\n", "GET / HTTP/1.2\r\n", "GET / HTTP/1.x\r\n", "GET / HTTP/0.9\r\n",
           "GET / HTTP/1.10\r\n", "GET / HTTP/1.1 \r\n"}) {
    EXPECT_EQ(http1(bad), ParseStatus::kNo) << bad;
  }
}

TEST(ParseRequestLine, CrNotFollowedByLfIsNo) {
  EXPECT_EQ(http1("GET / HTTP/1.1\r"), ParseStatus::kNeedMore);
  EXPECT_EQ(http1("GET / HTTP/1.1\rX"), ParseStatus::kNo);
  EXPECT_EQ(http1("GET / HTTP/1.1\r\r\n"), ParseStatus::kNo);
}

TEST(ParseRequestLine, LeadingEmptyLineIsNo) {
  EXPECT_EQ(http1("\r\nGET / HTTP/1.1\r\n"), ParseStatus::kNo);
}

TEST(ParseRequestLine, LineOfMaxLengthIsYes) {
  const std::string prefix = "GET /";
  const std::string suffix = " HTTP/1.1";
  const std::string line =
      prefix + std::string(kMaxRequestLine - prefix.size() - suffix.size(), 'a') + suffix;
  ASSERT_EQ(line.size(), kMaxRequestLine);
  EXPECT_EQ(http1(line + "\r\n"), ParseStatus::kYes);
}

TEST(ParseRequestLine, LineOneByteOverMaxLengthIsNo) {
  const std::string prefix = "GET /";
  const std::string suffix = " HTTP/1.1";
  const std::string line =
      prefix + std::string(kMaxRequestLine + 1 - prefix.size() - suffix.size(), 'a') + suffix;
  EXPECT_EQ(http1(line + "\r\n"), ParseStatus::kNo);
}

TEST(ParseRequestLine, TargetIsNoOnceTheLineCanNoLongerEndWithinMaxLength) {
  // The last target byte that still leaves room for " HTTP/1.1" sits at kMaxRequestLine - 10.
  const std::string line = "GET /" + std::string(kMaxRequestLine, 'a');
  const std::string_view view(line);
  EXPECT_EQ(http1(view.substr(0, kMaxRequestLine - 9)), ParseStatus::kNeedMore);
  EXPECT_EQ(http1(view.substr(0, kMaxRequestLine - 8)), ParseStatus::kNo);
}

TEST(ParseRequestLine, MethodIsNoOnceTheLineCanNoLongerEndWithinMaxLength) {
  // Only reachable with a bound far below kMaxMethodLength, so check through the whole line:
  // a method can never be what overruns it (20 + 11 < 8192).
  static_assert(kMaxMethodLength + std::string_view(" / HTTP/1.1").size() <= kMaxRequestLine);
  EXPECT_EQ(http1(std::string(kMaxMethodLength, 'A')), ParseStatus::kNeedMore);
}

TEST(ParseRequestLine, VersionIsNoOnceTheLineCanNoLongerEndWithinMaxLength) {
  const std::string head = "GET /" + std::string(kMaxRequestLine - 5 - 9, 'a') + " HTTP/1.";
  ASSERT_EQ(head.size() + 1, kMaxRequestLine);
  EXPECT_EQ(http1(head), ParseStatus::kNeedMore);
  const std::string longer = "GET /" + std::string(kMaxRequestLine - 5 - 8, 'a') + " HTTP/1";
  // One more target byte: the line can only end one byte past the bound.
  EXPECT_EQ(http1(longer), ParseStatus::kNo);
}

TEST(ParseRequestLine, OutIsLeftAloneUnlessYes) {
  RequestLine out;
  out.method = "before";
  EXPECT_EQ(parseRequestLine(bytesOf("GET / HTTP/1."), &out), ParseStatus::kNeedMore);
  EXPECT_EQ(parseRequestLine(bytesOf("GET / http"), &out), ParseStatus::kNo);
  EXPECT_EQ(out.method, "before");
}

// ---------------------------------------------------------------------------------------------
// detect

TEST(Detect, EmptyPrefixIsUndecided) { EXPECT_FALSE(detect({}).has_value()); }

TEST(Detect, RealClientHelloFedByteAtATimeIsUndecidedUntilItsLastByte) {
  const std::span<const uint8_t> whole(kTls13Hello);
  for (std::size_t n = 1; n < whole.size(); ++n) {
    ASSERT_FALSE(detect(whole.first(n)).has_value()) << n;
  }
  const auto d = detect(whole);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kTls);
  ASSERT_TRUE(d->client_hello.has_value());
  EXPECT_EQ(d->client_hello->sni, "foo.example");
  EXPECT_EQ(d->client_hello->alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_FALSE(d->request_line.has_value());
}

TEST(Detect, FragmentedClientHelloIsTlsWithoutClientHello) {
  const auto d = detect(first(kFragmentedHello, 5 + 0x80));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kTls);
  EXPECT_FALSE(d->client_hello.has_value());
}

TEST(Detect, MalformedClientHelloIsOpaque) {
  const auto d = detect(helloWith({sniExtension("foo example")}));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kOpaque);
}

TEST(Detect, MaximalClientHelloIsDecidedWithinTheDetectBudget) {
  const Bytes base = helloWith({sniExtension("a.example"), extension(21, {})});
  const Bytes bytes =
      helloWith({sniExtension("a.example"), extension(21, Bytes(16384 - (base.size() - 5), 0))});
  ASSERT_EQ(bytes.size(), kMaxDetectBytes);
  EXPECT_FALSE(detect(first(bytes, bytes.size() - 1)).has_value());
  const auto d = detect(bytes);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kTls);
  EXPECT_EQ(d->client_hello->sni, "a.example");
}

TEST(Detect, NonHandshakeTlsRecordIsOpaqueFromItsFirstByte) {
  const auto d = detect(Bytes{0x17});
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kOpaque);
}

TEST(Detect, Http2PrefaceIsHttp2) {
  const auto d = detectText(kPreface);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kHttp2);
  EXPECT_FALSE(d->request_line.has_value());
}

TEST(Detect, EveryProperPrefixOfThePrefaceIsUndecidedNeverHttp1) {
  for (std::size_t n = 1; n < kPreface.size(); ++n) {
    EXPECT_FALSE(detectText(kPreface.substr(0, n)).has_value()) << n;
  }
}

TEST(Detect, PriMethodHttp11RequestIsHttp1) {
  const auto d = detectText("PRI * HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kHttp1);
  EXPECT_EQ(d->request_line->method, "PRI");
}

TEST(Detect, GetRequestIsHttp1WithItsRequestLine) {
  const auto d = detectText("GET /healthz HTTP/1.1\r\nHost: a\r\n");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kHttp1);
  ASSERT_TRUE(d->request_line.has_value());
  EXPECT_EQ(d->request_line->method, "GET");
  EXPECT_EQ(d->request_line->target, "/healthz");
  EXPECT_EQ(d->request_line->version_minor, 1);
  EXPECT_FALSE(d->client_hello.has_value());
}

TEST(Detect, PartialRequestLineIsUndecided) {
  EXPECT_FALSE(detectText("GE").has_value());
  EXPECT_FALSE(detectText("GET /pa").has_value());
  EXPECT_FALSE(detectText("POST / HTTP/1.1\r").has_value());
}

TEST(Detect, RedisInlinePingIsOpaqueAtTheCarriageReturn) {
  // "P" may start PRI (the preface), POST or PUT; "PI".."PING" are still HTTP method tokens.
  for (std::string_view undecided :
       std::initializer_list<std::string_view>{"P", "PI", "PIN", "PING"}) {
    EXPECT_FALSE(detectText(undecided).has_value()) << undecided;
  }
  const auto d = detectText("PING\r");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->protocol, Protocol::kOpaque);
  EXPECT_EQ(detectText("PING\r\n")->protocol, Protocol::kOpaque);
}

TEST(Detect, RedisRespArrayIsOpaqueAtItsThirdByte) {
  EXPECT_FALSE(detectText("*1").has_value());  // '*' and '1' are token characters
  EXPECT_EQ(detectText("*1\r")->protocol, Protocol::kOpaque);
}

TEST(Detect, SshBannerIsOpaqueAtItsLineEnd) {
  EXPECT_FALSE(detectText("SSH-2.0-OpenSSH_9.2").has_value());
  EXPECT_EQ(detectText("SSH-2.0-OpenSSH_9.2\r\n")->protocol, Protocol::kOpaque);
}

TEST(Detect, ByteNoCandidateAcceptsIsOpaqueAtOnce) {
  for (uint8_t b : std::initializer_list<uint8_t>{0x00, 0x04, 0x80, 0xff, '\r', ' ', '('}) {
    const auto d = detect(Bytes{b});
    ASSERT_TRUE(d.has_value()) << int{b};
    EXPECT_EQ(d->protocol, Protocol::kOpaque) << int{b};
  }
}

TEST(Detect, BinaryGreetingIsOpaqueAtItsFirstNonTokenByte) {
  // A MySQL-style packet: 3-byte length 0x4a 0x00 0x00. 'J' is a token character, NUL is not.
  EXPECT_FALSE(detect(Bytes{0x4a}).has_value());
  EXPECT_EQ(detect(Bytes{0x4a, 0x00})->protocol, Protocol::kOpaque);
}

TEST(Detect, OverlongRequestLineIsMalformedHttp1) {
  // Starts like HTTP: the proxy's parser answers it (414) rather than passing it on opaque.
  const std::string line = "GET /" + std::string(kMaxRequestLine, 'a');
  const auto d = detectText(line);
  EXPECT_EQ(d->protocol, Protocol::kHttp1);
  EXPECT_FALSE(d->request_line.has_value());
}

TEST(Detect, MalformedRequestLineWithAnHttpMethodIsHttp1WithoutRequestLine) {
  for (std::string_view text : {"GET /a b HTTP/1.1\r\n", "GET / HTTP/1.2\r\n", "POST / HTTQ/1.1\r\n",
                                "DELETE /x\x01 HTTP/1.1\r\n"}) {
    const auto d = detectText(text);
    ASSERT_TRUE(d.has_value()) << text;
    EXPECT_EQ(d->protocol, Protocol::kHttp1) << text;
    EXPECT_FALSE(d->request_line.has_value()) << text;
  }
  // Not an HTTP method: opaque as before (and so is a method not followed by SP).
  EXPECT_EQ(detectText("G@T / HTTP/1.1\r\n")->protocol, Protocol::kOpaque);
  EXPECT_EQ(detectText("GETX\r\n")->protocol, Protocol::kOpaque);
}

TEST(Detect, AnswerDoesNotChangeWhenMoreBytesArrive) {
  const auto early = detectText("GET / HTTP/1.1\n");
  const auto late = detectText("GET / HTTP/1.1\nHost: x\n\n");
  ASSERT_TRUE(early.has_value() && late.has_value());
  EXPECT_EQ(early->protocol, late->protocol);
  EXPECT_EQ(early->request_line->target, late->request_line->target);
}

}  // namespace
}  // namespace weft::detect
