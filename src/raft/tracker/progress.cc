#include "raft/tracker/progress.h"

#include <algorithm>
#include <sstream>

namespace keel::raft::tracker {

void Progress::ResetState(ProgressState s) {
  msg_app_flow_paused = false;
  pending_snapshot = 0;
  state = s;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  // After a snapshot, the follower has at least the snapshot's entries.
  if (state == ProgressState::kSnapshot) {
    Index pending = pending_snapshot;
    ResetState(ProgressState::kProbe);
    next = std::max(match + 1, pending + 1);
  } else {
    ResetState(ProgressState::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(ProgressState::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  ResetState(ProgressState::kSnapshot);
  pending_snapshot = snapshot_index;
}

void Progress::SentEntries(size_t entries, uint64_t bytes, Index next_index) {
  switch (state) {
    case ProgressState::kReplicate:
      if (entries > 0) {
        Index last = next_index + entries - 1;
        next = last + 1;  // optimistic: assume it will be accepted
        inflights.Add(last, bytes);
      }
      msg_app_flow_paused = inflights.Full();
      break;
    case ProgressState::kProbe:
      // One probe at a time: wait for its answer (or the next heartbeat).
      if (entries > 0) msg_app_flow_paused = true;
      break;
    case ProgressState::kSnapshot:
      KEEL_UNREACHABLE() << "sending entries in snapshot state";
  }
}

bool Progress::MaybeUpdate(Index n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    msg_app_flow_paused = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(Index rejected, Index match_hint) {
  if (state == ProgressState::kReplicate) {
    // A rejection at or below match is stale (reordered network).
    if (rejected <= match) return false;
    // The pipelined window is void: restart right after the known match.
    next = match + 1;
    return true;
  }
  // Probe: only the rejection of the probe we sent counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  msg_app_flow_paused = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return msg_app_flow_paused;
    case ProgressState::kReplicate:
      return inflights.Full();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

std::string Progress::DebugString() const {
  static const char* kNames[] = {"StateProbe", "StateReplicate",
                                 "StateSnapshot"};
  std::ostringstream os;
  os << kNames[static_cast<int>(state)] << " match=" << match
     << " next=" << next;
  if (is_learner) os << " learner";
  if (IsPaused()) os << " paused";
  if (pending_snapshot > 0) os << " pendingSnap=" << pending_snapshot;
  if (!recent_active) os << " inactive";
  if (inflights.Count() > 0) os << " inflight=" << inflights.Count();
  return os.str();
}

}  // namespace keel::raft::tracker
