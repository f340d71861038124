#include "raft/read_only.h"

namespace keel::raft {

bool ReadOnly::AddRequest(Index index, Message req) {
  std::string ctx = req.context;  // a copy: req is moved below
  if (pending_.count(ctx)) return false;
  queue_.push_back(ctx);
  pending_.emplace(ctx, ReadIndexStatus{std::move(req), index, {}});
  return true;
}

const std::set<NodeId>* ReadOnly::RecvAck(NodeId id, const std::string& ctx) {
  auto it = pending_.find(ctx);
  if (it == pending_.end()) return nullptr;
  it->second.acks.insert(id);
  return &it->second.acks;
}

std::vector<ReadIndexStatus> ReadOnly::Advance(const std::string& ctx) {
  std::vector<ReadIndexStatus> out;
  if (pending_.count(ctx) == 0) return out;
  while (!queue_.empty()) {
    std::string c = std::move(queue_.front());
    queue_.pop_front();
    auto it = pending_.find(c);
    out.push_back(std::move(it->second));
    pending_.erase(it);
    if (c == ctx) break;
  }
  if (round_ctx_ == ctx || pending_.count(round_ctx_) == 0) round_ctx_.clear();
  return out;
}

std::string ReadOnly::LastPendingRequestCtx() const {
  return queue_.empty() ? std::string() : queue_.back();
}

void ReadOnly::Reset() {
  pending_.clear();
  queue_.clear();
  round_ctx_.clear();
}

}  // namespace keel::raft
