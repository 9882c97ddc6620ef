// An admin HTTP server: /metrics, /live, /ready, POST /shutdown and
// GET|PUT /proxy-log-level (the last two from loopback only). It runs on its own thread with its
// own event loop, so a slow scraper can never stall a data-path worker. Used by weft-proxy
// (:4191) and by every weft-controller component.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

#include "weft/common/result.h"
#include "weft/metrics/registry.h"

namespace weft::admin {

struct AdminHooks {
  std::function<bool()> ready;          // /ready: 200 when true, 503 otherwise
  std::function<void()> shutdown;       // POST /shutdown
  std::function<std::string()> log_level;
  // PUT /proxy-log-level: an Error (shown to the caller with 400) for an unknown level.
  std::function<Status(const std::string&)> set_log_level;
};

// Fills log_level / set_log_level with spdlog's global level, which every Weft binary logs
// through: GET returns it, PUT accepts trace, debug, info, warn, error or off.
void useSpdlogLevel(AdminHooks& hooks);

class AdminServer {
 public:
  AdminServer(asio::io_context& ctx, metrics::Registry& registry, AdminHooks hooks);
  ~AdminServer();
  Status listen(const asio::ip::tcp::endpoint& ep);
  void start();
  void stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace weft::admin
