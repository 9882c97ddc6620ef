#include "weft/runtime/shutdown.h"

#include <pthread.h>

namespace weft::runtime {

ShutdownSignal::ShutdownSignal() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

std::string ShutdownSignal::wait() {
  // A short timeout, so a request() from another thread is noticed within 100 ms.
  const timespec tick{0, 100'000'000};
  for (;;) {
    int sig = sigtimedwait(&signals_, nullptr, &tick);
    if (sig > 0) return sig == SIGTERM ? "SIGTERM" : "SIGINT";
    if (requested_) return "a request on the admin port";
  }
}

bool ShutdownSignal::anotherSignalWithin(std::chrono::milliseconds at_most) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at_most).count();
  const timespec wait_for{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  return sigtimedwait(&signals_, nullptr, &wait_for) > 0;
}

}  // namespace weft::runtime
