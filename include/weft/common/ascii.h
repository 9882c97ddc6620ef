// ASCII case folding for protocol names (HTTP field names, schemes, DNS names): locale-free, and
// inline, because the HTTP path compares names several times per field of every message and a
// length mismatch, the usual answer, should cost one comparison rather than a call.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace weft::ascii {

constexpr char lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

// Equal ignoring ASCII case.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// s with A-Z lowered.
inline std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

}  // namespace weft::ascii
