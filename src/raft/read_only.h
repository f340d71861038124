// ReadOnly: the leader's queue of ReadIndex requests waiting for leadership
// to be confirmed by a heartbeat round.
//
// Each request records the commit index at the moment it arrived. A
// heartbeat carries the context of the newest request queued when it was
// sent; once a quorum acknowledges that context, leadership was confirmed
// after every request up to it arrived, so they are all released together.
// At most one confirmation round is started eagerly at a time: requests that
// arrive while it is in flight share the next round.
//
// Thread safety: none; owned by the Raft state machine.
#pragma once

#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "raft/types.h"

namespace keel::raft {

struct ReadIndexStatus {
  Message req;  // the kReadIndex message (from = who asked)
  Index index = 0;
  std::set<NodeId> acks;
};

class ReadOnly {
 public:
  // Queues a request; false if its context is already queued.
  bool AddRequest(Index index, Message req);
  // Records a heartbeat acknowledgement for ctx; the acks so far, or null
  // if ctx is not pending.
  const std::set<NodeId>* RecvAck(NodeId id, const std::string& ctx);
  // Releases every request up to and including ctx.
  std::vector<ReadIndexStatus> Advance(const std::string& ctx);
  // The context of the newest pending request, or "" if none.
  std::string LastPendingRequestCtx() const;
  bool HasPending() const { return !queue_.empty(); }
  size_t PendingCount() const { return queue_.size(); }

  // Context of the eagerly started round in flight, if any.
  const std::string& round_ctx() const { return round_ctx_; }
  void set_round_ctx(std::string ctx) { round_ctx_ = std::move(ctx); }

  void Reset();

 private:
  std::map<std::string, ReadIndexStatus> pending_;
  // Invariant: queue_ holds exactly the keys of pending_, oldest first.
  std::deque<std::string> queue_;
  std::string round_ctx_;
};

}  // namespace keel::raft
