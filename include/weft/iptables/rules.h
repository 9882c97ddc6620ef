// The nat rules that send a pod's TCP traffic through its sidecar proxy (SPEC §2 "Interception").
//
// Everything here is pure: a Config and the current `*-save -t nat` text go in, the text to feed
// `*-restore --noflush` comes out. Nothing runs a program or reads the system, so the rules are
// tested without root (test/lib/iptables/rules_test.cc) and shared by weft-init, weft-cni and local
// mode. Running the tools is weft/iptables/exec.h; the sequencing is init/main.cc.
//
// The installed state, per family (same design as linkerd2-proxy-init):
//   nat PREROUTING: -A PREROUTING -p tcp -j WEFT_INBOUND
//   WEFT_INBOUND:   RETURN for skipped inbound ports (multiport), then REDIRECT to the inbound port
//   nat OUTPUT:     -A OUTPUT -p tcp -j WEFT_OUTBOUND
//   WEFT_OUTBOUND:  RETURN for the proxy's UID, for output on lo, for skipped outbound ports
//                   (multiport) and for each skipped subnet of this family; then REDIRECT to the
//                   outbound port.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/result.h"
#include "weft/config/values.h"

namespace weft::iptables {

enum class Family { kIpv4, kIpv6 };
// "ipv4" / "ipv6": how messages name a family.
std::string_view familyName(Family family);

// Which iptables binaries to drive. nft (the default, Debian 12's own) and legacy (x_tables)
// keep separate rule sets in the kernel; use the one the node's kube-proxy/CNI uses.
enum class Mode { kNft, kLegacy };

struct Tools {
  std::string save;     // e.g. "iptables-nft-save"
  std::string restore;  // e.g. "iptables-nft-restore"
};
Tools toolsFor(Mode mode, Family family);

inline constexpr std::string_view kInboundChain = "WEFT_INBOUND";
inline constexpr std::string_view kOutboundChain = "WEFT_OUTBOUND";
// The jumps into our chains, exactly as *-save prints them, so a saved rule can be compared with
// them as text.
inline constexpr std::string_view kInboundJump = "-A PREROUTING -p tcp -j WEFT_INBOUND";
inline constexpr std::string_view kOutboundJump = "-A OUTPUT -p tcp -j WEFT_OUTBOUND";

// The proxy's control (4190) and admin (4191) ports: inbound traffic to them is never redirected,
// whatever --skip-inbound-ports says, so probes and tap keep reaching the proxy itself.
inline constexpr std::string_view kProxyOwnInboundPorts = "4190,4191";

// iptables' multiport match takes at most this many ports per rule; a range counts as two.
inline constexpr int kMultiportMaxPorts = 15;

struct Config {
  uint32_t proxy_uid = 2102;
  uint16_t inbound_port = 4143;
  uint16_t outbound_port = 4140;
  // As the user gave them; kProxyOwnInboundPorts is added by effectiveSkipInboundPorts().
  config::PortSet skip_inbound_ports;
  config::PortSet skip_outbound_ports;
  // Both families mixed; each family's rules take only its own.
  std::vector<config::Subnet> skip_subnets;
};

// kProxyOwnInboundPorts plus config.skip_inbound_ports.
config::PortSet effectiveSkipInboundPorts(const Config& config);

// The `--dports` arguments covering `ports`, each within kMultiportMaxPorts, ranges as "a:b".
// Empty set: no lists.
std::vector<std::string> multiportLists(const config::PortSet& ports);

// The rules of WEFT_INBOUND then WEFT_OUTBOUND for `family`, as "-A CHAIN ..." lines in order.
std::vector<std::string> chainRules(const Config& config, Family family);

// The nat table as read from `*-save -t nat` output.
struct NatTable {
  std::vector<std::string> chains;  // every declared chain, built-in ones included
  std::vector<std::string> rules;   // "-A CHAIN ..." lines as saved, without counters
  // "# Warning: ..." lines the save tool printed (e.g. legacy tables present next to nft ones).
  std::vector<std::string> warnings;

  [[nodiscard]] bool hasChain(std::string_view name) const;
};
// Fails (kind "bad_save_output") when the text has no nat table: the tool printed something
// this code does not understand, so it must not guess what to delete.
Result<NatTable> parseNatSave(std::string_view save_output);

// The table as it is right after planApply() ran on a table with no Weft rules: the four
// built-in nat chains plus ours, the jumps and chainRules(). Used by --dry-run --remove and tests.
NatTable appliedTable(const Config& config, Family family);

// What to feed `*-restore --noflush` to go from a table to the wanted state.
struct Plan {
  std::string restore_input;  // "*nat ... COMMIT\n"; empty when there is nothing to change
  int chains = 0;             // apply: chains written; remove: chains deleted
  int rules = 0;              // apply: rules in our chains plus the two jumps; remove: 0
  int jumps_deleted = 0;      // jumps into our chains that were deleted
};

// Idempotent install. Declaring `:WEFT_INBOUND - [0:0]` under --noflush creates or flushes the
// chain, so our chains are rewritten whole every time. The two jumps are added only when `current`
// lacks them; any other rule jumping (-j/-g) into our chains from another chain, and any
// duplicate jump, is deleted, so the table ends with exactly one of each. Rules of other chains
// are never touched.
Plan planApply(const Config& config, Family family, const NatTable& current);

// Deletes every jump into our chains, then flushes and deletes whichever of our chains exist.
// Empty restore_input when there is nothing of ours in `current`.
Plan planRemove(const NatTable& current);

// One line for the operator, without the "weft-init: " prefix, e.g.
// "ipv4: 2 chains, 7 rules (inbound -> 4143, outbound -> 4140, proxy uid 2102)".
std::string describeApply(const Config& config, Family family, const Plan& plan);
std::string describeRemove(Family family, const Plan& plan);

// True when a save/restore tool's stderr says the kernel lacks the table or the protocol (no
// ip6table_nat / nf_nat for IPv6, or IPv6 disabled), as opposed to a bad rule or a permission
// error.
bool looksLikeMissingKernelSupport(std::string_view tool_stderr);

}  // namespace weft::iptables
