// Latency samples and the report keel-bench prints.
//
// Every completed operation's latency is kept as an exact sample (8 bytes
// each: a million operations cost 8 MB), so percentiles are exact rather
// than bucketed. Each worker thread owns one Recorder; the main thread
// merges them after the workers stop.
//
// Thread safety: a Recorder is used by one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace keel::bench {

class Recorder {
 public:
  void Ok(int64_t latency_ns) { samples_ns_.push_back(latency_ns); }
  void Error(const std::string& what) { errors_[what]++; }
  void Merge(const Recorder& other);

  const std::vector<int64_t>& samples() const { return samples_ns_; }
  std::vector<int64_t>& mutable_samples() { return samples_ns_; }
  const std::map<std::string, int64_t>& errors() const { return errors_; }
  int64_t error_count() const;

 private:
  std::vector<int64_t> samples_ns_;
  std::map<std::string, int64_t> errors_;
};

struct Summary {
  std::string workload;
  int64_t ops = 0;
  int64_t errors = 0;
  std::map<std::string, int64_t> error_kinds;
  double seconds = 0;
  double qps = 0;
  // Milliseconds.
  double avg = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  // Extra figures a workload reports (name -> value), e.g. watchers.
  std::map<std::string, double> extra;
};

// Sorts the samples (in place) and computes the figures.
Summary Summarize(const std::string& workload, Recorder* all, double seconds);
std::string ToText(const Summary& s);
std::string ToJson(const Summary& s);

}  // namespace keel::bench
