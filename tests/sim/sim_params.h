// SimParams: everything a simulation run varies, drawn from its seed.
//
// Swarm testing: rather than one fixed fault mix, every seed draws its own
// cluster size, core options (pre-vote, check-quorum, lease reads, flow
// control limits) and fault rates, so that across many seeds some runs are
// gentle and some brutal, and rare interleavings get explored. A seed fully
// determines the parameters, so printing the seed is enough to replay.
//
// Thread safety: values.
#pragma once

#include <cstdint>
#include <string>

#include "common/rng.h"

namespace keel::sim {

struct SimParams {
  uint64_t seed = 0;

  // Cluster shape.
  int cluster_size = 3;  // initial voters: 3, 5 or 7
  int max_node_ids = 5;  // ids ever used, including members added later

  // Core options.
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = false;
  bool check_quorum = false;
  bool lease_reads = false;  // only with check_quorum
  bool disable_forwarding = false;
  uint64_t max_size_per_msg = 1 << 20;
  size_t max_inflight_msgs = 256;
  uint64_t max_uncommitted_size = 0;

  // Time: a tick happens every steps_per_tick steps; messages take
  // [delay_min_steps, delay_max_steps] steps.
  int steps_per_tick = 2;
  int delay_min_steps = 1;
  int delay_max_steps = 2;
  bool fifo_links = true;  // false: messages on one link may be reordered

  // Network faults (safety phase only).
  double drop_rate = 0;
  double dup_rate = 0;
  double partition_rate = 0;       // per tick: start a partition
  double partition_heal_rate = 0;  // per tick: heal partitions
  double unreachable_report_rate = 0.5;

  // Process faults (safety phase only).
  double crash_rate = 0;           // per tick, per cluster
  double restart_rate = 0.1;       // per tick, per crashed member
  double crash_in_ready_rate = 0;  // per Ready handled
  // A crash in a Ready may keep a prefix of its entries but not its hard
  // state, as a torn WAL tail does.
  bool torn_writes = false;
  // A member stops (no ticks, no messages handled) for a while, as in a
  // long GC pause or a stalled disk. Never with lease reads: a paused clock
  // is unbounded drift, which a lease cannot survive by design.
  double pause_rate = 0;  // per tick, per cluster
  int pause_max_ticks = 0;

  // The disk. Memory: each member's disk is a MemoryStorage, and the
  // simulator decides what a crash loses. WAL: the real DiskStorage over a
  // fault-injecting in-memory file system, where a crash is a power cut
  // (unsynced bytes lost or, with torn_writes, torn at a sector) and the
  // WAL's own recovery decides what survives.
  bool wal_disk = false;
  uint64_t wal_segment_size = 64 << 10;  // small: rollover and purge happen
  // Per tick, per cluster (WAL only): arm a crash of one member at one of
  // its next few file operations (inside a write, a rollover, a snapshot).
  double io_crash_rate = 0;

  // Workload.
  double propose_rate = 0.5;    // per tick
  double read_rate = 0.3;       // per tick
  double conf_change_rate = 0;  // per tick
  double transfer_rate = 0;     // per tick
  double snapshot_rate = 0.05;  // per applied Ready
  int snapshot_min_gap = 10;    // entries applied since the last snapshot
  int compact_keep = 5;         // entries kept behind a snapshot

  // Phases.
  int fault_ticks = 300;
  int liveness_bound_ticks = 600;

  // One line for the failure report.
  std::string Describe() const;
};

// Draws every parameter from rng (which the caller seeded with `seed`).
SimParams DrawParams(uint64_t seed, Rng* rng);

}  // namespace keel::sim
