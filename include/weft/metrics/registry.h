// Metrics in the Prometheus text exposition format, with Linkerd's names and labels (SPEC §2).
//
// Threading: a Family is shared by all workers. Looking up a series (get()) takes the family's
// mutex; the proxy does that once per connection or request, never per byte. The returned
// series is updated with relaxed atomics, lock-free, by whoever holds it. render() runs on the
// admin thread. A series nobody holds and nobody touched for the idle period is dropped at the
// next render (SPEC: series idle for 10 minutes are dropped).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include "weft/common/thread.h"
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::metrics {

// Ordered label pairs; the order given is the order rendered.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Escapes a label value per the exposition format (backslash, double quote, newline).
std::string escapeLabelValue(std::string_view v);
// "{a="1",b="2"}" or "" for no labels; extra is appended after labels (used for le=).
std::string renderLabels(const Labels& labels, std::string_view extra = {});

// Linkerd's response_latency_ms bucket bounds, in ms (SPEC §2).
std::span<const double> latencyBucketsMs();

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void add(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void sub(int64_t n = 1) { value_.fetch_sub(n, std::memory_order_relaxed); }
  void set(int64_t n) { value_.store(n, std::memory_order_relaxed); }
  [[nodiscard]] int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);
  // Records one observation, in the histogram's unit (ms for latency).
  void observe(double value);
  [[nodiscard]] uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Per-bucket (non-cumulative) counts; the last one is +Inf.
  [[nodiscard]] std::vector<uint64_t> bucketCounts() const;
  [[nodiscard]] double sum() const;
  [[nodiscard]] std::span<const double> bounds() const { return bounds_; }

 private:
  std::span<const double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micro_{0};  // sum * 1e6, so it can be an integer atomic
};

enum class Type { kCounter, kGauge, kHistogram };

class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type)
      : name_(std::move(name)), help_(std::move(help)), type_(type) {}
  virtual ~FamilyBase() = default;
  [[nodiscard]] const std::string& name() const { return name_; }
  virtual void render(std::string& out, std::chrono::steady_clock::time_point now,
                      std::chrono::steady_clock::duration idle) = 0;

 protected:
  void renderHeader(std::string& out) const;
  std::string name_;
  std::string help_;
  Type type_;
};

template <typename M>
class Family final : public FamilyBase {
 public:
  using FamilyBase::FamilyBase;
  Family(std::string name, std::string help, Type type, std::span<const double> bounds)
      : FamilyBase(std::move(name), std::move(help), type), bounds_(bounds) {}

  // The series for these labels, created on first use. Holding the pointer keeps the series
  // alive (and exported) regardless of idleness.
  std::shared_ptr<M> get(const Labels& labels, std::chrono::steady_clock::time_point now =
                                                   std::chrono::steady_clock::now()) {
    std::string key = renderLabels(labels);
    MutexLock lock(mu_);
    auto& entry = series_[key];
    if (!entry.metric) {
      if constexpr (std::is_same_v<M, Histogram>) {
        entry.metric = std::make_shared<Histogram>(bounds_);
      } else {
        entry.metric = std::make_shared<M>();
      }
      entry.labels = labels;
    }
    entry.touched = now;
    return entry.metric;
  }

  void render(std::string& out, std::chrono::steady_clock::time_point now,
              std::chrono::steady_clock::duration idle) override;

  [[nodiscard]] std::size_t sizeForTest() {
    MutexLock lock(mu_);
    return series_.size();
  }

 private:
  struct Entry {
    std::shared_ptr<M> metric;
    Labels labels;
    std::chrono::steady_clock::time_point touched;
  };
  std::span<const double> bounds_;
  Mutex mu_;  // not for the metric values, which are atomics
  std::map<std::string, Entry> series_ WEFT_GUARDED_BY(mu_);
};

class Registry {
 public:
  explicit Registry(std::chrono::steady_clock::duration idle = std::chrono::minutes(10))
      : idle_(idle) {}

  Family<Counter>& counter(std::string name, std::string help);
  Family<Gauge>& gauge(std::string name, std::string help);
  Family<Histogram>& histogram(std::string name, std::string help, std::span<const double> bounds);

  // A collector appends already-rendered families (with HELP/TYPE) at render time; used for
  // values read on demand, such as process_* from /proc.
  void addCollector(std::function<void(std::string&)> collector);

  // The whole exposition, in registration order. Drops idle, unheld series as a side effect.
  std::string render(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

 private:
  std::chrono::steady_clock::duration idle_;
  Mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_ WEFT_GUARDED_BY(mu_);
  std::vector<std::function<void(std::string&)>> collectors_ WEFT_GUARDED_BY(mu_);
};

// process_* metrics of the calling process, read from /proc (cpu, memory, fds, start time).
void renderProcessMetrics(std::string& out);

}  // namespace weft::metrics
