#include "weft/iptables/rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <initializer_list>

namespace weft::iptables {
namespace {

constexpr std::array<std::string_view, 4> kBuiltinNatChains = {"PREROUTING", "INPUT", "OUTPUT",
                                                               "POSTROUTING"};

bool isOurChain(std::string_view name) { return name == kInboundChain || name == kOutboundChain; }

// Splits a saved rule into words the way iptables-restore does: whitespace separates, double
// quotes group (save quotes --comment text) and a backslash inside quotes escapes. Only used to
// find the chain and the jump target, so the words need not be unquoted exactly.
std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '\\' && i + 1 < line.size()) {
        cur += line[++i];
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) out.push_back(std::move(cur));
  return out;
}

// A rule of another chain whose target (-j/--jump or -g/--goto) is one of our chains. Such rules
// must go before our chains can be deleted, and only the two canonical jumps may stay on apply.
bool jumpsIntoOurChains(std::string_view rule) {
  auto w = words(rule);
  if (w.size() < 2 || isOurChain(w[1])) return false;
  for (std::size_t i = 2; i + 1 < w.size(); ++i) {
    if ((w[i] == "-j" || w[i] == "--jump" || w[i] == "-g" || w[i] == "--goto") &&
        isOurChain(w[i + 1])) {
      return true;
    }
  }
  return false;
}

// "-A CHAIN spec" -> "-D CHAIN spec": deletes the first rule of CHAIN that matches spec.
std::string deleteOf(std::string_view rule) { return "-D" + std::string(rule.substr(2)); }

// The network address of a subnet with its host bits cleared, as iptables itself stores and
// saves it ("10.1.2.3/8" -> "10.0.0.0/8"); this also lets equal subnets be de-duplicated.
std::string maskedSubnet(const config::Subnet& subnet) {
  std::array<unsigned char, 16> bytes{};
  int af = subnet.ipv6 ? AF_INET6 : AF_INET;
  if (inet_pton(af, subnet.address.c_str(), bytes.data()) != 1) {
    // parseSubnet() only produces addresses inet_pton accepted; keep the text if that changes.
    return subnet.toString();
  }
  int total_bits = subnet.ipv6 ? 128 : 32;
  for (int bit = std::clamp(subnet.prefix, 0, total_bits); bit < total_bits; ++bit) {
    bytes[static_cast<std::size_t>(bit / 8)] &= static_cast<unsigned char>(~(0x80U >> (bit % 8)));
  }
  std::array<char, INET6_ADDRSTRLEN> text{};
  inet_ntop(af, bytes.data(), text.data(), text.size());
  return std::string(text.data()) + "/" + std::to_string(subnet.prefix);
}

// Concatenation in one allocation.
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  std::size_t size = 0;
  for (auto p : parts) size += p.size();
  out.reserve(size);
  for (auto p : parts) out += p;
  return out;
}

std::string_view trimLine(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

}  // namespace

std::string_view familyName(Family family) { return family == Family::kIpv4 ? "ipv4" : "ipv6"; }

Tools toolsFor(Mode mode, Family family) {
  std::string base = family == Family::kIpv4 ? "iptables" : "ip6tables";
  std::string backend = mode == Mode::kNft ? "-nft" : "-legacy";
  return Tools{base + backend + "-save", base + backend + "-restore"};
}

config::PortSet effectiveSkipInboundPorts(const Config& config) {
  // Both parts are canonical PortSet text, so this parse cannot fail.
  auto merged = config::PortSet::parse(std::string(kProxyOwnInboundPorts) + "," +
                                       config.skip_inbound_ports.toString());
  return merged.ok() ? std::move(merged).value() : config.skip_inbound_ports;
}

std::vector<std::string> multiportLists(const config::PortSet& ports) {
  std::vector<std::string> lists;
  std::string cur;
  int used = 0;
  for (const auto& r : ports.ranges()) {
    int cost = r.first == r.last ? 1 : 2;
    if (used + cost > kMultiportMaxPorts) {
      lists.push_back(std::move(cur));
      cur.clear();
      used = 0;
    }
    if (!cur.empty()) cur += ',';
    cur += std::to_string(r.first);
    // PortSet merges neighbours (4190,4191 -> 4190-4191); both spellings cost two, and the list
    // reads as the user wrote it.
    if (r.last == r.first + 1) cur += "," + std::to_string(r.last);
    if (r.last > r.first + 1) cur += ":" + std::to_string(r.last);
    used += cost;
  }
  if (!cur.empty()) lists.push_back(std::move(cur));
  return lists;
}

std::vector<std::string> chainRules(const Config& config, Family family) {
  std::vector<std::string> rules;
  const std::string in = "-A " + std::string(kInboundChain);
  const std::string out = "-A " + std::string(kOutboundChain);

  for (const auto& list : multiportLists(effectiveSkipInboundPorts(config))) {
    rules.push_back(cat({in, " -p tcp -m multiport --dports ", list, " -j RETURN"}));
  }
  rules.push_back(in + " -p tcp -j REDIRECT --to-ports " + std::to_string(config.inbound_port));

  // The proxy's own connections go where they were addressed; without this every connection the
  // proxy opens would loop back into it.
  rules.push_back(out + " -m owner --uid-owner " + std::to_string(config.proxy_uid) + " -j RETURN");
  // Loopback traffic stays local: the app talking to itself or to the proxy's admin port.
  rules.push_back(out + " -o lo -j RETURN");
  for (const auto& list : multiportLists(config.skip_outbound_ports)) {
    rules.push_back(cat({out, " -p tcp -m multiport --dports ", list, " -j RETURN"}));
  }
  std::vector<std::string> seen;
  for (const auto& subnet : config.skip_subnets) {
    if (subnet.ipv6 != (family == Family::kIpv6)) continue;
    std::string cidr = maskedSubnet(subnet);
    if (std::find(seen.begin(), seen.end(), cidr) != seen.end()) continue;
    seen.push_back(cidr);
    rules.push_back(cat({out, " -d ", cidr, " -j RETURN"}));
  }
  rules.push_back(out + " -p tcp -j REDIRECT --to-ports " + std::to_string(config.outbound_port));
  return rules;
}

bool NatTable::hasChain(std::string_view name) const {
  return std::find(chains.begin(), chains.end(), name) != chains.end();
}

Result<NatTable> parseNatSave(std::string_view save_output) {
  NatTable table;
  bool in_nat = false;
  bool saw_nat = false;
  std::string_view rest = save_output;
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = trimLine(rest.substr(0, nl));
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    if (line.empty()) continue;
    if (line.front() == '#') {
      if (line.find("Warning") != std::string_view::npos) table.warnings.emplace_back(line);
      continue;
    }
    if (line.front() == '*') {
      in_nat = line == "*nat";
      saw_nat = saw_nat || in_nat;
      continue;
    }
    if (!in_nat) continue;
    if (line == "COMMIT") {
      in_nat = false;
    } else if (line.front() == ':') {
      auto space = line.find(' ');
      table.chains.emplace_back(
          line.substr(1, space == std::string_view::npos ? line.npos : space - 1));
    } else {
      // `-c` output prefixes each rule with "[packets:bytes] ".
      if (line.front() == '[') {
        auto close = line.find("] ");
        if (close == std::string_view::npos) {
          return Error::internal("bad_save_output", "unexpected line: " + std::string(line));
        }
        line = trimLine(line.substr(close + 2));
      }
      if (line.substr(0, 3) != "-A ") {
        return Error::internal("bad_save_output", "unexpected line: " + std::string(line));
      }
      table.rules.emplace_back(line);
    }
  }
  if (!saw_nat) return Error::internal("bad_save_output", "no *nat table in the save output");
  return table;
}

NatTable appliedTable(const Config& config, Family family) {
  NatTable table;
  table.chains.assign(kBuiltinNatChains.begin(), kBuiltinNatChains.end());
  table.chains.emplace_back(kInboundChain);
  table.chains.emplace_back(kOutboundChain);
  table.rules.emplace_back(kInboundJump);
  table.rules.emplace_back(kOutboundJump);
  for (auto& rule : chainRules(config, family)) table.rules.push_back(std::move(rule));
  return table;
}

Plan planApply(const Config& config, Family family, const NatTable& current) {
  Plan plan;
  std::string deletes;
  bool have_inbound_jump = false;
  bool have_outbound_jump = false;
  for (const auto& rule : current.rules) {
    if (!jumpsIntoOurChains(rule)) continue;
    bool* have = rule == kInboundJump    ? &have_inbound_jump
                 : rule == kOutboundJump ? &have_outbound_jump
                                         : nullptr;
    if (have != nullptr && !*have) {
      *have = true;
      continue;
    }
    // A duplicate or a foreign jump. For a duplicate, -D removes the first copy rather than this
    // one, so the copy that stays may sit later in the chain; either way exactly one remains, and
    // the next run finds it and changes nothing.
    deletes += deleteOf(rule) + "\n";
    ++plan.jumps_deleted;
  }

  std::string& in = plan.restore_input;
  in += "*nat\n";
  in += ":" + std::string(kInboundChain) + " - [0:0]\n";
  in += ":" + std::string(kOutboundChain) + " - [0:0]\n";
  in += deletes;
  auto rules = chainRules(config, family);
  for (const auto& rule : rules) in += rule + "\n";
  if (!have_inbound_jump) in += std::string(kInboundJump) + "\n";
  if (!have_outbound_jump) in += std::string(kOutboundJump) + "\n";
  in += "COMMIT\n";
  plan.chains = 2;
  plan.rules = static_cast<int>(rules.size()) + 2;
  return plan;
}

Plan planRemove(const NatTable& current) {
  Plan plan;
  std::string body;
  for (const auto& rule : current.rules) {
    if (!jumpsIntoOurChains(rule)) continue;
    body += deleteOf(rule) + "\n";
    ++plan.jumps_deleted;
  }
  // Flush both before deleting either, in case one of our chains jumps into the other.
  std::vector<std::string_view> present;
  for (auto chain : {kInboundChain, kOutboundChain}) {
    if (current.hasChain(chain)) present.push_back(chain);
  }
  for (auto chain : present) body += "-F " + std::string(chain) + "\n";
  for (auto chain : present) body += "-X " + std::string(chain) + "\n";
  plan.chains = static_cast<int>(present.size());
  if (!body.empty()) plan.restore_input = "*nat\n" + body + "COMMIT\n";
  return plan;
}

std::string describeApply(const Config& config, Family family, const Plan& plan) {
  std::string out = std::string(familyName(family)) + ": " + std::to_string(plan.chains) +
                    " chains, " + std::to_string(plan.rules) + " rules (inbound -> " +
                    std::to_string(config.inbound_port) + ", outbound -> " +
                    std::to_string(config.outbound_port) + ", proxy uid " +
                    std::to_string(config.proxy_uid) + ")";
  if (plan.jumps_deleted > 0) {
    out += "; deleted " + std::to_string(plan.jumps_deleted) + " duplicate or stale jump" +
           (plan.jumps_deleted == 1 ? "" : "s");
  }
  return out;
}

std::string describeRemove(Family family, const Plan& plan) {
  std::string out = std::string(familyName(family)) + ": ";
  if (plan.restore_input.empty()) return out + "no Weft rules to remove";
  return out + "removed " + std::to_string(plan.chains) + " chain" + (plan.chains == 1 ? "" : "s") +
         " and " + std::to_string(plan.jumps_deleted) + " jump" +
         (plan.jumps_deleted == 1 ? "" : "s");
}

bool looksLikeMissingKernelSupport(std::string_view tool_stderr) {
  // Messages of iptables 1.8 (legacy and nft) when a table, family or extension is not in the
  // kernel: "Table does not exist (do you need to insmod?)", "Address family not supported by
  // protocol", "Protocol not supported", "Operation not supported", and nft's
  // "RULE_APPEND failed (No such file or directory)" for a missing match/target module.
  for (std::string_view needle :
       {"does not exist", "insmod", "not supported", "No such file or directory"}) {
    if (tool_stderr.find(needle) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace weft::iptables
