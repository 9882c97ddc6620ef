#include "weft/metrics/registry.h"

#include <algorithm>
#include <array>
#include <cstdio>

namespace weft::metrics {

std::string escapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string renderLabels(const Labels& labels, std::string_view extra) {
  if (labels.empty() && extra.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    out += escapeLabelValue(v);
    out += '"';
  }
  if (!extra.empty()) {
    if (!first) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

std::span<const double> latencyBucketsMs() {
  static constexpr std::array<double, 25> kBounds = {
      1,    2,    3,    4,    5,    10,    20,    30,    40,    50,    100,   200,  300,
      400,  500,  1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000};
  return kBounds;
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double value) {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  buckets_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micro_.fetch_add(static_cast<uint64_t>(std::max(0.0, value) * 1e6), std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::bucketCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

double Histogram::sum() const {
  return static_cast<double>(sum_micro_.load(std::memory_order_relaxed)) / 1e6;
}

void FamilyBase::renderHeader(std::string& out) const {
  out += "# HELP " + name_ + " " + help_ + "\n";
  out += "# TYPE " + name_ + " ";
  out += type_ == Type::kCounter ? "counter" : type_ == Type::kGauge ? "gauge" : "histogram";
  out += '\n';
}

namespace {

std::string formatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

void renderValue(std::string& out, const std::string& name, const Labels& labels, const Counter& c) {
  out += name + renderLabels(labels) + " " + std::to_string(c.value()) + "\n";
}
void renderValue(std::string& out, const std::string& name, const Labels& labels, const Gauge& g) {
  out += name + renderLabels(labels) + " " + std::to_string(g.value()) + "\n";
}
void renderValue(std::string& out, const std::string& name, const Labels& labels,
                 const Histogram& h) {
  auto counts = h.bucketCounts();
  uint64_t cumulative = 0;
  auto bounds = h.bounds();
  for (std::size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    std::string le = i < bounds.size() ? formatDouble(bounds[i]) : "+Inf";
    out += name + "_bucket" + renderLabels(labels, "le=\"" + le + "\"") + " " +
           std::to_string(cumulative) + "\n";
  }
  // count is derived from the buckets so _count always equals the +Inf bucket, even while
  // observe() runs concurrently.
  out += name + "_sum" + renderLabels(labels) + " " + formatDouble(h.sum()) + "\n";
  out += name + "_count" + renderLabels(labels) + " " + std::to_string(cumulative) + "\n";
}

}  // namespace

template <typename M>
void Family<M>::render(std::string& out, std::chrono::steady_clock::time_point now,
                       std::chrono::steady_clock::duration idle) {
  MutexLock lock(mu_);
  for (auto it = series_.begin(); it != series_.end();) {
    // use_count() == 1: only the registry holds it, so no connection can touch it any more.
    if (it->second.metric.use_count() == 1 && now - it->second.touched > idle) {
      it = series_.erase(it);
    } else {
      ++it;
    }
  }
  if (series_.empty()) return;
  renderHeader(out);
  for (const auto& [key, entry] : series_) renderValue(out, name_, entry.labels, *entry.metric);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Family<Counter>& Registry::counter(std::string name, std::string help) {
  MutexLock lock(mu_);
  auto f = std::make_unique<Family<Counter>>(std::move(name), std::move(help), Type::kCounter);
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Gauge>& Registry::gauge(std::string name, std::string help) {
  MutexLock lock(mu_);
  auto f = std::make_unique<Family<Gauge>>(std::move(name), std::move(help), Type::kGauge);
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Histogram>& Registry::histogram(std::string name, std::string help,
                                       std::span<const double> bounds) {
  MutexLock lock(mu_);
  auto f = std::make_unique<Family<Histogram>>(std::move(name), std::move(help), Type::kHistogram,
                                               bounds);
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

void Registry::addCollector(std::function<void(std::string&)> collector) {
  MutexLock lock(mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::render(std::chrono::steady_clock::time_point now) {
  std::string out;
  out.reserve(16 * 1024);
  MutexLock lock(mu_);
  for (auto& f : families_) f->render(out, now, idle_);
  for (auto& c : collectors_) c(out);
  return out;
}

}  // namespace weft::metrics
