// TimeSource: the only way data-path code reads the clock, so tests can drive time.
#pragma once

#include <chrono>

namespace weft::runtime {

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  // Monotonic time, for timeouts and idle tracking.
  [[nodiscard]] virtual std::chrono::steady_clock::time_point monotonic() const = 0;
  // Wall-clock time, for values a human or Prometheus reads (start time, cert expiry).
  [[nodiscard]] virtual std::chrono::system_clock::time_point wall() const = 0;
};

class RealTimeSource final : public TimeSource {
 public:
  [[nodiscard]] std::chrono::steady_clock::time_point monotonic() const override {
    return std::chrono::steady_clock::now();
  }
  [[nodiscard]] std::chrono::system_clock::time_point wall() const override {
    return std::chrono::system_clock::now();
  }
  static const RealTimeSource& instance() {
    static const RealTimeSource source;
    return source;
  }
};

}  // namespace weft::runtime
