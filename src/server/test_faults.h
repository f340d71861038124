// TestFaults: network faults for the fault-injection suite (tests/jepsen),
// applied to this member's outgoing Raft messages through the transport's
// test-only fault hook. Enabled only by the explicit test flag
// --experimental-test-fault-file=PATH; without it no hook is installed.
//
// The file is re-read every 20 ms (a test rewrites it atomically with a
// rename), one rule per line, for messages this member sends:
//
//   drop  TO [PROBABILITY]          # lose them (default 1: cut the link)
//   delay TO MS [JITTER_MS]         # deliver after MS + uniform(0, JITTER)
//
// A drop and a delay rule for the same TO combine (lossy and slow); rules
// for a named TO replace the "*" rules for it.
//   # comment
//
// TO is a member name (as in --initial-cluster or published), a member id
// in hex, or "*" for every peer. A partition is a drop rule on each side;
// a one-way partition a drop rule on one side only. An unreadable or
// missing file means no faults; a bad line is logged and skipped.
//
// Thread safety: Decide() may be called from any thread (the transport
// calls it on the Send() caller's thread); the poller is internal.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "raft/types.h"
#include "transport/transport.h"

namespace keel::server {

class TestFaults {
 public:
  // names() returns the current name -> member id map (for TO).
  TestFaults(std::string path,
             std::function<std::map<std::string, uint64_t>()> names,
             uint64_t seed);
  ~TestFaults();  // stops the poller
  TestFaults(const TestFaults&) = delete;
  TestFaults& operator=(const TestFaults&) = delete;

  transport::FaultDecision Decide(const raft::Message& m);

 private:
  struct Rule {
    double drop_probability = 0;
    int delay_ms = 0;
    int jitter_ms = 0;
  };
  void Poll();
  void Reload();

  const std::string path_;
  const std::function<std::map<std::string, uint64_t>()> names_;

  std::mutex mu_;
  std::string text_;                // last file contents; guarded by mu_
  std::map<uint64_t, Rule> rules_;  // by destination; guarded by mu_
  bool all_ = false;                // a "*" rule applies; guarded by mu_
  Rule all_rule_;                   // guarded by mu_
  std::mt19937_64 rng_;             // guarded by mu_
  bool stop_ = false;               // guarded by mu_
  std::condition_variable cv_;
  std::thread poller_;
};

}  // namespace keel::server
