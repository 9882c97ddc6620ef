// Reading what `weft local` runs (docs/local.md): the state directory and run/local.json, for
// `weft viz` and `weft check`. Read-only; `weft local` owns the writing.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "weft/common/result.h"

namespace weft::cli::viz {

// `flag` when set, else $WEFT_STATE_DIR, else /var/lib/weft as root and ~/.weft otherwise.
std::filesystem::path resolveStateDir(const std::string& flag);

struct LocalComponent {
  std::string address;  // the gRPC service, "IP:PORT"
  std::string admin;    // its admin server (/ready, /metrics), "IP:PORT"; may be empty
  int pid = 0;
};

struct LocalPod {
  std::string ns;
  std::string name;
  std::string deployment;
  std::string service_account;
  std::string ip;
  std::string admin;     // the proxy's admin address, "IP:PORT"
  std::string identity;  // empty when the pod runs without identity
  // The proxy's inbound (mTLS) address: the pod's "inbound" field when present (loopback mode
  // gives each proxy explicit ports), else "<ip>:4143".
  std::string inbound;
  int proxy_pid = 0;
};

struct LocalState {
  std::filesystem::path dir;
  bool root = false;
  LocalComponent identity;
  LocalComponent destination;
  LocalComponent prometheus;
  std::string trust_domain = "cluster.local";
  std::string control_plane_namespace = "weft";
  std::vector<LocalPod> pods;
};

// Parses <dir>/run/local.json. Error kinds: "not_found" (no such file: local mode is not up),
// "unreadable", "malformed" (with the JSON error or the missing field).
Result<LocalState> readLocalState(const std::filesystem::path& dir);

}  // namespace weft::cli::viz
