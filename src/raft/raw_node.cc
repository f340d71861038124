#include "raft/raw_node.h"

#include "raft/codec.h"
#include "raft/raft.h"

namespace keel::raft {

const char* StateRoleName(StateRole r) {
  switch (r) {
    case StateRole::kFollower:
      return "StateFollower";
    case StateRole::kCandidate:
      return "StateCandidate";
    case StateRole::kLeader:
      return "StateLeader";
    case StateRole::kPreCandidate:
      return "StatePreCandidate";
  }
  return "StateUnknown";
}

Status Config::Validate() const {
  if (id == kNone) return Status::InvalidArgument("cannot use none as id");
  if (heartbeat_tick <= 0) {
    return Status::InvalidArgument("heartbeat tick must be greater than 0");
  }
  if (election_tick <= heartbeat_tick) {
    return Status::InvalidArgument(
        "election tick must be greater than heartbeat tick");
  }
  if (storage == nullptr)
    return Status::InvalidArgument("storage cannot be nil");
  if (rng == nullptr) return Status::InvalidArgument("rng cannot be nil");
  if (max_inflight_msgs == 0) {
    return Status::InvalidArgument(
        "max inflight messages must be greater than 0");
  }
  if (max_inflight_bytes != 0 && max_inflight_bytes < max_size_per_msg) {
    return Status::InvalidArgument(
        "max inflight bytes must be >= max message size");
  }
  if (read_only_option == ReadOnlyOption::kLeaseBased && !check_quorum) {
    return Status::InvalidArgument(
        "check_quorum must be enabled when read_only_option is kLeaseBased");
  }
  return Status::OK();
}

bool Ready::ContainsUpdates() const {
  return soft_state.has_value() || !hard_state.IsEmpty() ||
         !snapshot.IsEmpty() || !entries.empty() ||
         !committed_entries.empty() || !messages.empty() ||
         !read_states.empty();
}

Result<std::unique_ptr<RawNode>> RawNode::Create(const Config& config) {
  KEEL_RETURN_IF_ERROR(config.Validate());
  return std::unique_ptr<RawNode>(new RawNode(std::make_unique<Raft>(config)));
}

RawNode::RawNode(std::unique_ptr<Raft> raft) : raft_(std::move(raft)) {
  prev_soft_ = raft_->GetSoftState();
  prev_hard_ = raft_->GetHardState();
}

RawNode::~RawNode() = default;

void RawNode::Tick() { raft_->Tick(); }

void RawNode::Campaign() {
  Message m;
  m.type = MessageType::kHup;
  raft_->Step(std::move(m));
}

Status RawNode::Propose(std::string data) {
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_->id();
  Entry e;
  e.data = std::move(data);
  m.entries.push_back(std::move(e));
  return raft_->Step(std::move(m));
}

Status RawNode::ProposeBatch(std::vector<std::string> data) {
  if (data.empty()) return Status::OK();
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_->id();
  m.entries.resize(data.size());
  for (size_t i = 0; i < data.size(); i++)
    m.entries[i].data = std::move(data[i]);
  return raft_->Step(std::move(m));
}

Status RawNode::ProposeConfChange(const ConfChange& cc) {
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_->id();
  Entry e;
  e.type = EntryType::kConfChange;
  EncodeConfChange(cc, &e.data);
  m.entries.push_back(std::move(e));
  return raft_->Step(std::move(m));
}

ConfState RawNode::ApplyConfChange(const ConfChange& cc) {
  return raft_->ApplyConfChange(cc);
}

Status RawNode::Step(Message m) {
  if (IsLocalMessage(m.type)) return Status::StepLocalMessage();
  if (IsResponseMessage(m.type) &&
      raft_->tracker().progress.count(m.from) == 0) {
    return Status::StepPeerNotFound();
  }
  return raft_->Step(std::move(m));
}

void RawNode::ReadIndex(std::string request_ctx) {
  Message m;
  m.type = MessageType::kReadIndex;
  m.context = std::move(request_ctx);
  raft_->Step(std::move(m));
}

void RawNode::TransferLeader(NodeId transferee) {
  Message m;
  m.type = MessageType::kTransferLeader;
  m.from = transferee;
  raft_->Step(std::move(m));
}

void RawNode::ReportUnreachable(NodeId id) {
  Message m;
  m.type = MessageType::kUnreachable;
  m.from = id;
  raft_->Step(std::move(m));
}

void RawNode::ReportSnapshot(NodeId id, bool failed) {
  Message m;
  m.type = MessageType::kSnapStatus;
  m.from = id;
  m.reject = failed;
  raft_->Step(std::move(m));
}

bool RawNode::HasReady() const {
  const Raft& r = *raft_;
  if (r.GetSoftState() != prev_soft_) return true;
  HardState hs = r.GetHardState();
  if (!hs.IsEmpty() && hs != prev_hard_) return true;
  const RaftLog& log = r.log();
  if (log.HasPendingSnapshot()) return true;
  if (!raft_->msgs().empty() || log.HasNextUnstableEntries() ||
      log.HasNextCommittedEntries()) {
    return true;
  }
  return !raft_->read_states().empty();
}

Ready RawNode::GetReady() {
  Raft& r = *raft_;
  RaftLog& log = r.mutable_log();
  Ready rd;
  rd.entries = log.UnstableEntries();
  rd.committed_entries = log.NextCommittedEntries();
  rd.messages.swap(r.msgs());
  rd.read_states.swap(r.read_states());
  SoftState ss = r.GetSoftState();
  if (ss != prev_soft_) {
    rd.soft_state = ss;
    prev_soft_ = ss;
  }
  HardState hs = r.GetHardState();
  if (hs != prev_hard_) {
    rd.must_sync = hs.term != prev_hard_.term || hs.vote != prev_hard_.vote;
    rd.hard_state = hs;
    prev_hard_ = hs;
  }
  if (log.UnstableSnapshot()) rd.snapshot = *log.UnstableSnapshot();
  rd.must_sync = rd.must_sync || !rd.entries.empty() || !rd.snapshot.IsEmpty();
  if (!rd.committed_entries.empty()) {
    log.AcceptApplying(rd.committed_entries.back().index);
  }
  return rd;
}

void RawNode::Advance(const Ready& rd) {
  Raft& r = *raft_;
  if (!rd.snapshot.IsEmpty()) r.OnSnapshotApplied(rd.snapshot.metadata.index);
  if (!rd.entries.empty()) {
    r.OnPersisted(rd.entries.back().index, rd.entries.back().term);
  }
  if (!rd.committed_entries.empty()) {
    uint64_t bytes = 0;
    for (const Entry& e : rd.committed_entries) bytes += e.PayloadSize();
    r.OnApplied(rd.committed_entries.back().index, bytes);
  }
}

NodeStatus RawNode::GetStatus() const {
  const Raft& r = *raft_;
  NodeStatus s;
  s.id = r.id();
  s.hard_state = r.GetHardState();
  s.soft_state = r.GetSoftState();
  s.applied = r.log().applied();
  s.lead_transferee = r.lead_transferee();
  s.conf_state = r.tracker().GetConfState();
  if (r.state() == StateRole::kLeader) {
    for (const auto& [id, pr] : r.tracker().progress) {
      s.progress[id] = ProgressInfo{pr.match, pr.next, pr.state, pr.is_learner,
                                    pr.recent_active};
    }
  }
  return s;
}

NodeId RawNode::id() const { return raft_->id(); }
StateRole RawNode::role() const { return raft_->state(); }
NodeId RawNode::leader() const { return raft_->lead(); }
Term RawNode::term() const { return raft_->term(); }

}  // namespace keel::raft
