#include "weft/http/message.h"

#include <algorithm>

namespace weft::http {

std::optional<std::string_view> find(const Fields& f, std::string_view name) {
  for (const auto& field : f) {
    if (iequals(field.name, name)) return std::string_view(field.value);
  }
  return std::nullopt;
}

std::size_t erase(Fields& f, std::string_view name) {
  auto before = f.size();
  std::erase_if(f, [&](const Field& field) { return iequals(field.name, name); });
  return before - f.size();
}

std::string_view protoName(Proto p) {
  switch (p) {
    case Proto::kHttp10: return "HTTP/1.0";
    case Proto::kHttp11: return "HTTP/1.1";
    case Proto::kHttp2: return "HTTP/2";
  }
  return "HTTP/1.1";
}

bool RequestHead::isGrpc() const {
  auto ct = find(headers, "content-type");
  if (!ct) return false;
  constexpr std::string_view kGrpc = "application/grpc";
  return ct->size() >= kGrpc.size() && iequals(ct->substr(0, kGrpc.size()), kGrpc) &&
         (ct->size() == kGrpc.size() || (*ct)[kGrpc.size()] == '+' || (*ct)[kGrpc.size()] == ';');
}

}  // namespace weft::http
