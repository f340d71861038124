// Progress: the leader's view of one follower's log.
//
//  - Probe: we don't know where the follower's log ends; send at most one
//    kApp per heartbeat interval and step `next` back on rejections.
//  - Replicate: the follower is in sync; pipeline kApp messages
//    optimistically, bounded by the in-flight window.
//  - Snapshot: the follower needs entries we have compacted; a snapshot is
//    on its way and nothing else is sent until it is reported.
//
// Thread safety: none; owned by the ProgressTracker.
#pragma once

#include <string>

#include "raft/raw_node.h"
#include "raft/tracker/inflights.h"

namespace keel::raft::tracker {

struct Progress {
  Progress(size_t max_inflight, uint64_t max_inflight_bytes)
      : inflights(max_inflight, max_inflight_bytes) {}

  // Invariant: match < next.
  Index match = 0;
  Index next = 1;
  ProgressState state = ProgressState::kProbe;
  // In kSnapshot: the index of the snapshot being sent.
  Index pending_snapshot = 0;
  // Heard from recently (reset by CheckQuorum every election timeout).
  bool recent_active = false;
  // Probe state: no kApp may be sent until this is cleared (by a response
  // or a heartbeat response). Replicate state is paused by a full window.
  bool msg_app_flow_paused = false;
  Inflights inflights;
  bool is_learner = false;
  // Leader lease: the leader's tick at which the newest heartbeat this
  // follower acknowledged was sent (0 = none this term).
  uint64_t heartbeat_ack_tick = 0;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);
  // Records that `entries` entries totalling `bytes` starting at
  // `next_index` were sent.
  void SentEntries(size_t entries, uint64_t bytes, Index next_index);
  // The follower acknowledged n; false if that was stale.
  bool MaybeUpdate(Index n);
  // The follower rejected an append at `rejected`; its log ends at or
  // before `match_hint`. False if the rejection is stale.
  bool MaybeDecrTo(Index rejected, Index match_hint);
  bool IsPaused() const;
  std::string DebugString() const;

 private:
  void ResetState(ProgressState s);
};

}  // namespace keel::raft::tracker
