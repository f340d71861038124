// SimNetwork: the simulated network between the members of a simulated
// cluster.
//
// Messages are delivered after a seeded delay measured in simulation steps;
// the network may drop, duplicate and (unless links are FIFO) reorder them,
// and links can be cut in one direction (asymmetric partition) or both.
// A cut applies to messages already in flight too, as a real network loses
// packets queued on a link that goes down. Delivery order is a pure function
// of the seed: the queue is keyed by (delivery step, send sequence number).
//
// Thread safety: none; the simulator is single-threaded.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "raft/types.h"

namespace keel::sim {

using raft::NodeId;

struct Envelope {
  raft::Message msg;
  // Which life of the sender sent it: reports about delivery (ReportSnapshot)
  // go only to the same life.
  uint64_t sender_incarnation = 0;
};

class SimNetwork {
 public:
  struct Faults {
    double drop_rate = 0;
    double dup_rate = 0;
    int delay_min_steps = 1;
    int delay_max_steps = 1;
    bool fifo = true;
  };

  enum class SendResult { kQueued, kDropped, kCut };

  explicit SimNetwork(Rng* rng) : rng_(rng) {}

  void SetFaults(const Faults& f) { faults_ = f; }
  const Faults& faults() const { return faults_; }

  // Queues m for delivery (maybe twice), or drops it. kCut: the link is
  // down, which a transport notices (ReportUnreachable); kDropped: lost
  // silently.
  SendResult Send(raft::Message m, uint64_t incarnation, uint64_t now);

  // Pops the next message due at or before `now`; false if none. The caller
  // checks IsCut() on delivery: a link cut while a message was in flight
  // loses it, and the sender of a snapshot must hear about that.
  bool PopDue(uint64_t now, Envelope* out);

  // Link control. Cut(a, b) stops messages from a to b only.
  void Cut(NodeId from, NodeId to) { cut_.insert({from, to}); }
  bool IsCut(NodeId from, NodeId to) const {
    return !cut_.empty() && cut_.count({from, to}) > 0;
  }
  // Cuts every link between the two sides, in both directions.
  void Partition(const std::vector<NodeId>& a, const std::vector<NodeId>& b);
  void HealLinks() { cut_.clear(); }
  bool HasCuts() const { return !cut_.empty(); }
  std::string DescribeCuts() const;

  size_t in_flight() const { return queue_.size(); }
  uint64_t sent() const { return sent_; }
  uint64_t dropped() const { return dropped_; }

 private:
  void Enqueue(raft::Message m, uint64_t incarnation, uint64_t now);

  Rng* rng_;  // not owned
  Faults faults_;
  // (delivery step, sequence number) -> message.
  std::map<std::pair<uint64_t, uint64_t>, Envelope> queue_;
  // FIFO links: the last delivery step scheduled per (from, to).
  std::map<std::pair<NodeId, NodeId>, uint64_t> last_delivery_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  uint64_t seq_ = 0;
  uint64_t sent_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace keel::sim
