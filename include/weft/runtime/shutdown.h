// How every Weft binary learns it should stop: SIGTERM or SIGINT, taken synchronously by the
// main thread, or a request from the admin server's POST /shutdown.
#pragma once

#include <signal.h>

#include <atomic>
#include <chrono>
#include <string>

namespace weft::runtime {

class ShutdownSignal {
 public:
  // Blocks SIGTERM and SIGINT in the calling thread, so threads started afterwards inherit the
  // mask and only wait() sees them, and ignores SIGPIPE. Construct in main() before any thread.
  ShutdownSignal();

  // Thread-safe; what POST /shutdown calls.
  void request() { requested_ = true; }

  // Blocks until a signal or request(); returns what it was, for the log ("SIGTERM", "SIGINT"
  // or "a request on the admin port").
  std::string wait();

  // Waits up to `at_most` for a further signal (a second Ctrl-C while draining): true if one came.
  bool anotherSignalWithin(std::chrono::milliseconds at_most);

 private:
  sigset_t signals_{};
  std::atomic<bool> requested_{false};
};

}  // namespace weft::runtime
