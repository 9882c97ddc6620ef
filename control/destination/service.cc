#include "control/destination/service.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <exception>
#include <mutex>

#include "weft/common/thread.h"
#include "weft/v1/destination.grpc.pb.h"

namespace weft::control::destination {
namespace {

namespace v1 = ::weft::destination::v1;

// Linkerd's default endpoint weight.
constexpr uint32_t kDefaultWeight = 10000;
// A GetDestination is a name and a port; anything far larger is refused by gRPC before Get.
constexpr int kMaxRequestBytes = 16 * 1024;

void setIp(const std::string& ip, v1::IPAddress* out) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, ip.c_str(), buf) == 1) {
    out->set_ipv4((uint32_t{buf[0]} << 24) | (uint32_t{buf[1]} << 16) | (uint32_t{buf[2]} << 8) |
                  uint32_t{buf[3]});
  } else if (inet_pton(AF_INET6, ip.c_str(), buf) == 1) {
    out->set_ipv6(std::string(reinterpret_cast<const char*>(buf), 16));
  }
  // The source hands out canonical addresses only (parsed with inet_pton), so there is no else.
}

void setAddr(const std::string& ip, uint16_t port, v1::TcpAddress* out) {
  setIp(ip, out->mutable_ip());
  out->set_port(port);
}

void setService(const ServiceInfo& s, const ServiceOptions& options, v1::ServiceInfo* out) {
  if (!s.name.empty()) out->set_fqdn(s.name + "." + s.ns + ".svc." + options.cluster_domain);
  for (uint16_t p : s.opaque_ports) out->add_opaque_ports(p);
  out->set_opaque(s.opaque);
}

void setEndpoint(const Endpoint& e, bool ip_target, const ServiceOptions& options,
                 v1::WeightedAddr* out) {
  setAddr(e.ip, e.port, out->mutable_addr());
  out->set_weight(kDefaultWeight);
  auto& labels = *out->mutable_metric_labels();
  if (ip_target) labels["dst_namespace"] = e.ns;
  labels["dst_pod"] = e.pod;
  if (!e.service_account.empty()) labels["dst_serviceaccount"] = e.service_account;
  if (!e.deployment.empty()) labels["dst_deployment"] = e.deployment;
  if (!e.meshed) return;  // plaintext, no hint: the client proxy talks to the app directly
  // Kubernetes gives a pod without a service account the "default" one.
  const std::string& sa = e.service_account.empty() ? std::string("default") : e.service_account;
  out->mutable_tls_identity()->mutable_dns_like_identity()->set_name(
      sa + "." + e.ns + ".serviceaccount.identity." + options.control_plane_ns + "." +
      options.trust_domain);
  auto* hint = out->mutable_protocol_hint();
  if (e.opaque) {
    hint->mutable_opaque();
    hint->mutable_opaque_transport()->set_inbound_port(e.inbound_port);
  } else {
    hint->mutable_h2();
  }
}

}  // namespace

// --- metrics ------------------------------------------------------------------------------------

DestinationMetrics::DestinationMetrics(metrics::Registry& registry) {
  auto& lookups = registry.counter(
      "destination_lookups_total",
      "Get streams requested, by result (found, not_found, invalid_target)");
  for (std::string_view r : kLookupResults) {
    lookups_.emplace_back(std::string(r), lookups.get({{"result", std::string(r)}}));
  }
  streams_ = registry.gauge("destination_streams", "Get streams open now").get({});
  updates_ = registry
                 .counter("destination_updates_total",
                          "Update messages sent on Get streams (initial sets and diffs)")
                 .get({});
}

void DestinationMetrics::lookup(std::string_view result) {
  for (auto& [name, counter] : lookups_) {
    if (name == result) {
      counter->inc();
      return;
    }
  }
}

uint64_t DestinationMetrics::lookupsForTest(std::string_view result) const {
  for (const auto& [name, counter] : lookups_) {
    if (name == result) return counter->value();
  }
  return 0;
}

// --- UpdateBuilder ------------------------------------------------------------------------------

void UpdateBuilder::addLabels(v1::Update& u) const {
  if (ip_target_) return;  // an IP target has no service; each address carries its namespace
  auto& labels = *u.mutable_add()->mutable_metric_labels();
  labels["dst_namespace"] = ns_;
  labels["dst_service"] = name_;
}

std::vector<v1::Update> UpdateBuilder::initial(const Resolution& r) {
  ip_target_ = r.service.name.empty();
  ns_ = r.service.ns;
  name_ = r.service.name;
  held_.clear();
  std::vector<v1::Update> out(1);
  v1::Update& u = out.front();
  setService(r.service, options_, u.mutable_service());
  if (r.endpoints.empty()) {
    u.mutable_no_endpoints()->set_exists(r.exists);
    return out;
  }
  addLabels(u);
  for (const auto& e : r.endpoints) {
    setEndpoint(e, ip_target_, options_, u.mutable_add()->add_addrs());
    held_.insert(e.address());
  }
  return out;
}

std::vector<v1::Update> UpdateBuilder::diff(const EndpointDiff& d) {
  std::vector<v1::Update> out;
  if (!d.exists) {
    // The target went away: the client drops everything; the stream stays, in case it returns.
    held_.clear();
    out.emplace_back().mutable_no_endpoints()->set_exists(false);
  } else {
    std::vector<const Endpoint*> removed;
    for (const auto& e : d.removed) {
      if (held_.erase(e.address()) > 0) removed.push_back(&e);
    }
    for (const auto& e : d.added) held_.insert(e.address());
    if (held_.empty()) {
      // Linkerd's proxies treat no_endpoints as "clear the set"; one message says it all.
      if (!removed.empty() || d.existence_changed) {
        out.emplace_back().mutable_no_endpoints()->set_exists(true);
      }
    } else {
      if (!removed.empty()) {
        auto* remove = out.emplace_back().mutable_remove();
        for (const Endpoint* e : removed) setAddr(e->ip, e->port, remove->add_addrs());
      }
      if (!d.added.empty()) {
        v1::Update& u = out.emplace_back();
        addLabels(u);
        for (const auto& e : d.added) {
          setEndpoint(e, ip_target_, options_, u.mutable_add()->add_addrs());
        }
      }
    }
  }
  if (d.service) {
    // An update may carry only the service info (e.g. a port became opaque).
    if (out.empty()) out.emplace_back();
    setService(*d.service, options_, out.front().mutable_service());
  }
  return out;
}

// --- the gRPC server ----------------------------------------------------------------------------

namespace {

// What the source's thread hands one stream: the diffs since the stream last looked.
// Diffs are applied in order, so queueing them is exact; a stream whose client reads slowly
// builds a queue, bounded by how often the registry changes (TODO(weft): coalesce into the
// latest Resolution when the Kubernetes source makes changes frequent).
struct StreamQueue {
  Mutex mu;
  std::condition_variable_any cv;
  std::vector<EndpointDiff> pending;  // guarded by mu
};

class DestinationGrpcService final : public v1::Destination::Service {
 public:
  DestinationGrpcService(const ServiceOptions& options, EndpointSource& source,
                         DestinationMetrics& metrics, const std::atomic<bool>& stopping)
      : options_(options), source_(source), metrics_(metrics), stopping_(stopping) {}

  grpc::Status Get(grpc::ServerContext* context, const v1::GetDestination* request,
                   grpc::ServerWriter<v1::Update>* writer) override {
    // Errors are values below; this only stops a bad_alloc or a library exception from unwinding
    // into gRPC.
    try {
      return stream(context, request, writer);
    } catch (const std::exception& e) {
      spdlog::error("get: unexpected exception: {}", e.what());
    } catch (...) {
      spdlog::error("get: unexpected exception");
    }
    return grpc::Status(grpc::StatusCode::INTERNAL, "internal error; see the log");
  }

 private:
  grpc::Status stream(grpc::ServerContext* context, const v1::GetDestination* request,
                      grpc::ServerWriter<v1::Update>* writer) {
    auto target = parseTarget(request->path(), options_.cluster_domain);
    if (!target) {
      metrics_.lookup("invalid_target");
      spdlog::debug("get {} from {}: {}", target.error().context, context->peer(),
                    target.error().message());
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, target.error().context);
    }
    const std::string name = target->toString(options_.cluster_domain);

    auto queue = std::make_shared<StreamQueue>();
    auto sub = source_.subscribe(*target, [queue](const EndpointDiff& d) {
      {
        MutexLock lock(queue->mu);
        queue->pending.push_back(d);
      }
      queue->cv.notify_one();
    });
    if (!sub) {
      // Fail fast (the proto's contract): say "unknown" once, then end the stream.
      metrics_.lookup("not_found");
      spdlog::debug("get {} from {}: {}", name, context->peer(), sub.error().message());
      v1::Update u;
      u.mutable_no_endpoints()->set_exists(false);
      writer->Write(u);
      metrics_.updateSent();
      return grpc::Status(grpc::StatusCode::NOT_FOUND, sub.error().context);
    }
    metrics_.lookup("found");
    metrics_.streamOpened();
    spdlog::debug("get {} from {}: {} endpoints", name, context->peer(),
                  sub->initial.endpoints.size());
    // Whatever ends the stream (cancel, write failure, shutdown), the subscription goes first,
    // so the source never calls into a queue nobody reads.
    struct Release {
      EndpointSource& source;
      SubscriptionId id;
      DestinationMetrics& metrics;
      ~Release() {
        source.unsubscribe(id);
        metrics.streamClosed();
      }
    } release{source_, sub->id, metrics_};

    UpdateBuilder builder(options_);
    if (!write(writer, builder.initial(sub->initial))) return grpc::Status::CANCELLED;
    for (;;) {
      std::vector<EndpointDiff> diffs;
      {
        std::unique_lock<Mutex> lock(queue->mu);
        queue->cv.wait_for(lock, options_.cancel_check,
                           [&] { return !queue->pending.empty(); });
        diffs.swap(queue->pending);
      }
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
      if (stopping_.load()) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the destination service is stopping");
      }
      for (const auto& d : diffs) {
        if (!write(writer, builder.diff(d))) return grpc::Status::CANCELLED;
      }
    }
  }

  bool write(grpc::ServerWriter<v1::Update>* writer, const std::vector<v1::Update>& updates) {
    for (const auto& u : updates) {
      if (!writer->Write(u)) return false;  // the client went away
      metrics_.updateSent();
    }
    return true;
  }

  const ServiceOptions& options_;
  EndpointSource& source_;
  DestinationMetrics& metrics_;
  const std::atomic<bool>& stopping_;
};

}  // namespace

// --- DestinationController ----------------------------------------------------------------------

struct DestinationController::State {
  State(Options opts, EndpointSource& src, metrics::Registry& registry)
      : options(std::move(opts)),
        source(src),
        metrics(registry),
        service(options.service, source, metrics, stopping) {}

  const Options options;
  EndpointSource& source;
  DestinationMetrics metrics;
  std::atomic<bool> stopping{false};
  DestinationGrpcService service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::atomic<bool> stopped{false};
};

Result<std::unique_ptr<DestinationController>> DestinationController::start(
    Options options, EndpointSource& source, metrics::Registry& registry) {
  auto state = std::make_unique<State>(std::move(options), source, registry);
  State& s = *state;
  grpc::ServerBuilder builder;
  // Plaintext until the proxies' client exists; see service.h and control/README.md.
  builder.AddListeningPort(s.options.listen, grpc::InsecureServerCredentials(), &s.port);
  builder.RegisterService(&s.service);
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  // gRPC sets SO_REUSEPORT by default, which would let a second destination service bind the
  // same port and silently take half the streams; a busy port must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  s.server = builder.BuildAndStart();
  if (!s.server || s.port == 0) {
    return Error::internal("listen", "cannot serve gRPC on " + s.options.listen +
                                         " (address in use, or not an address of this host)");
  }
  return std::unique_ptr<DestinationController>(new DestinationController(std::move(state)));
}

DestinationController::DestinationController(std::unique_ptr<State> state)
    : state_(std::move(state)) {}

DestinationController::~DestinationController() {
  if (state_) shutdown(std::chrono::seconds(0));
}

int DestinationController::port() const { return state_->port; }

bool DestinationController::ready() const {
  return !state_->stopped.load() && state_->source.synced();
}

void DestinationController::shutdown(std::chrono::milliseconds grace) {
  if (state_->stopped.exchange(true)) return;
  // Streams never end on their own: tell them to, then give gRPC the grace to flush.
  state_->stopping = true;
  if (state_->server) {
    state_->server->Shutdown(std::chrono::system_clock::now() + grace);
    state_->server->Wait();
  }
  state_->server.reset();
}

DestinationMetrics& DestinationController::metricsForTest() { return state_->metrics; }

}  // namespace weft::control::destination
