#include "server/raft_node.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/coding.h"
#include "common/log.h"
#include "raft/codec.h"
#include "raft/raft.h"
#include "server/server_metrics.h"

namespace keel::server {

using Clock = std::chrono::steady_clock;

namespace {

// Re-issue a read round that got no answer within this many ticks (its
// messages may have been lost, or the leader changed).
constexpr int kReadRetryTicks = 3;

std::string ReadCtx(uint64_t id) {
  std::string s;
  PutFixed64(&s, id);
  return s;
}

}  // namespace

RaftNode::RaftNode(RaftNodeOptions options, wal::DiskStorage* storage,
                   StateMachine* sm, MessageSender* sender)
    : options_(options), storage_(storage), sm_(sm), sender_(sender) {}

RaftNode::~RaftNode() { Stop(); }

Status RaftNode::Start() {
  raft::HardState hs;
  KEEL_RETURN_IF_ERROR(storage_->InitialState(&hs, &conf_state_));
  uint64_t snap_index = storage_->FirstIndex() - 1;
  uint64_t applied = sm_->AppliedIndex();
  if (applied < snap_index) {
    // The bootstrap snapshot (index 1) describes an empty state; any other
    // snapshot the state machine has not reached means its data is gone.
    if (snap_index > 1) {
      return Status::Corruption(
          "state machine applied index " + std::to_string(applied) +
          " is behind the raft snapshot at index " +
          std::to_string(snap_index) + ": the key-value data is missing");
    }
  }
  // Entries after the snapshot are delivered again (see the header); the
  // state machine skips those it applied before.
  applied = snap_index;
  applied_ = applied;
  snapshot_index_ = snap_index;
  synced_hs_ = hs;
  rng_ = std::make_unique<SeededRng>(options_.seed ^ options_.id);
  raft::Config c;
  c.id = options_.id;
  c.election_tick = options_.election_ticks;
  c.heartbeat_tick = 1;
  c.storage = storage_;
  c.rng = rng_.get();
  c.applied = applied;
  c.max_size_per_msg = options_.max_size_per_msg;
  c.max_inflight_msgs = options_.max_inflight_msgs;
  c.max_uncommitted_entries_size = options_.max_uncommitted_entries_size;
  c.check_quorum = options_.check_quorum;
  c.pre_vote = options_.pre_vote;
  auto node = raft::RawNode::Create(c);
  if (!node.ok()) return node.status();
  node_ = std::move(node).value();
  PublishStatus();
  thread_ = std::thread([this] { Run(); });
  return Status::OK();
}

void RaftNode::Stop() {
  bool io_waiting;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    io_waiting = io_waiting_;
  }
  WakeLoop(io_waiting);
  if (thread_.joinable()) thread_.join();
}

void RaftNode::WakeLoop(bool io_waiting) {
  if (options_.loop_io == nullptr) {
    cv_.notify_all();
  } else if (io_waiting) {
    // An io handler on the loop's own thread (a peer's message) needs no
    // wake: the loop looks at its queue once the handler returns.
    if (std::this_thread::get_id() !=
        loop_thread_.load(std::memory_order_relaxed)) {
      options_.loop_io->Wake();
    }
  }
}

void RaftNode::Enqueue(Task t) {
  bool io_waiting = false;
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      tasks_.push_back(std::move(t));
      t = nullptr;
      io_waiting = io_waiting_;
    }
  }
  if (t) {
    t(false);
  } else {
    WakeLoop(io_waiting);
  }
}

namespace {
const Status kStopped = Status::Unavailable("etcdserver: server stopped");
}  // namespace

std::future<Status> RaftNode::Propose(std::string data) {
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  Enqueue([this, p, d = std::move(data)](bool run) mutable {
    p->set_value(run ? node_->Propose(std::move(d)) : kStopped);
  });
  return f;
}

std::future<Status> RaftNode::ProposeConfChange(raft::ConfChange cc) {
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  Enqueue([this, p, cc = std::move(cc)](bool run) {
    p->set_value(run ? node_->ProposeConfChange(cc) : kStopped);
  });
  return f;
}

std::future<Status> RaftNode::ReadIndex() {
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  ReadIndexAsync([p](Status s) { p->set_value(std::move(s)); });
  return f;
}

void RaftNode::ReadIndexAsync(StatusCallback done) {
  bool wake;
  bool io_waiting = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      wake = false;
    } else {
      new_reads_.push_back(std::move(done));
      done = nullptr;
      wake = !read_round_pending_ && new_reads_.size() == 1;
      io_waiting = io_waiting_;
    }
  }
  if (done) return done(kStopped);
  if (wake) WakeLoop(io_waiting);
}

void RaftNode::ProposeAsync(std::string data, Clock::time_point deadline,
                            StatusCallback done) {
  // Queued with the held proposals: the loop offers all of them after the
  // round's tasks as batches (RetryHeldProposals), so that the proposals of
  // one round cost one append and one kApp per follower on a leader, and one
  // kProp to the leader on a follower, instead of one each.
  Enqueue([this, d = std::move(data), deadline,
           done = std::move(done)](bool run) mutable {
    if (!run) return done(kStopped);
    held_proposals_.push_back({std::move(d), deadline, std::move(done)});
  });
}

void RaftNode::RetryHeldProposals() {
  if (held_proposals_.empty()) return;
  const auto now = Clock::now();
  std::deque<HeldProposal> still;
  size_t i = 0;
  while (i < held_proposals_.size()) {
    // A batch is bounded like a kApp (max_size_per_msg), so that a
    // forwarded kProp stays a reasonable transport frame.
    size_t j = i, bytes = 0;
    std::vector<std::string> batch;
    while (j < held_proposals_.size() &&
           (j == i || bytes + held_proposals_[j].data.size() <=
                          options_.max_size_per_msg)) {
      bytes += held_proposals_[j].data.size();
      j++;
    }
    Status st = Status::ProposalDropped("no leader");
    if (node_->leader() != raft::kNone) {
      batch.reserve(j - i);
      // Copies: a refused batch is held and offered again.
      for (size_t k = i; k < j; k++) batch.push_back(held_proposals_[k].data);
      st = node_->ProposeBatch(std::move(batch));
    }
    for (size_t k = i; k < j; k++) {
      HeldProposal& h = held_proposals_[k];
      if (st.IsProposalDropped() && now < h.deadline) {
        still.push_back(std::move(h));
      } else {
        h.done(st);
      }
    }
    i = j;
  }
  held_proposals_.swap(still);
}

void RaftNode::TransferLeader(raft::NodeId transferee) {
  Enqueue([this, transferee](bool run) {
    if (run) node_->TransferLeader(transferee);
  });
}

void RaftNode::Step(raft::Message m) {
  Enqueue([this, m = std::move(m)](bool run) mutable {
    if (!run) return;
    const bool waits = m.type == raft::MessageType::kProp ||
                       m.type == raft::MessageType::kReadIndex;
    const raft::NodeId from = m.from;
    node_->Step(std::move(m));
    if (waits && from != options_.id &&
        options_.commit_notice_delay.count() > 0 &&
        node_->role() == raft::StateRole::kLeader) {
      // What it waits for is at most our last index: a commit index that
      // reaches it must reach the follower at once (HoldCommitNotices).
      raft::Index& at = follower_waits_[from];
      at = std::max(at, node_->raft().log().LastIndex());
    }
  });
}

void RaftNode::ReportUnreachable(raft::NodeId id) {
  Enqueue([this, id](bool run) {
    if (run) node_->ReportUnreachable(id);
  });
}

void RaftNode::ReportSnapshot(raft::NodeId id, bool ok) {
  Enqueue([this, id, ok](bool run) {
    if (run) node_->ReportSnapshot(id, !ok);
  });
}

void RaftNode::AdvanceTicks(int n) {
  Enqueue([this, n](bool run) {
    if (!run) return;
    for (int i = 0; i < n; i++) node_->Tick();
  });
}

bool RaftNode::WaitForWork(Clock::time_point next_tick,
                           std::deque<Task>* tasks) {
  LoopIo* io = options_.loop_io;
  // Peers' messages that arrived meanwhile, even when other work is ready:
  // a loop kept busy by clients must still hear its peers.
  if (io != nullptr) io->Poll();
  std::unique_lock lock(mu_);
  read_round_pending_ =
      std::any_of(reads_in_flight_.begin(), reads_in_flight_.end(),
                  [](const auto& kv) { return kv.second.read_index == 0; });
  auto ready = [this] {
    return stopping_ || !tasks_.empty() ||
           (!read_round_pending_ && !new_reads_.empty());
  };
  if (io == nullptr) {
    cv_.wait_until(lock, next_tick, ready);
  } else {
    while (!ready() && Clock::now() < next_tick) {
      io_waiting_ = true;
      lock.unlock();
      io->RunOneUntil(next_tick);
      io->Poll();  // the rest of what is ready: one round for all of it
      lock.lock();
      io_waiting_ = false;
    }
  }
  if (stopping_) return false;
  tasks->swap(tasks_);
  for (auto& r : new_reads_) queued_reads_.push_back(std::move(r));
  new_reads_.clear();
  return true;
}

RaftNodeStatus RaftNode::GetStatus() const {
  std::lock_guard lock(mu_);
  return status_;
}

bool RaftNode::WaitForLeader(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] {
    return status_.leader != 0 || stopping_;
  }) && status_.leader != 0;
}

void RaftNode::Run() {
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  const auto tick = std::chrono::milliseconds(options_.heartbeat_ms);
  auto next_tick = Clock::now() + tick;
  std::map<uint64_t, int> read_age;  // ctx -> ticks without an answer
  while (true) {
    std::deque<Task> tasks;
    if (!WaitForWork(held_notices_.empty()
                         ? next_tick
                         : std::min(next_tick, notices_deadline_),
                     &tasks)) {
      break;
    }
    for (Task& t : tasks) t(true);
    auto now = Clock::now();
    if (!held_notices_.empty() && now >= notices_deadline_) {
      FlushCommitNotices();
    }
    if (now >= next_tick) {
      node_->Tick();
      next_tick += tick;
      // After a long stall (a paused process), don't tick in a burst.
      if (next_tick < now) next_tick = now + tick;
      for (auto& [ctx, round] : reads_in_flight_) {
        if (round.read_index != 0) continue;
        if (++read_age[ctx] >= kReadRetryTicks) {
          // Unanswered: queue its waiters for a fresh round.
          for (auto& w : round.waiters) queued_reads_.push_back(std::move(w));
          round.waiters.clear();
        }
      }
      std::erase_if(reads_in_flight_,
                    [](const auto& kv) { return kv.second.waiters.empty(); });
      std::erase_if(read_age, [this](const auto& kv) {
        return reads_in_flight_.count(kv.first) == 0;
      });
      RetryHeldProposals();
    }
    // At once when a leader is known; otherwise on each tick (above), which
    // times out the held proposals.
    if (node_->leader() != raft::kNone) RetryHeldProposals();
    StartReadBatch();
    while (node_->HasReady()) {
      HandleReady();
      // A round answered in that Ready lets the reads queued behind it go.
      StartReadBatch();
    }
    PublishStatus();
  }
  std::deque<Task> rest;
  {
    std::lock_guard lock(mu_);
    rest.swap(tasks_);
    for (auto& r : new_reads_) queued_reads_.push_back(std::move(r));
    new_reads_.clear();
  }
  for (Task& t : rest) t(false);
  FailAllReads(kStopped);
  for (HeldProposal& h : held_proposals_) h.done(kStopped);
  held_proposals_.clear();
  // A clean stop leaves the newest commit index on disk.
  if (has_unsynced_hs_) SaveDurably({});
}

void RaftNode::StartReadBatch() {
  if (queued_reads_.empty()) return;
  // One confirmation round at a time, as etcd's linearizableReadLoop: the
  // reads that arrive meanwhile wait and share the next round, so that a
  // loaded leader sends one heartbeat per round trip rather than one per
  // loop turn (each round costs a heartbeat to every follower and back).
  // An unanswered round is dropped after kReadRetryTicks or a leader
  // change (Run, HandleReady), so this never blocks for good.
  for (const auto& [ctx, round] : reads_in_flight_) {
    if (round.read_index == 0) return;
  }
  if (node_->leader() == raft::kNone) {
    for (auto& done : queued_reads_) {
      done(Status::Unavailable("etcdserver: no leader"));
    }
    queued_reads_.clear();
    return;
  }
  uint64_t ctx = next_read_ctx_++;
  PendingRead& round = reads_in_flight_[ctx];
  round.waiters = std::move(queued_reads_);
  queued_reads_.clear();
  node_->ReadIndex(ReadCtx(ctx));
}

void RaftNode::CompleteReads() {
  for (auto it = reads_in_flight_.begin(); it != reads_in_flight_.end();) {
    PendingRead& r = it->second;
    if (r.read_index == 0 || r.read_index > applied_) {
      ++it;
      continue;
    }
    for (auto& w : r.waiters) w(Status::OK());
    it = reads_in_flight_.erase(it);
  }
}

void RaftNode::FailAllReads(const Status& s) {
  for (auto& [ctx, r] : reads_in_flight_) {
    for (auto& w : r.waiters) w(s);
  }
  reads_in_flight_.clear();
  for (auto& done : queued_reads_) done(s);
  queued_reads_.clear();
}

void RaftNode::HandleReady() {
  raft::Ready rd = node_->GetReady();
  if (rd.soft_state && rd.soft_state->role != last_role_) {
    if (rd.soft_state->role == raft::StateRole::kLeader) {
      // etcd's raft logs "<id> became leader at term <term>".
      KEEL_LOG_INFO(fmt::format("{:x} became leader at term {}", options_.id,
                                node_->term()),
                    log::Id("local-member-id", options_.id),
                    log::F("term", node_->term()));
    }
    last_role_ = rd.soft_state->role;
  }
  if (rd.soft_state && rd.soft_state->lead != last_leader_) {
    if (rd.soft_state->lead == raft::kNone) {
      KEEL_LOG_WARN(fmt::format("raft.node: {:x} lost leader {:x} at term {}",
                                options_.id, last_leader_, node_->term()),
                    log::Id("local-member-id", options_.id),
                    log::Id("lost-leader-id", last_leader_),
                    log::F("term", node_->term()));
    } else {
      KEEL_LOG_INFO(
          fmt::format("raft.node: {:x} elected leader {:x} at term {}",
                      options_.id, rd.soft_state->lead, node_->term()),
          log::Id("local-member-id", options_.id),
          log::Id("leader-id", rd.soft_state->lead),
          log::F("term", node_->term()));
      // etcd counts a change to a (new) leader, not the loss of one.
      ServerMetrics::Get().leader_changes.Inc();
    }
    last_leader_ = rd.soft_state->lead;
    // Rounds not yet answered will not be: the core dropped them. Ask again.
    for (auto& [ctx, r] : reads_in_flight_) {
      if (r.read_index != 0) continue;
      for (auto& w : r.waiters) queued_reads_.push_back(std::move(w));
      r.waiters.clear();
    }
    std::erase_if(reads_in_flight_,
                  [](const auto& kv) { return kv.second.waiters.empty(); });
  }
  const bool leader = node_->role() == raft::StateRole::kLeader;
  if (!leader) {
    // A deposed leader's notices are of an old term.
    held_notices_.clear();
    follower_waits_.clear();
  }
  std::vector<raft::Message> after_apply;
  if (leader && !rd.messages.empty()) {
    // Not when a configuration change commits: applying it may remove a
    // peer from the transport, and a removed member learns of its removal
    // from this very commit index (it then stops itself).
    const bool conf_change =
        std::any_of(rd.committed_entries.begin(), rd.committed_entries.end(),
                    [](const raft::Entry& e) {
                      return e.type == raft::EntryType::kConfChange;
                    });
    if (conf_change) {
      FlushCommitNotices();
    } else {
      HoldCommitNotices(&rd.messages);
    }
    if (rd.entries.empty() && !rd.committed_entries.empty() && !conf_change) {
      // Nothing to write: this Ready commits. Its messages (the new commit
      // index, heartbeats) go once its entries are applied and their
      // clients answered, so that the peers' threads they wake (which on a
      // machine with few cores preempt this one or take the CPU the client
      // needs) don't delay the answers. Followers learn the commit index
      // one apply later. A Ready with entries to write sends at once, so
      // that the followers' syncs overlap ours.
      after_apply = std::move(rd.messages);
    } else {
      sender_->Send(std::move(rd.messages));
    }
    rd.messages.clear();
  }
  if (!leader && !rd.messages.empty()) {
    // A follower's forwarded proposals and read requests depend on nothing
    // this Ready persists: send them now rather than after the fdatasync of
    // the entries the leader sent meanwhile (under load every Ready of a
    // follower has some), which held each forwarded write for one more
    // disk sync. Acknowledgements and votes still wait (below).
    std::vector<raft::Message> now, after_sync;
    for (raft::Message& m : rd.messages) {
      (m.type == raft::MessageType::kProp ||
               m.type == raft::MessageType::kReadIndex
           ? now
           : after_sync)
          .push_back(std::move(m));
    }
    if (!now.empty()) sender_->Send(std::move(now));
    rd.messages = std::move(after_sync);
  }

  if (!rd.snapshot.IsEmpty()) {
    ServerMetrics::Get().snapshot_apply_in_progress.Set(1);
    KEEL_LOG_INFO(
        "applying snapshot", log::Id("local-member-id", options_.id),
        log::F("incoming-leader-snapshot-index", rd.snapshot.metadata.index),
        log::F("incoming-leader-snapshot-term", rd.snapshot.metadata.term));
    Status st = storage_->ApplySnapshot(rd.snapshot);
    KEEL_CHECK(st.ok() || st.code() == Status::Code::kSnapshotOutOfDate)
        << "persisting a snapshot failed: " << st.ToString();
    st = sm_->RestoreSnapshot(rd.snapshot);
    KEEL_CHECK(st.ok()) << "restoring the state machine from a snapshot: "
                        << st.ToString();
    applied_ = rd.snapshot.metadata.index;
    snapshot_index_ = applied_;
    conf_state_ = rd.snapshot.metadata.conf_state;
    ServerMetrics::Get().snapshot_apply_in_progress.Set(0);
    KEEL_LOG_INFO(
        "applied snapshot", log::Id("local-member-id", options_.id),
        log::F("incoming-leader-snapshot-index", rd.snapshot.metadata.index),
        log::F("incoming-leader-snapshot-term", rd.snapshot.metadata.term));
  }
  if (!rd.hard_state.IsEmpty()) {
    unsynced_hs_ = rd.hard_state;
    has_unsynced_hs_ = true;
  }
  // Like etcd's raft.MustSync: only new entries, a new term or a new vote
  // must be durable before anything depends on them. A hard state whose
  // commit index alone moved is kept back and written with the next batch
  // that must be synced (or at stop): a commit index is learned again from
  // the leader after a restart, and entries the store applied past the
  // persisted commit index are skipped on replay (StateMachine::Apply).
  // This saves one fdatasync per commit on every member.
  const bool must_sync =
      !rd.entries.empty() ||
      (has_unsynced_hs_ && (unsynced_hs_.term != synced_hs_.term ||
                            unsynced_hs_.vote != synced_hs_.vote));
  if (must_sync) SaveDurably(rd.entries);
  if (!leader && !rd.messages.empty()) {
    sender_->Send(std::move(rd.messages));
    // The acknowledgement woke the leader, and the kernel puts a thread
    // woken by a socket write on the writer's CPU: on a machine with few
    // cores the leader then waited for this apply to finish before it
    // could commit and answer. Yield first, so that it runs (a no-op when
    // nothing else waits for this CPU). With one write at a time the
    // committed entries here are the previous write's.
    if (!rd.committed_entries.empty()) std::this_thread::yield();
  }

  ApplyCommitted(rd.committed_entries);
  if (!after_apply.empty()) sender_->Send(std::move(after_apply));
  for (const raft::ReadState& rs : rd.read_states) {
    if (rs.request_ctx.size() != 8) continue;
    uint64_t ctx = DecodeFixed64(rs.request_ctx.data());
    auto it = reads_in_flight_.find(ctx);
    if (it != reads_in_flight_.end()) it->second.read_index = rs.index;
  }
  CompleteReads();
  node_->Advance(rd);
  MaybeSnapshot();
}

void RaftNode::HoldCommitNotices(std::vector<raft::Message>* msgs) {
  if (options_.commit_notice_delay.count() <= 0) return;
  const auto& progress = node_->raft().tracker().progress;
  size_t kept = 0;
  for (raft::Message& m : *msgs) {
    auto held = held_notices_.find(m.to);
    if (held != held_notices_.end() &&
        (m.type == raft::MessageType::kSnap ||
         ((m.type == raft::MessageType::kApp ||
           m.type == raft::MessageType::kHeartbeat) &&
          m.commit >= held->second.commit))) {
      held_notices_.erase(held);  // this one tells it as much
    }
    bool hold = m.type == raft::MessageType::kApp && m.entries.empty();
    if (hold) {
      // Only to a follower replicating (an append without entries then
      // means every entry has been sent to it): a probe waits for its
      // answer, and a snapshot's follower needs no commit index yet.
      auto pr = progress.find(m.to);
      hold = pr != progress.end() &&
             pr->second.state == raft::ProgressState::kReplicate;
    }
    if (hold) {
      auto w = follower_waits_.find(m.to);
      if (w != follower_waits_.end() && m.commit >= w->second) {
        follower_waits_.erase(w);  // its client waits for this: send now
        hold = false;
      }
    }
    if (hold) {
      if (held_notices_.empty()) {
        notices_deadline_ = Clock::now() + options_.commit_notice_delay;
      }
      held_notices_[m.to] = std::move(m);
      continue;
    }
    if (&(*msgs)[kept] != &m) (*msgs)[kept] = std::move(m);
    kept++;
  }
  msgs->resize(kept);
}

void RaftNode::FlushCommitNotices() {
  if (held_notices_.empty()) return;
  if (node_->role() != raft::StateRole::kLeader) {
    held_notices_.clear();  // of a term this member no longer leads
    return;
  }
  std::vector<raft::Message> msgs;
  msgs.reserve(held_notices_.size());
  for (auto& [to, m] : held_notices_) msgs.push_back(std::move(m));
  held_notices_.clear();
  sender_->Send(std::move(msgs));
}

void RaftNode::SaveDurably(const std::vector<raft::Entry>& entries) {
  auto lsn =
      storage_->Save(has_unsynced_hs_ ? &unsynced_hs_ : nullptr, entries);
  // A failed write or fdatasync leaves the page cache in an unknown
  // state: nothing we acknowledged may depend on it. Fatal by design.
  KEEL_CHECK(lsn.ok()) << "WAL write failed: " << lsn.status().ToString();
  Status st = storage_->WaitDurable(*lsn);
  KEEL_CHECK(st.ok()) << "WAL sync failed: " << st.ToString();
  if (has_unsynced_hs_) synced_hs_ = unsynced_hs_;
  has_unsynced_hs_ = false;
}

void RaftNode::ApplyCommitted(const std::vector<raft::Entry>& entries) {
  for (const raft::Entry& e : entries) {
    if (e.type == raft::EntryType::kConfChange) {
      raft::ConfChange cc;
      if (!raft::DecodeConfChange(e.data, &cc)) {
        spdlog::error("raft: undecodable configuration change at index {}",
                      e.index);
      } else if (sm_->AcceptConfChange(e, cc)) {
        conf_state_ = node_->ApplyConfChange(cc);
        sm_->ApplyConfChange(e, cc, conf_state_);
        for (const auto& ch : cc.changes) {
          if (ch.type == raft::ConfChangeType::kAddNode ||
              ch.type == raft::ConfChangeType::kAddLearnerNode) {
            force_snapshot_ = true;
          }
        }
      }
    } else {
      auto start = Clock::now();
      sm_->Apply(e);
      auto took = Clock::now() - start;
      if (took > kWarnApplyDuration) {
        ServerMetrics::Get().slow_apply.Inc();
        KEEL_LOG_WARN("apply request took too long", log::F("took", took),
                      log::F("expected-duration", kWarnApplyDuration),
                      log::F("index", e.index),
                      log::F("request-size", e.data.size()));
      }
    }
    applied_ = e.index;
  }
  if (!entries.empty()) sm_->ApplyBatchDone();
}

void RaftNode::MaybeSnapshot() {
  if (!force_snapshot_ && applied_ - snapshot_index_ < options_.snapshot_count)
    return;
  if (applied_ == snapshot_index_) {
    force_snapshot_ = false;
    return;
  }
  force_snapshot_ = false;
  auto start = Clock::now();
  Status st = sm_->Sync();
  KEEL_CHECK(st.ok()) << "state machine sync: " << st.ToString();
  auto snap = storage_->CreateSnapshot(applied_, &conf_state_,
                                       sm_->SnapshotData(applied_));
  if (!snap.ok()) {
    spdlog::warn("raft: snapshot at {} failed: {}", applied_,
                 snap.status().ToString());
    return;
  }
  snapshot_index_ = applied_;
  ServerMetrics::Get().snap_save_total_duration.Observe(
      std::chrono::duration<double>(Clock::now() - start).count());
  KEEL_LOG_INFO("saved snapshot", log::Id("local-member-id", options_.id),
                log::F("snapshot-index", applied_));
  if (applied_ > options_.snapshot_catchup_entries) {
    uint64_t compact = applied_ - options_.snapshot_catchup_entries;
    if (compact >= storage_->FirstIndex()) {
      st = storage_->Compact(compact);
      if (st.ok()) {
        KEEL_LOG_INFO("compacted Raft logs", log::F("compact-index", compact));
      } else {
        spdlog::warn("raft: compact to {}: {}", compact, st.ToString());
      }
    }
  }
}

void RaftNode::PublishStatus() {
  raft::NodeStatus ns = node_->GetStatus();
  bool leader_changed;
  {
    std::lock_guard lock(mu_);
    leader_changed = status_.leader != ns.soft_state.lead;
    status_.id = options_.id;
    status_.leader = ns.soft_state.lead;
    status_.role = ns.soft_state.role;
    status_.term = ns.hard_state.term;
    status_.commit = ns.hard_state.commit;
    status_.applied = applied_;
    const auto& learners = conf_state_.learners;
    status_.is_learner = std::find(learners.begin(), learners.end(),
                                   options_.id) != learners.end();
    status_.conf_state = conf_state_;
    status_.lead_transferee = ns.lead_transferee;
    status_.progress.clear();
    for (const auto& [id, p] : ns.progress) status_.progress[id] = p;
    leader_.store(status_.leader, std::memory_order_release);
    term_.store(status_.term, std::memory_order_release);
    is_learner_.store(status_.is_learner, std::memory_order_release);
  }
  if (leader_changed) cv_.notify_all();
  ServerMetrics& m = ServerMetrics::Get();
  m.has_leader.Set(ns.soft_state.lead != raft::kNone ? 1 : 0);
  m.is_leader.Set(ns.soft_state.role == raft::StateRole::kLeader ? 1 : 0);
  m.proposals_committed.Set(static_cast<double>(ns.hard_state.commit));
  m.proposals_applied.Set(static_cast<double>(applied_));
  const auto& learners = conf_state_.learners;
  m.is_learner.Set(std::find(learners.begin(), learners.end(), options_.id) !=
                           learners.end()
                       ? 1
                       : 0);
}

}  // namespace keel::server
