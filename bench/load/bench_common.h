// What keel-bench's two client engines share: the options, the run's shared
// counters and the request contents (keys, status text).
//
// Thread safety: Shared's counters are atomics; everything else is set
// before the workers start and only read afterwards.
#pragma once

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace keel::bench {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string workload;
  std::vector<std::string> endpoints{"127.0.0.1:2379"};
  int conns = 1;
  int clients = 1;
  int threads = 1;
  // put, range and txn-put: "h2" (keel-bench's own HTTP/2 client, see
  // h2_unary.h) or "grpc" (gRPC C++'s completion-queue client).
  std::string transport = "h2";
  int64_t total = 0;
  double duration_s = 0;
  int key_size = 8;
  int val_size = 256;
  int64_t key_space = 100000;
  bool sequential = false;
  double rate = 0;
  std::string consistency = "l";
  int watchers = 100;
  int watch_streams = 10;
  int64_t put_total = 100;
  double put_rate = 100;
  int64_t lease_ttl = 600;
  double timeout_s = 30;
  uint64_t seed = 0;
  bool json = false;
  bool progress = true;
};

// State shared by every worker of one run.
struct Shared {
  const Options* opt = nullptr;
  std::atomic<int64_t> issued{0};
  std::atomic<int64_t> completed{0};
  Clock::time_point start;
  Clock::time_point stop_at = Clock::time_point::max();
  std::atomic<bool> stopping{false};
  std::string value;  // the random value every put writes

  // A closed-loop client's next request: false when the run is over;
  // otherwise *n is the request's number and *at the time the rate cap
  // lets it go (now when there is no cap).
  bool Claim(Clock::time_point now, int64_t* n, Clock::time_point* at) {
    if (stopping.load(std::memory_order_relaxed)) return false;
    *n = issued.fetch_add(1);
    if ((opt->total > 0 && *n >= opt->total) || now >= stop_at) return false;
    *at = now;
    if (opt->rate > 0) {
      auto t = start + std::chrono::nanoseconds(
                           static_cast<int64_t>(*n * 1e9 / opt->rate));
      if (t > now) *at = t;
    }
    return true;
  }
};

// Zero-padded decimal key of at least key_size bytes.
inline std::string MakeKey(int64_t k, int key_size) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%0*" PRId64, key_size, k);
  return std::string(buf, n);
}

// Request n's key: in order, or uniformly random from the client's rng.
inline std::string NextKey(const Options& o, int64_t n, std::mt19937_64* rng) {
  int64_t k = o.sequential ? n % o.key_space
                           : static_cast<int64_t>((*rng)() % o.key_space);
  return MakeKey(k, o.key_size);
}

// "Name: message" for a gRPC status code, as the report lists errors.
std::string StatusText(int code, const std::string& message);

}  // namespace keel::bench
