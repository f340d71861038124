// Prometheus metrics: counters, gauges and histograms, with label vectors,
// gathered in a Registry and written in the Prometheus text exposition
// format 0.0.4 (what etcd's /metrics serves, and what Prometheus scrapes).
//
// No Prometheus C++ client is packaged in Debian, so this is our own small
// one, modelled on client_golang: a metric family has a name, a help text,
// a type and fixed label names; each child (one set of label values) holds
// its value in atomics, so that hot paths (a WAL fsync, a gRPC call) pay a
// few relaxed atomic adds and nothing else. Keep the reference a
// WithLabelValues() call returns and reuse it: the lookup takes a lock.
//
// Values that already live elsewhere (the store's size, whether there is a
// leader) are read at scrape time through a callback instead of being
// copied on every change (AddGaugeFunc / AddCounterFunc / AddCollector).
//
// Usage:
//   static auto& fsyncs = metrics::Registry::Default().AddHistogram(
//       "etcd_disk_wal_fsync_duration_seconds", "The latency ...",
//       metrics::ExponentialBuckets(0.001, 2, 14));
//   fsyncs.Observe(seconds);
//   std::string text = metrics::Registry::Default().Expose();
//
// Thread safety: everything here is thread-safe. Families and children are
// never freed while the registry lives, so references stay valid.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace keel::metrics {

enum class Type { kCounter, kGauge, kHistogram };

// A monotonically increasing value (resets only when the process restarts).
class Counter {
 public:
  void Inc(double v = 1) {
    if (v > 0) value_.fetch_add(v, std::memory_order_relaxed);
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Inc(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  void Dec(double v = 1) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with fixed upper bounds (cumulative on
// exposition, as Prometheus expects), plus their count and sum.
class Histogram {
 public:
  // bounds: strictly increasing upper bounds; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot Take() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  // Per bucket (not cumulative); the last is (last bound, +Inf).
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// start, start*factor, ... (count values), as client_golang's.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// client_golang's DefBuckets (.005 ... 10 seconds).
std::vector<double> DefaultBuckets();

// One metric family: children by label values.
template <typename T>
class Family {
 public:
  // The child for these label values (one per label name, in order),
  // created on first use.
  T& WithLabelValues(const std::vector<std::string>& values);
  T& WithLabelValues(std::initializer_list<std::string_view> values) {
    return WithLabelValues(
        std::vector<std::string>(values.begin(), values.end()));
  }
  // Removes a child (e.g. a peer that left the cluster) from exposition.
  void Remove(const std::vector<std::string>& values);

 private:
  friend class Registry;
  Family(std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make)
      : label_names_(std::move(label_names)), make_(std::move(make)) {}

  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable std::mutex mu_;
  // Ordered: exposition lists children sorted by label values.
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
  // Removed children stay allocated: a thread may still hold a reference.
  std::vector<std::unique_ptr<T>> removed_;
};

// A sample produced by a collector callback at scrape time.
struct Sample {
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry that /metrics serves.
  static Registry& Default();

  // Registering a name twice returns the family registered first (so that
  // two members in one test process share it); the type must match.
  Counter& AddCounter(const std::string& name, const std::string& help);
  Gauge& AddGauge(const std::string& name, const std::string& help);
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds);
  Family<Counter>& AddCounterVec(const std::string& name,
                                 const std::string& help,
                                 std::vector<std::string> label_names);
  Family<Gauge>& AddGaugeVec(const std::string& name, const std::string& help,
                             std::vector<std::string> label_names);
  Family<Histogram>& AddHistogramVec(const std::string& name,
                                     const std::string& help,
                                     std::vector<std::string> label_names,
                                     std::vector<double> bounds);

  // Values read at scrape time. A later registration under the same name
  // replaces the callback (the newest member in a process wins). The
  // callback must be cheap and must not call back into the registry.
  void AddGaugeFunc(const std::string& name, const std::string& help,
                    std::function<double()> fn);
  void AddCounterFunc(const std::string& name, const std::string& help,
                      std::function<double()> fn);
  // Any number of labelled samples of one family, read at scrape time.
  void AddCollector(const std::string& name, const std::string& help, Type type,
                    std::function<std::vector<Sample>()> fn);
  // Drops a callback family (its owner is going away).
  void RemoveFunc(const std::string& name);

  // Every family, sorted by name, in the text format 0.0.4.
  std::string Expose() const;

  // The content type to serve Expose() with.
  static constexpr const char* kContentType =
      "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Entry {
    std::string help;
    Type type = Type::kCounter;
    std::vector<std::string> label_names;
    std::shared_ptr<void> family;  // Family<Counter|Gauge|Histogram>
    std::function<std::vector<Sample>()> collect;  // callback families
  };
  template <typename T>
  Family<T>& AddFamily(const std::string& name, const std::string& help,
                       Type type, std::vector<std::string> label_names,
                       std::function<std::unique_ptr<T>()> make);

  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

// Registers process_* metrics (CPU, memory, file descriptors, start time)
// with the registry, read from /proc at scrape time. Idempotent.
void RegisterProcessMetrics(Registry& r);

// Formats a value as Prometheus does (shortest round-trip, +Inf, -Inf, NaN).
std::string FormatValue(double v);

// ---- implementation of the templates ----

template <typename T>
T& Family<T>::WithLabelValues(const std::vector<std::string>& values) {
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    it = children_.emplace(values, make_()).first;
  }
  return *it->second;
}

template <typename T>
void Family<T>::Remove(const std::vector<std::string>& values) {
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) return;
  removed_.push_back(std::move(it->second));
  children_.erase(it);
}

}  // namespace keel::metrics
