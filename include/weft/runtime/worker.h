// Workers: one event loop per thread. A connection is accepted, served and closed by one worker
// and never migrates, so connection state needs no locks (docs/dev/threading.md).
#pragma once

#include <asio/io_context.hpp>
#include <asio/executor_work_guard.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "weft/common/thread.h"

namespace weft::runtime {

class Worker {
 public:
  explicit Worker(std::string name);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  asio::io_context& context() { return context_; }
  // Starts the loop thread. Handlers may be posted before start().
  void start();
  // Lets run() return once no work is left (the guard is dropped); join happens in ~Worker.
  void release();
  // Stops the loop now and joins the thread. Pending handlers stay queued (and are destroyed
  // with the context), so objects bound to the context can be released safely afterwards.
  void stopAndJoin();

 private:
  std::string name_;
  // One thread runs it, and only that thread touches its sockets (other threads only post to
  // it): Asio may skip the per-socket locks. The scheduler keeps its lock for those posts.
  asio::io_context context_{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
  std::unique_ptr<Thread> thread_;
};

}  // namespace weft::runtime
