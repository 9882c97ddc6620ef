#include "cli/viz/prometheus.h"

#include <asio.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "weft/http1/codec.h"

namespace weft::cli::viz {
namespace {

// A Prometheus answer for a whole mesh is a few MiB at most; anything larger is not Prometheus.
constexpr std::size_t kMaxResponseBytes = 64 * 1024 * 1024;

struct HostPort {
  std::string host;
  std::string port;
};

Result<HostPort> splitHostPort(std::string_view hp) {
  if (hp.empty()) return Error::internal("bad_address", "empty address");
  HostPort out;
  if (hp.front() == '[') {
    auto close = hp.find(']');
    if (close == std::string_view::npos) {
      return Error::internal("bad_address", "\"" + std::string(hp) + "\": missing ']'");
    }
    out.host = std::string(hp.substr(1, close - 1));
    auto rest = hp.substr(close + 1);
    if (rest.empty()) {
      out.port = "80";
    } else if (rest.front() == ':' && rest.size() > 1) {
      out.port = std::string(rest.substr(1));
    } else {
      return Error::internal("bad_address", "\"" + std::string(hp) + "\": expected [IPv6]:PORT");
    }
  } else {
    auto colon = hp.rfind(':');
    if (colon == std::string_view::npos) {
      out.host = std::string(hp);
      out.port = "80";
    } else {
      out.host = std::string(hp.substr(0, colon));
      out.port = std::string(hp.substr(colon + 1));
    }
  }
  if (out.host.empty() || out.port.empty() ||
      out.port.find_first_not_of("0123456789") != std::string::npos) {
    return Error::internal("bad_address", "\"" + std::string(hp) + "\" is not HOST:PORT");
  }
  return out;
}

Error ioError(const asio::error_code& ec, std::string_view what) {
  if (ec == asio::error::connection_refused) {
    return Error::upstream("connection_refused", "connection refused", ec.value());
  }
  if (ec == asio::error::host_unreachable || ec == asio::error::network_unreachable ||
      ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again) {
    return Error::upstream("unreachable", ec.message(), ec.value());
  }
  return Error::upstream("io", std::string(what) + ": " + ec.message(), ec.value());
}

// Splits a complete "Connection: close" response into status and decoded body.
Result<HttpResponse> parseResponse(std::string_view raw) {
  http1::ResponseHeadParser parser("GET");
  auto head = parser.feed(raw);
  if (head.state == http1::ParseState::kError) {
    return Error::upstream("bad_response",
                           "malformed HTTP response head (" + std::string(head.error.kind) + ")");
  }
  if (head.state != http1::ParseState::kDone) {
    return Error::upstream("bad_response", "the connection closed before a complete response head");
  }
  HttpResponse out;
  out.status = parser.head().status;
  std::string_view rest = raw.substr(head.consumed);
  const auto& framing = parser.head().framing;
  switch (framing.kind) {
    case http1::BodyFraming::Kind::kNone:
      break;
    case http1::BodyFraming::Kind::kContentLength:
      if (rest.size() < framing.length) {
        return Error::upstream("bad_response", "the connection closed mid-body");
      }
      out.body = std::string(rest.substr(0, framing.length));
      break;
    case http1::BodyFraming::Kind::kChunked: {
      http1::ChunkedDecoder decoder;
      auto r = decoder.feed(rest, out.body);
      if (r.state != http1::ParseState::kDone) {
        return Error::upstream("bad_response", "malformed or truncated chunked body");
      }
      break;
    }
    case http1::BodyFraming::Kind::kCloseDelimited:
      out.body = std::string(rest);
      break;
    case http1::BodyFraming::Kind::kUpgrade:
      return Error::upstream("bad_response", "unexpected upgrade response");
  }
  return out;
}

}  // namespace

const std::string& Sample::label(const std::string& name) const {
  static const std::string kEmpty;
  auto it = labels.find(name);
  return it == labels.end() ? kEmpty : it->second;
}

Result<HttpResponse> httpGet(std::string_view host_port, std::string_view target,
                             std::chrono::milliseconds timeout) {
  auto hp = splitHostPort(host_port);
  if (!hp.ok()) return hp.error();

  asio::io_context io(1);
  asio::ip::tcp::resolver resolver(io);
  asio::ip::tcp::socket socket(io);
  std::string request = "GET " + std::string(target) +
                        " HTTP/1.1\r\nHost: " + std::string(host_port) +
                        "\r\nUser-Agent: weft-cli\r\nAccept: application/json\r\n"
                        "Connection: close\r\n\r\n";
  std::string raw;
  std::array<char, 16384> buf{};
  std::optional<Error> failure;
  bool done = false;

  std::function<void()> readMore = [&] {
    socket.async_read_some(asio::buffer(buf), [&](const asio::error_code& ec, std::size_t n) {
      raw.append(buf.data(), n);
      if (raw.size() > kMaxResponseBytes) {
        failure = Error::upstream("bad_response", "response larger than 64 MiB");
        done = true;
        return;
      }
      if (ec == asio::error::eof) {
        done = true;
        return;
      }
      if (ec) {
        failure = ioError(ec, "read");
        done = true;
        return;
      }
      readMore();
    });
  };

  resolver.async_resolve(
      hp->host, hp->port,
      [&](const asio::error_code& ec, const asio::ip::tcp::resolver::results_type& results) {
        if (ec) {
          failure = ioError(ec, "resolve");
          done = true;
          return;
        }
        asio::async_connect(socket, results,
                            [&](const asio::error_code& cec, const asio::ip::tcp::endpoint&) {
                              if (cec) {
                                failure = ioError(cec, "connect");
                                done = true;
                                return;
                              }
                              asio::async_write(socket, asio::buffer(request),
                                                [&](const asio::error_code& wec, std::size_t) {
                                                  if (wec) {
                                                    failure = ioError(wec, "write");
                                                    done = true;
                                                    return;
                                                  }
                                                  readMore();
                                                });
                            });
      });
  io.run_for(timeout);
  if (!done) {
    return Error::upstream("timeout",
                           "no complete answer within " + std::to_string(timeout.count()) + "ms");
  }
  if (failure) return *failure;
  return parseResponse(raw);
}

std::string urlEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size() * 3);
  for (unsigned char c : value) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

std::string promQuote(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += '"';
  return out;
}

Result<PrometheusClient> PrometheusClient::create(std::string_view url) {
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    return Error::internal("bad_address",
                           "https Prometheus URLs are not supported; reach it through a local "
                           "port-forward and use http://");
  }
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  std::string prefix;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    prefix = std::string(rest.substr(slash));
    rest = rest.substr(0, slash);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  }
  auto hp = splitHostPort(rest);
  if (!hp.ok()) return hp.error();
  return PrometheusClient("http://" + std::string(rest) + prefix, std::string(rest), prefix);
}

Result<HttpResponse> PrometheusClient::get(const std::string& target) const {
  auto rsp = httpGet(host_port_, prefix_ + target);
  if (!rsp.ok()) {
    const auto& e = rsp.error();
    std::string why = e.kind == "connection_refused" ? "connection refused" : e.message();
    return Error::upstream("unreachable", "cannot reach Prometheus at " + url_ + ": " + why +
                                              "; is `weft local up` running? (or pass "
                                              "--prometheus-url)");
  }
  return rsp;
}

Status PrometheusClient::ready() const {
  auto rsp = get("/-/ready");
  if (!rsp.ok()) return rsp.error();
  if (rsp->status != 200) {
    return Error::upstream("not_ready", "Prometheus at " + url_ + " answered /-/ready with " +
                                            std::to_string(rsp->status));
  }
  return okStatus();
}

Result<std::vector<Sample>> PrometheusClient::query(std::string_view promql) const {
  auto rsp = get("/api/v1/query?query=" + urlEncode(promql));
  if (!rsp.ok()) return rsp.error();
  nlohmann::json doc = nlohmann::json::parse(rsp->body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error::upstream("bad_response", "Prometheus at " + url_ + " answered " +
                                               std::to_string(rsp->status) +
                                               " with a body that is not JSON");
  }
  if (doc.value("status", "") != "success") {
    return Error::upstream("query_failed", "Prometheus rejected `" + std::string(promql) +
                                               "`: " + doc.value("error", "unknown error"));
  }
  std::vector<Sample> out;
  try {
    const auto& data = doc.at("data");
    const std::string type = data.at("resultType").get<std::string>();
    auto toDouble = [](const nlohmann::json& pair) {
      // [ <unix time>, "<value>" ]; strtod reads "NaN", "+Inf" and "-Inf".
      const std::string text = pair.at(1).get<std::string>();
      return std::strtod(text.c_str(), nullptr);
    };
    if (type == "vector") {
      for (const auto& item : data.at("result")) {
        Sample s;
        for (const auto& [k, v] : item.at("metric").items()) s.labels[k] = v.get<std::string>();
        s.value = toDouble(item.at("value"));
        out.push_back(std::move(s));
      }
    } else if (type == "scalar") {
      out.push_back(Sample{{}, toDouble(data.at("result"))});
    } else {
      return Error::upstream("bad_response", "unexpected result type \"" + type + "\" for `" +
                                                 std::string(promql) + "`");
    }
  } catch (const nlohmann::json::exception& e) {
    return Error::upstream("bad_response",
                           std::string("unexpected Prometheus answer shape: ") + e.what());
  }
  return out;
}

}  // namespace weft::cli::viz
