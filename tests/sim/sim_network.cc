#include "sim/sim_network.h"

#include <fmt/format.h>

#include <algorithm>

namespace keel::sim {

SimNetwork::SendResult SimNetwork::Send(raft::Message m, uint64_t incarnation,
                                        uint64_t now) {
  sent_++;
  if (IsCut(m.from, m.to)) {
    dropped_++;
    return SendResult::kCut;
  }
  if (faults_.drop_rate > 0 && rng_->Chance(faults_.drop_rate)) {
    dropped_++;
    return SendResult::kDropped;
  }
  if (faults_.dup_rate > 0 && rng_->Chance(faults_.dup_rate)) {
    Enqueue(m, incarnation, now);
  }
  Enqueue(std::move(m), incarnation, now);
  return SendResult::kQueued;
}

void SimNetwork::Enqueue(raft::Message m, uint64_t incarnation, uint64_t now) {
  uint64_t at = now + static_cast<uint64_t>(rng_->Range(
                          faults_.delay_min_steps, faults_.delay_max_steps));
  if (faults_.fifo) {
    uint64_t& last = last_delivery_[{m.from, m.to}];
    at = std::max(at, last);
    last = at;
  }
  // Messages due at the same step keep their send order (seq_), so a FIFO
  // link stays FIFO.
  queue_.emplace(std::make_pair(at, seq_++),
                 Envelope{std::move(m), incarnation});
}

bool SimNetwork::PopDue(uint64_t now, Envelope* out) {
  if (!queue_.empty()) {
    auto it = queue_.begin();
    if (it->first.first > now) return false;
    *out = std::move(it->second);
    queue_.erase(it);
    return true;
  }
  return false;
}

void SimNetwork::Partition(const std::vector<NodeId>& a,
                           const std::vector<NodeId>& b) {
  for (NodeId x : a) {
    for (NodeId y : b) {
      Cut(x, y);
      Cut(y, x);
    }
  }
}

std::string SimNetwork::DescribeCuts() const {
  std::string s;
  for (const auto& [from, to] : cut_) {
    if (!s.empty()) s += ' ';
    s += fmt::format("{}->{}", from, to);
  }
  return s.empty() ? "none" : s;
}

}  // namespace keel::sim
