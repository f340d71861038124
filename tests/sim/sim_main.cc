// keel-sim: runs the deterministic cluster simulator over one seed or a range.
//
//   keel-sim --seed 42 --verbose      replay one seed, printing every event
//   keel-sim --seeds 1..100000 -j 2   a big range on two processes
//
// Exits non-zero if any seed fails; every failure prints its seed and the
// command that replays it.

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <optional>

#include "sim/sim_runner.h"

namespace {

bool ParseRange(const std::string& s, uint64_t* first, uint64_t* last) {
  size_t dots = s.find("..");
  if (dots == std::string::npos) return false;
  try {
    *first = std::stoull(s.substr(0, dots));
    *last = std::stoull(s.substr(dots + 2));
  } catch (...) {
    return false;
  }
  return *first <= *last;
}

void PrintTotals(const keel::sim::RunnerSummary& s) {
  const keel::sim::SimStats& t = s.totals;
  std::cout << fmt::format(
      "sim: totals: {} ticks, {} messages ({} dropped), {} leaders, {} "
      "proposals ({} refused, {} timed out, {} committed), {} reads ({} "
      "served), {} crashes ({} inside file IO), {} pauses, {} conf changes ({} "
      "applied), {} "
      "members added, "
      "{} removed, {} transfers, {} snapshots installed; {} seeds with lease "
      "reads, {} with the WAL as the disk ({} restarts raised a commit index "
      "below the snapshot, see FINDINGS.md)\n",
      t.ticks, t.messages, t.dropped, t.leaders, t.proposals,
      t.proposals_refused, t.proposals_timed_out, t.writes_committed, t.reads,
      t.reads_served, t.crashes, t.io_crashes, t.pauses,
      t.conf_changes_proposed, t.conf_changes_applied, t.members_added,
      t.members_removed, t.transfers, t.snapshots_installed, s.lease_read_seeds,
      s.wal_disk_seeds, t.commit_below_snapshot);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"keel deterministic cluster simulator"};
  std::optional<uint64_t> seed;
  std::string seeds;
  uint64_t from = 1, count = 0;
  int jobs = 1;
  bool verbose = false, params_only = false;
  size_t tail = 200;
  double progress = 10;
  std::string inject = "none";
  app.add_option("--seed", seed, "run one seed");
  app.add_option("--seeds", seeds, "run a range of seeds, A..B inclusive");
  app.add_option("--from", from, "first seed of a range (with --count)");
  app.add_option("--count", count, "number of seeds from --from");
  app.add_option("-j,--jobs", jobs, "worker processes")
      ->check(CLI::Range(1, 256));
  app.add_flag("-v,--verbose", verbose,
               "one seed: print every event; a range: full trace of failures");
  app.add_option("--trace-tail", tail, "events printed before a failure");
  app.add_option("--progress", progress, "seconds between progress lines");
  app.add_flag("--params", params_only, "print the seed's parameters only");
  app.add_option(
         "--inject", inject,
         "harness self-test: none|corrupt-apply|stale-read|amnesia|early-send")
      ->check(CLI::IsMember(
          {"none", "corrupt-apply", "stale-read", "amnesia", "early-send"}));
  CLI11_PARSE(app, argc, argv);

  keel::sim::RunnerOptions o;
  o.jobs = jobs;
  o.verbose = verbose;
  o.trace_tail = tail;
  o.progress_seconds = progress;
  if (inject == "corrupt-apply") o.inject = keel::sim::Injection::kCorruptApply;
  if (inject == "stale-read") o.inject = keel::sim::Injection::kStaleRead;
  if (inject == "amnesia") o.inject = keel::sim::Injection::kAmnesia;
  if (inject == "early-send") o.inject = keel::sim::Injection::kEarlySend;
  if (seed) {
    o.first_seed = *seed;
    o.count = 1;
  } else if (!seeds.empty()) {
    uint64_t last;
    if (!ParseRange(seeds, &o.first_seed, &last)) {
      std::cerr << "--seeds wants A..B with A <= B\n";
      return 2;
    }
    o.count = last - o.first_seed + 1;
  } else if (count > 0) {
    o.first_seed = from;
    o.count = count;
  } else {
    std::cerr << "give --seed N, --seeds A..B or --from A --count N\n";
    return 2;
  }
  if (params_only) {
    for (uint64_t s = o.first_seed; s < o.first_seed + o.count; s++) {
      keel::SeededRng rng(s);
      std::cout << s << ": " << keel::sim::DrawParams(s, &rng).Describe()
                << "\n";
    }
    return 0;
  }

  if (seed && verbose) {
    // Replay one seed with every event printed as it happens.
    keel::sim::SimOptions so;
    so.inject = o.inject;
    so.live_trace = &std::cout;
    keel::sim::SimResult r = keel::sim::RunSimulation(*seed, so);
    if (!r.ok) {
      keel::sim::PrintFailure(r, o, std::cout);
      return 1;
    }
    std::cout << fmt::format(
        "sim: seed {} passed ({} ticks, converged {} "
        "ticks after healing)\n",
        *seed, r.stats.ticks, r.stats.liveness_ticks);
    return 0;
  }

  keel::sim::RunnerSummary s = keel::sim::RunSeeds(o, std::cout);
  PrintTotals(s);
  std::cout << s.Line() << "\n";
  if (s.failed > 0) {
    std::vector<uint64_t> sorted = s.failed_seeds;
    std::sort(sorted.begin(), sorted.end());
    std::string list;
    for (size_t i = 0; i < sorted.size() && i < 50; i++) {
      list += fmt::format("{} ", sorted[i]);
    }
    std::cout << "sim: failed seeds: " << list << "\n";
  }
  return s.failed == 0 ? 0 : 1;
}
