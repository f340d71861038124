#include "sim/sim_params.h"

#include <fmt/format.h>

#include <algorithm>

namespace keel::sim {
namespace {

// A rate that is zero with probability p_off, else uniform in [lo, hi]:
// swarm testing wants some runs entirely free of a given fault.
double MaybeRate(Rng* rng, double p_off, double lo, double hi) {
  if (rng->Chance(p_off)) return 0;
  return lo + (hi - lo) * static_cast<double>(rng->Uniform(1001)) / 1000.0;
}

}  // namespace

SimParams DrawParams(uint64_t seed, Rng* rng) {
  SimParams p;
  p.seed = seed;
  static constexpr int kSizes[] = {3, 3, 5, 5, 7};
  p.cluster_size = kSizes[rng->Uniform(5)];
  p.max_node_ids = p.cluster_size + static_cast<int>(rng->Range(0, 3));

  p.election_tick = static_cast<int>(rng->Range(5, 15));
  p.heartbeat_tick =
      static_cast<int>(rng->Range(1, std::max(1, p.election_tick / 4)));
  p.pre_vote = rng->Chance(0.5);
  p.check_quorum = rng->Chance(0.5);
  p.lease_reads = p.check_quorum && rng->Chance(0.4);
  p.disable_forwarding = rng->Chance(0.1);
  // Small messages and windows exercise flow control and probing.
  p.max_size_per_msg = rng->Chance(0.3) ? rng->Range(1, 200) : (1 << 20);
  p.max_inflight_msgs = rng->Chance(0.3) ? rng->Range(1, 4) : 256;
  p.max_uncommitted_size = rng->Chance(0.2) ? rng->Range(20, 200) : 0;

  p.steps_per_tick = static_cast<int>(rng->Range(1, 4));
  // Keep a round trip well inside an election timeout, or no leader could
  // ever hold on even without faults.
  p.delay_min_steps = static_cast<int>(rng->Range(0, 1));
  p.delay_max_steps = static_cast<int>(rng->Range(
      p.delay_min_steps + 1, p.delay_min_steps + 2 * p.steps_per_tick));
  p.fifo_links = rng->Chance(0.4);

  p.drop_rate = MaybeRate(rng, 0.3, 0.005, 0.15);
  p.dup_rate = MaybeRate(rng, 0.5, 0.005, 0.1);
  p.partition_rate = MaybeRate(rng, 0.3, 0.002, 0.03);
  p.partition_heal_rate =
      0.02 + 0.1 * static_cast<double>(rng->Uniform(11)) / 10;
  p.unreachable_report_rate = static_cast<double>(rng->Uniform(11)) / 10;

  p.crash_rate = MaybeRate(rng, 0.3, 0.002, 0.03);
  p.restart_rate = 0.02 + 0.2 * static_cast<double>(rng->Uniform(11)) / 10;
  p.crash_in_ready_rate = MaybeRate(rng, 0.5, 0.0005, 0.01);
  p.torn_writes = rng->Chance(0.5);
  p.pause_rate = MaybeRate(rng, 0.5, 0.002, 0.02);
  if (p.lease_reads) p.pause_rate = 0;
  p.pause_max_ticks = static_cast<int>(rng->Range(1, 3 * p.election_tick));

  p.propose_rate = 0.1 + 0.9 * static_cast<double>(rng->Uniform(11)) / 10;
  p.read_rate = MaybeRate(rng, 0.2, 0.05, 0.8);
  p.conf_change_rate = MaybeRate(rng, 0.3, 0.005, 0.05);
  p.transfer_rate = MaybeRate(rng, 0.4, 0.002, 0.03);
  p.snapshot_rate = MaybeRate(rng, 0.2, 0.02, 0.3);
  p.snapshot_min_gap = static_cast<int>(rng->Range(1, 30));
  p.compact_keep = static_cast<int>(rng->Range(0, 10));

  p.fault_ticks = static_cast<int>(rng->Range(150, 700));
  // Several election rounds (split votes, disruptive rejoins without
  // pre-vote) plus snapshot catch-up for far-behind members.
  p.liveness_bound_ticks = 40 * p.election_tick + 100;

  // Drawn last, so that every other parameter of a seed is what it was
  // before the WAL model existed.
  p.wal_disk = rng->Chance(0.5);
  p.wal_segment_size = uint64_t{4096} << rng->Range(1, 4);  // 8-64 KiB
  p.io_crash_rate = MaybeRate(rng, 0.5, 0.002, 0.03);
  if (!p.wal_disk) p.io_crash_rate = 0;
  return p;
}

std::string SimParams::Describe() const {
  return fmt::format(
      "size={} ids<={} election={} heartbeat={} pre_vote={} check_quorum={} "
      "lease={} no_fwd={} max_msg={} inflight={} max_uncommitted={} "
      "steps/tick={} delay=[{},{}] fifo={} drop={:.3f} dup={:.3f} "
      "partition={:.3f}/{:.2f} crash={:.3f} restart={:.2f} "
      "crash_in_ready={:.4f} "
      "propose={:.2f} read={:.2f} confchange={:.3f} transfer={:.3f} "
      "snapshot={:.2f}/gap{}/keep{} fault_ticks={} liveness_bound={} "
      "disk={}",
      cluster_size, max_node_ids, election_tick, heartbeat_tick, pre_vote,
      check_quorum, lease_reads, disable_forwarding, max_size_per_msg,
      max_inflight_msgs, max_uncommitted_size, steps_per_tick, delay_min_steps,
      delay_max_steps, fifo_links, drop_rate, dup_rate, partition_rate,
      partition_heal_rate, crash_rate, restart_rate, crash_in_ready_rate,
      propose_rate, read_rate, conf_change_rate, transfer_rate, snapshot_rate,
      snapshot_min_gap, compact_keep, fault_ticks, liveness_bound_ticks,
      wal_disk ? fmt::format("wal/seg{}K/io_crash{:.3f}/torn={}",
                             wal_segment_size >> 10, io_crash_rate, torn_writes)
               : std::string("memory"));
}

}  // namespace keel::sim
