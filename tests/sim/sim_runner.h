// Running many simulation seeds: in this process, or spread over forked
// worker processes, with progress, a summary, and for every failure the seed,
// the command that replays it and the tail of its event trace.
//
// A worker that dies (a KEEL_CHECK in the core aborts) costs only the seed it
// was running: the parent notes that seed as failed and forks a new worker
// for the rest. Results do not depend on the number of jobs.
//
// Thread safety: none; call from one thread. RunSeeds forks when jobs > 1,
// so call it before starting any threads.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "sim/sim_cluster.h"

namespace keel::sim {

struct RunnerOptions {
  uint64_t first_seed = 1;
  uint64_t count = 1;
  int jobs = 1;
  // Print every event of a failing seed's replay, not only the tail.
  bool verbose = false;
  size_t trace_tail = 200;
  // Print a progress line every this many seconds (0: never).
  double progress_seconds = 10;
  Injection inject = Injection::kNone;
  // Workers discard their stderr (the core's own report of a failed
  // KEEL_CHECK): for self-tests, where the core is expected to abort often.
  bool quiet_workers = false;
  // How to replay, for the failure report: "keel-sim" or a test's name.
  std::string replay_command = "keel-sim";
};

struct RunnerSummary {
  uint64_t passed = 0;
  uint64_t failed = 0;
  std::vector<uint64_t> failed_seeds;
  // The violation of each failed seed, in the same order ("crashed" if the
  // process died, e.g. on a KEEL_CHECK in the core).
  std::vector<std::string> violations;
  double seconds = 0;
  // Totals over the passing and failing seeds that reported, to show what
  // the swarm exercised.
  SimStats totals;
  uint64_t lease_read_seeds = 0;
  uint64_t wal_disk_seeds = 0;  // runs with the WAL as the disk

  std::string Line() const;  // "sim: N seeds passed, M failed in Xs"
};

// Runs the seeds, writes progress and failure reports to `out`.
RunnerSummary RunSeeds(const RunnerOptions& options, std::ostream& out);

// Writes the report of a failing run.
void PrintFailure(const SimResult& r, const RunnerOptions& options,
                  std::ostream& out);

}  // namespace keel::sim
