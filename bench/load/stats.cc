#include "stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace keel::bench {

void Recorder::Merge(const Recorder& other) {
  samples_ns_.insert(samples_ns_.end(), other.samples_ns_.begin(),
                     other.samples_ns_.end());
  for (const auto& [k, v] : other.errors_) errors_[k] += v;
}

int64_t Recorder::error_count() const {
  int64_t n = 0;
  for (const auto& [k, v] : errors_) n += v;
  return n;
}

namespace {

// Nearest-rank percentile of sorted samples, in milliseconds.
double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1] / 1e6;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

Summary Summarize(const std::string& workload, Recorder* all, double seconds) {
  Summary s;
  s.workload = workload;
  auto& v = all->mutable_samples();
  std::sort(v.begin(), v.end());
  s.ops = static_cast<int64_t>(v.size());
  s.errors = all->error_count();
  s.error_kinds = all->errors();
  s.seconds = seconds;
  s.qps = seconds > 0 ? s.ops / seconds : 0;
  if (!v.empty()) {
    long double sum = 0;
    for (int64_t x : v) sum += x;
    s.avg = static_cast<double>(sum / v.size()) / 1e6;
    s.p50 = Percentile(v, 50);
    s.p90 = Percentile(v, 90);
    s.p99 = Percentile(v, 99);
    s.p999 = Percentile(v, 99.9);
    s.max = v.back() / 1e6;
  }
  return s;
}

std::string ToText(const Summary& s) {
  char buf[512];
  std::string out;
  std::snprintf(buf, sizeof buf,
                "%s: %lld ops in %.3f s = %.1f ops/s, %lld errors\n",
                s.workload.c_str(), static_cast<long long>(s.ops), s.seconds,
                s.qps, static_cast<long long>(s.errors));
  out += buf;
  std::snprintf(buf, sizeof buf,
                "latency ms: avg %.3f  p50 %.3f  p90 %.3f  p99 %.3f  "
                "p99.9 %.3f  max %.3f\n",
                s.avg, s.p50, s.p90, s.p99, s.p999, s.max);
  out += buf;
  for (const auto& [k, v] : s.extra) {
    out += "  " + k + ": " + Num(v) + "\n";
  }
  for (const auto& [k, v] : s.error_kinds) {
    out += "  error x" + std::to_string(v) + ": " + k + "\n";
  }
  return out;
}

std::string ToJson(const Summary& s) {
  std::string out = "{";
  out += "\"workload\":" + JsonString(s.workload);
  out += ",\"ops\":" + std::to_string(s.ops);
  out += ",\"errors\":" + std::to_string(s.errors);
  out += ",\"error_kinds\":{";
  bool first = true;
  for (const auto& [k, v] : s.error_kinds) {
    if (!first) out += ",";
    first = false;
    out += JsonString(k) + ":" + std::to_string(v);
  }
  out += "},\"seconds\":" + Num(s.seconds);
  out += ",\"qps\":" + Num(s.qps);
  out += ",\"latency_ms\":{\"avg\":" + Num(s.avg) + ",\"p50\":" + Num(s.p50) +
         ",\"p90\":" + Num(s.p90) + ",\"p99\":" + Num(s.p99) +
         ",\"p99.9\":" + Num(s.p999) + ",\"max\":" + Num(s.max) + "}";
  for (const auto& [k, v] : s.extra) out += "," + JsonString(k) + ":" + Num(v);
  out += "}\n";
  return out;
}

}  // namespace keel::bench
