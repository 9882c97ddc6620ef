// Where the destination service learns endpoints (SPEC §4): the EndpointSource interface, and
// LocalRegistry, its local-mode implementation over a directory. The Kubernetes source (Services,
// EndpointSlices, Pods) is a second implementation of the same interface.
//
// Vocabulary: a *target* is what a proxy asks about (a service and port, or an IP and port); an
// *endpoint* is one address behind it with what the proxy needs to reach it. Everything here is
// gRPC-free: service.h turns it into the wire messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "weft/common/result.h"
#include "weft/common/thread.h"

namespace weft::control::destination {

// --- targets -------------------------------------------------------------------------------------

struct Target {
  enum class Kind { kService, kIp };
  Kind kind = Kind::kService;
  // kService
  std::string name;
  std::string ns;
  // kIp: the address in its canonical text form ("10.0.0.1", "fd00::1").
  std::string ip;
  uint16_t port = 0;

  // "web.default.svc.cluster.local:80", "10.0.0.1:80", "[fd00::1]:80".
  [[nodiscard]] std::string toString(std::string_view cluster_domain) const;
  bool operator==(const Target&) const = default;
};

// Parses what a proxy sends as GetDestination.path:
//   "<name>.<namespace>.svc.<cluster_domain>:<port>"  (the FQDN; a trailing dot is accepted)
//   "<name>.<namespace>:<port>"                        (short form)
//   "<IPv4>:<port>" | "[<IPv6>]:<port>"
// The port is required (1..65535); names are DNS labels. Fails with kind "invalid_target" and a
// context saying what is wrong. Input is untrusted.
Result<Target> parseTarget(std::string_view text, std::string_view cluster_domain);

// --- what a source answers -----------------------------------------------------------------------

struct Endpoint {
  std::string ip;  // canonical text form
  uint16_t port = 0;
  // Labels of the endpoint (values may be empty when unknown).
  std::string ns;
  std::string pod;  // the workload's name
  std::string service_account;
  std::string deployment;
  // Meshed: a Weft proxy runs beside it, presenting the identity of service_account.ns, and
  // accepts mesh traffic on inbound_port.
  bool meshed = false;
  uint16_t inbound_port = 4143;
  // The target port is opaque (no protocol detection; mesh traffic uses the transport header).
  bool opaque = false;

  // "10.0.0.1:80", "[fd00::1]:80": endpoints are identified by address.
  [[nodiscard]] std::string address() const;
  bool operator==(const Endpoint&) const = default;
};

// Service-level facts about a target.
struct ServiceInfo {
  std::string name;  // empty for an IP target
  std::string ns;
  std::vector<uint16_t> opaque_ports;  // sorted; see destination.proto ServiceInfo
  bool opaque = false;                 // the target port is opaque
  bool operator==(const ServiceInfo&) const = default;
};

// A target's state at one moment.
struct Resolution {
  bool exists = false;                 // the target names something known
  std::vector<Endpoint> endpoints;     // sorted by address(); empty when !exists
  ServiceInfo service;
};

// The change from one Resolution to the next, as pushed to subscribers.
struct EndpointDiff {
  bool exists = true;               // after the change
  bool existence_changed = false;   // the target appeared or disappeared
  std::vector<Endpoint> added;      // new addresses, or addresses whose attributes changed
  std::vector<Endpoint> removed;     // endpoints gone, as they were
  std::optional<ServiceInfo> service;  // set when it changed
  [[nodiscard]] bool empty() const {
    return !existence_changed && added.empty() && removed.empty() && !service;
  }
};

// The diff that turns `before` into `after` (added/removed sorted by address).
EndpointDiff diffResolutions(const Resolution& before, const Resolution& after);

// --- the interface ---------------------------------------------------------------------------------

using SubscriptionId = uint64_t;

// A source of endpoints. Implementations: LocalRegistry (below); the Kubernetes watcher later.
//
// Thread-safety: every method may be called from any thread, concurrently (gRPC handler threads
// subscribe and unsubscribe). Callbacks run on the source's own thread, one at a time per source,
// never concurrently with each other, and never after unsubscribe() of their subscription has
// returned. A callback must be quick and must not call subscribe() or unsubscribe() (it would
// deadlock); it typically queues the diff for the stream that owns it.
class EndpointSource {
 public:
  using Callback = std::function<void(const EndpointDiff&)>;

  struct Subscription {
    SubscriptionId id = 0;
    Resolution initial;  // the state the diffs that follow apply to
  };

  virtual ~EndpointSource() = default;

  // Resolves `target` now and, when it exists, registers `callback` for every later change.
  // Fails fast (kind "not_found", nothing registered) when the target is unknown: a proxy asking
  // about a name that does not exist is told at once, not left waiting. A subscription, once
  // made, survives its target disappearing (the callback gets exists=false) and coming back.
  virtual Result<Subscription> subscribe(const Target& target, Callback callback) = 0;

  // Removes the subscription; after it returns the callback is not running and will not run
  // again. Unknown ids are ignored (so it is idempotent).
  virtual void unsubscribe(SubscriptionId id) = 0;

  // Subscriptions currently registered (for metrics and tests).
  [[nodiscard]] virtual std::size_t subscriptions() const = 0;

  // True once the source has a complete view (the local registry: after its first read; the
  // Kubernetes watcher: after its informers synced). /ready follows it.
  [[nodiscard]] virtual bool synced() const = 0;
};
using EndpointSourcePtr = std::unique_ptr<EndpointSource>;

// --- local mode ------------------------------------------------------------------------------------

// The local-mode state, as `weft local` writes it (one JSON object per file; files should be
// replaced atomically, by rename, so that a reader never sees half a file):
//
//   <state>/registry/services/<namespace>/<name>.json
//     {"namespace": "default", "name": "web",
//      "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": null},
//                {"name": "db", "port": 5432, "protocol": "opaque"}],    // targetPort = port
//      "selector": {"app": "web"},                                       // {} selects nothing
//      "opaquePorts": [5432],                                            // service ports
//      "clusterIP": "10.90.0.1"}     // optional: the service's virtual IP; "<clusterIP>:<port>"
//                                    // targets resolve as the service (local mode, SPEC §4)
//   <state>/registry/workloads/<namespace>/<name>.json
//     {"namespace": "default", "name": "web-0", "labels": {"app": "web"},
//      "serviceAccount": "web", "deployment": "web", "ip": "10.0.0.5",
//      "meshed": true, "inboundPort": 4143}
//
// A service's endpoints are the workloads of its namespace whose labels contain every pair of
// its selector, at the port's targetPort. "namespace" and "name" default to the file's place and
// must agree with it when given. A file that does not parse is skipped (and logged once per
// content); the rest of the registry still serves.
struct RegistryState {
  struct Port {
    std::string name;
    uint16_t port = 0;
    uint16_t target_port = 0;
    bool opaque = false;
  };
  struct Service {
    std::string ns;
    std::string name;
    std::vector<Port> ports;
    std::map<std::string, std::string> selector;
    std::vector<uint16_t> opaque_ports;
    std::string cluster_ip;  // the service's virtual IP (canonical text), or empty
  };
  struct Workload {
    std::string ns;
    std::string name;
    std::map<std::string, std::string> labels;
    std::string service_account;
    std::string deployment;
    std::string ip;  // canonical text form
    bool meshed = false;
    uint16_t inbound_port = 4143;
  };
  std::map<std::pair<std::string, std::string>, Service> services;    // (ns, name)
  std::map<std::pair<std::string, std::string>, Workload> workloads;  // (ns, name)
  // Files skipped, with why ("services/default/web.json: ..."), sorted by path.
  std::vector<std::string> errors;
};

// Parses one service or workload file's content; `ns` and `name` are from its path.
Result<RegistryState::Service> parseServiceJson(std::string_view json, std::string_view ns,
                                                std::string_view name);
Result<RegistryState::Workload> parseWorkloadJson(std::string_view json, std::string_view ns,
                                                  std::string_view name);
// Reads <registry_dir>/services and <registry_dir>/workloads (either may be missing: empty).
RegistryState loadRegistry(const std::string& registry_dir);
// The answer for `target` in `state`.
Resolution resolve(const RegistryState& state, const Target& target);

class LocalRegistry final : public EndpointSource {
 public:
  struct Options {
    std::string state_dir;  // the registry is <state_dir>/registry
    std::chrono::milliseconds poll_interval{500};
  };

  // Reads the registry once (so subscribe() answers at once) but does not watch it until
  // start(). Never fails: a missing directory is an empty registry that may appear later.
  explicit LocalRegistry(Options options);
  ~LocalRegistry() override;
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;

  // Polls the directory every poll_interval on a thread of its own ("weft-dst-reg").
  void start();
  // Stops polling and joins the thread. Idempotent; also done by the destructor.
  void stop();

  // Re-reads the directory now and, if anything changed, pushes diffs to the subscribers (on the
  // calling thread). The polling thread calls it; tests call it directly instead of start().
  // Returns whether the content changed.
  bool poll();

  Result<Subscription> subscribe(const Target& target, Callback callback) override;
  void unsubscribe(SubscriptionId id) override;
  [[nodiscard]] std::size_t subscriptions() const override;
  [[nodiscard]] bool synced() const override { return true; }

  [[nodiscard]] const std::string& registryDir() const { return registry_dir_; }

 private:
  struct Subscriber {
    Target target;
    Callback callback;
    Resolution last;  // what this subscriber has been told
  };
  // The raw bytes of every file, by path relative to the registry dir: a change of any byte (or
  // of the set of files) is a change.
  using Contents = std::map<std::string, std::string>;
  Contents readContents() const;

  const Options options_;
  const std::string registry_dir_;

  // Held while polling and dispatching, and by subscribe/unsubscribe: this is what makes
  // "no callback after unsubscribe() returns" and "callbacks never run concurrently" true.
  // poll() reads the files outside it.
  mutable Mutex mu_;
  Contents contents_ WEFT_GUARDED_BY(mu_);
  std::shared_ptr<const RegistryState> state_ WEFT_GUARDED_BY(mu_);
  std::map<SubscriptionId, Subscriber> subscribers_ WEFT_GUARDED_BY(mu_);
  SubscriptionId next_id_ WEFT_GUARDED_BY(mu_) = 1;
  std::vector<std::string> logged_errors_ WEFT_GUARDED_BY(mu_);

  Mutex poll_mu_;  // one poll() at a time (the loop and a test could race otherwise)

  struct Loop;
  std::unique_ptr<Loop> loop_;
};

}  // namespace weft::control::destination
