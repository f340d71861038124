#include "sim/sim_cluster.h"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "raft/codec.h"

namespace keel::sim {

using raft::ConfState;
using raft::Entry;
using raft::EntryType;
using raft::Message;
using raft::MessageType;
using raft::Ready;
using raft::StateRole;

// ---- Setup and members ----

SimCluster::SimCluster(uint64_t seed, const SimOptions& options)
    : options_(options),
      trace_capacity_(options.trace_capacity),
      live_(options.live_trace),
      rng_(seed),
      p_(DrawParams(seed, &rng_)),
      net_rng_(rng_.Next()),
      net_(&net_rng_) {}

void SimCluster::Log(std::string event) {
  std::string line = fmt::format("[t{} s{}] {}", tick_, step_, event);
  if (live_ != nullptr) *live_ << line << '\n';
  if (trace_capacity_ == 0) return;
  if (trace_.size() >= trace_capacity_) trace_.pop_front();
  trace_.push_back(std::move(line));
}

SimNode& SimCluster::NewMember(NodeId id) {
  auto n = std::make_unique<SimNode>();
  n->id = id;
  n->disk = std::make_unique<SimDisk>(DiskOptions());
  SimNode& ref = *n;
  nodes_[id] = std::move(n);
  next_id_ = std::max(next_id_, id + 1);
  return ref;
}

SimDiskOptions SimCluster::DiskOptions() const {
  SimDiskOptions o;
  o.wal = p_.wal_disk;
  o.segment_size = p_.wal_segment_size;
  return o;
}

void SimCluster::Bootstrap() {
  SimNetwork::Faults f;
  f.drop_rate = p_.drop_rate;
  f.dup_rate = p_.dup_rate;
  f.delay_min_steps = p_.delay_min_steps;
  f.delay_max_steps = p_.delay_max_steps;
  f.fifo = p_.fifo_links;
  net_.SetFaults(f);

  ConfState cs;
  for (int i = 1; i <= p_.cluster_size; i++) cs.voters.push_back(i);
  SimStateMachine empty;
  empty.applied = 1;
  checker_.OnSnapshot(raft::kNone, 1, 1, empty.hash, 1);
  for (int i = 1; i <= p_.cluster_size; i++) {
    SimNode& n = NewMember(i);
    raft::Snapshot snap;
    snap.data = empty.Encode();
    snap.metadata.conf_state = cs;
    snap.metadata.index = 1;
    snap.metadata.term = 1;
    KEEL_CHECK(n.disk->ApplySnapshot(std::move(snap)).ok()) << "";
    raft::HardState hs{1, raft::kNone, 1};
    KEEL_CHECK(n.disk->Save(&hs, {}).ok()) << "";
    n.commit_recorded = 1;
    Start(n);
  }
  Log(fmt::format("bootstrap {}", p_.Describe()));
}

// Builds the volatile half of a member from its disk, as a process does
// when it starts: state machine from the latest snapshot, then the core
// replays the committed entries after it.
void SimCluster::Start(SimNode& n) {
  if (n.incarnation > 0) {
    // A new process recovers the disk once more (a WAL's recovery must
    // also survive its own output).
    Status s = n.disk->Reopen();
    if (!s.ok()) {
      checker_.Fail(fmt::format("member {} cannot recover its WAL: {}", n.id,
                                s.ToString()));
      return;
    }
  }
  if (n.disk->wal()) {
    // FINDINGS.md §7 (fixed in DiskStorage recovery): a crash between a
    // snapshot's marker and the Ready's hard state must not recover a commit
    // index below the snapshot.
    raft::HardState hs = n.disk->GetHardState();
    raft::Index snap_index = n.disk->FirstIndex() - 1;
    if (hs.commit < snap_index) {
      stats_.commit_below_snapshot++;
      checker_.Fail(
          fmt::format("member {}: recovered commit {} below its "
                      "snapshot {}",
                      n.id, hs.commit, snap_index));
      return;
    }
  }
  auto snap = n.disk->storage().GetSnapshot();
  KEEL_CHECK(snap.ok()) << "";
  if (!SimStateMachine::Decode(snap->data, &n.sm)) {
    checker_.Fail(fmt::format("member {}: undecodable snapshot", n.id));
    return;
  }
  n.sm.applied = snap->metadata.index;
  n.conf = snap->metadata.conf_state;
  checker_.OnRestart(n.id, n.disk->storage());
  // A batch torn by a power cut may have survived whole, hard state and
  // all: its commit index is news to the checker.
  if (checker_.ok()) RecordCommits(n);
  if (!checker_.ok()) return;
  n.rng = std::make_unique<SeededRng>(rng_.Next());
  raft::Config c;
  c.id = n.id;
  c.election_tick = p_.election_tick;
  c.heartbeat_tick = p_.heartbeat_tick;
  c.storage = n.disk->raft_storage();
  c.rng = n.rng.get();
  c.applied = n.sm.applied;
  c.max_size_per_msg = p_.max_size_per_msg;
  c.max_inflight_msgs = p_.max_inflight_msgs;
  c.max_uncommitted_entries_size = p_.max_uncommitted_size;
  c.check_quorum = p_.check_quorum;
  c.pre_vote = p_.pre_vote;
  c.read_only_option = p_.lease_reads ? raft::ReadOnlyOption::kLeaseBased
                                      : raft::ReadOnlyOption::kSafe;
  c.disable_proposal_forwarding = p_.disable_forwarding;
  auto raw = raft::RawNode::Create(c);
  if (!raw.ok()) {
    checker_.Fail(fmt::format("member {} failed to start: {}", n.id,
                              raw.status().ToString()));
    return;
  }
  n.raw = std::move(*raw);
  n.leader_checked_term = 0;
  n.incarnation++;
  if (tracing()) {
    Log(fmt::format("start member {} (life {}) applied={} hs.term={} {}", n.id,
                    n.incarnation, n.sm.applied, n.disk->GetHardState().term,
                    DescribeConf(n.conf)));
  }
}

void SimCluster::Crash(SimNode& n, std::string_view why) {
  if (!n.alive()) return;
  if (tracing()) Log(fmt::format("CRASH member {} ({})", n.id, why));
  stats_.crashes++;
  n.raw.reset();
  n.rng.reset();
  n.sm = SimStateMachine();
  n.conf = ConfState();
  n.snapshot_lacks_member = false;
  n.waiting_reads.clear();
  n.backlog.clear();
  n.paused_until_tick = 0;
  n.unreachable_reports.clear();
  n.failed_snapshot_reports.clear();
  // With a WAL, the power goes too: what was not synced is lost or torn.
  Status s = n.disk->Crash(p_.torn_writes ? &rng_ : nullptr);
  if (!s.ok()) {
    checker_.Fail(
        fmt::format("member {}: the WAL does not recover after a "
                    "crash: {}",
                    n.id, s.ToString()));
  }
}

void SimCluster::DiedInIo(SimNode& n, const char* during) {
  stats_.io_crashes++;
  Crash(n, fmt::format("died in file IO while {}", during));
}

void SimCluster::Stop(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || it->second->stopped) return;
  SimNode& n = *it->second;
  if (tracing())
    Log(fmt::format("STOP member {}: removed from the cluster", id));
  stats_.members_removed++;
  n.raw.reset();
  n.rng.reset();
  n.waiting_reads.clear();
  n.stopped = true;
}

std::vector<SimNode*> SimCluster::LiveMembers() {
  std::vector<SimNode*> out;
  for (auto& [id, n] : nodes_) {
    if (n->alive() && !n->paused(tick_)) out.push_back(n.get());
  }
  return out;
}

SimNode* SimCluster::FindLeader() {
  SimNode* best = nullptr;
  for (auto& [id, n] : nodes_) {
    if (!n->alive() || n->paused(tick_) ||
        n->raw->role() != StateRole::kLeader) {
      continue;
    }
    if (best == nullptr || n->raw->term() > best->raw->term()) best = n.get();
  }
  return best;
}

// ---- The step loop ----

void SimCluster::StepOnce() {
  step_++;
  // A member back from a pause first handles what arrived meanwhile.
  for (auto& [id, n] : nodes_) {
    if (n->backlog.empty() || n->paused(tick_)) continue;
    if (tracing()) Log(fmt::format("member {} resumes", id));
    std::vector<Envelope> backlog = std::move(n->backlog);
    n->backlog.clear();
    for (Envelope& env : backlog) Deliver(std::move(env));
  }
  Envelope env;
  while (checker_.ok() && net_.PopDue(step_, &env)) {
    auto to = nodes_.find(env.msg.to);
    if (to != nodes_.end() && to->second->alive() &&
        to->second->paused(tick_)) {
      to->second->backlog.push_back(std::move(env));
      continue;
    }
    Deliver(std::move(env));
  }
  if (step_ % p_.steps_per_tick == 0) {
    tick_++;
    // Uniform ticks: every running member's clock advances together.
    for (auto& [id, n] : nodes_) {
      if (n->alive() && !n->paused(tick_)) n->raw->Tick();
    }
    PerTickActions();
  }
  for (auto& [id, n] : nodes_) {
    if (!checker_.ok()) return;
    if (n->alive() && !n->paused(tick_)) HandleReadies(*n);
  }
  for (NodeId id : to_stop_) Stop(id);
  to_stop_.clear();
}

void SimCluster::Deliver(Envelope env) {
  Message& m = env.msg;
  auto to = nodes_.find(m.to);
  auto from = nodes_.find(m.from);
  bool from_removed = from != nodes_.end() && from->second->stopped;
  bool ok = to != nodes_.end() && to->second->alive() && !from_removed &&
            !net_.IsCut(m.from, m.to);
  // The sending transport learns whether a snapshot got through.
  SimNode* sender = from != nodes_.end() && from->second->alive() &&
                            from->second->incarnation == env.sender_incarnation
                        ? from->second.get()
                        : nullptr;
  if (!ok) {
    if (tracing()) {
      std::ostringstream os;
      os << m;
      Log("lost " + os.str());
    }
    if (m.type == MessageType::kSnap && sender != nullptr) {
      sender->raw->ReportSnapshot(m.to, /*failed=*/true);
    }
    return;
  }
  if (tracing()) {
    std::ostringstream os;
    os << m;
    Log("deliver " + os.str());
  }
  stats_.messages++;
  MessageType type = m.type;
  NodeId dest = m.to;
  Status s = to->second->raw->Step(std::move(m));
  if (!s.ok() && tracing()) Log("  step: " + s.ToString());
  if (type == MessageType::kSnap && sender != nullptr) {
    sender->raw->ReportSnapshot(dest, /*failed=*/false);
  }
}

void SimCluster::HandleReadies(SimNode& n) {
  // Bounded: a core that never stops producing Readies is a bug too.
  for (int i = 0; i < 1000; i++) {
    if (!n.alive() || !checker_.ok()) return;
    if (!n.raw->HasReady()) {
      AfterReadies(n);
      return;
    }
    if (!HandleReady(n)) return;
  }
  checker_.Fail(fmt::format("member {} produced 1000 Readies in a row", n.id));
}

bool SimCluster::HandleReady(SimNode& n) {
  Ready rd = n.raw->GetReady();
  if (rd.soft_state && tracing()) {
    Log(fmt::format("member {} is now {} (leader {}) term {}", n.id,
                    raft::StateRoleName(rd.soft_state->role),
                    rd.soft_state->lead, n.raw->term()));
  }
  bool leader = n.raw->role() == StateRole::kLeader;
  bool early_send = options_.inject == Injection::kEarlySend;
  double crash_rate = early_send ? 0.05 : p_.crash_in_ready_rate;
  if (faults_on_ && crash_rate > 0 && rng_.Chance(crash_rate)) {
    switch (rng_.Uniform(4)) {
      case 0:
        if (leader || early_send) {
          // A leader may send before its own write is durable (thesis
          // §10.2.1); crash after sending, before the write.
          Send(n, rd.messages);
          Crash(n, "leader, after send, before persist");
          return false;
        }
        [[fallthrough]];
      case 1:
        if (p_.torn_writes && rd.snapshot.IsEmpty() && !rd.entries.empty() &&
            n.disk->wal()) {
          // The real thing: the Ready's whole WAL batch (entries, then the
          // hard state) is submitted, and the power cut keeps a sector
          // prefix of what reached the page cache.
          checker_.BeforeAppend(n.id, n.disk->storage(), rd.entries);
          if (!rd.hard_state.IsEmpty()) {
            checker_.OnHardState(n.id, n.disk->GetHardState(), rd.hard_state);
          }
          if (!checker_.ok()) return false;
          n.disk->SaveUnsynced(
              rd.hard_state.IsEmpty() ? nullptr : &rd.hard_state, rd.entries);
          Crash(n, "torn write: the Ready's WAL batch, unsynced");
          return false;
        }
        if (p_.torn_writes && rd.snapshot.IsEmpty() && !rd.entries.empty()) {
          // A torn WAL tail: the entries are written before the hard state,
          // and only a prefix of them survives.
          Ready torn;
          torn.entries.assign(
              rd.entries.begin(),
              rd.entries.begin() + rng_.Range(0, rd.entries.size()));
          Persist(n, torn);
          Crash(n, "torn write: a prefix of the entries, no hard state");
          return false;
        }
        [[fallthrough]];
      case 2:
        Crash(n, "before persisting a Ready");
        return false;
      default:
        if (!Persist(n, rd)) return false;
        Send(n, rd.messages);
        Crash(n, "after persisting, before applying");
        return false;
    }
  }
  if (!Persist(n, rd) || !checker_.ok()) return false;
  Send(n, rd.messages);
  if (!rd.snapshot.IsEmpty()) InstallSnapshot(n, rd.snapshot);
  for (const Entry& e : rd.committed_entries) {
    if (!checker_.ok()) return false;
    ApplyEntry(n, e);
  }
  for (const raft::ReadState& rs : rd.read_states) OnReadState(n, rs);
  n.raw->Advance(rd);
  FlushReports(n);
  MaybeSnapshot(n);
  return checker_.ok();
}

bool SimCluster::Persist(SimNode& n, const Ready& rd) {
  SimDisk& disk = *n.disk;
  if (!rd.snapshot.IsEmpty()) {
    Status s = disk.ApplySnapshot(rd.snapshot);
    if (!s.ok() && disk.dead()) {
      DiedInIo(n, "persisting a snapshot");
      return false;
    }
    if (!s.ok()) {
      checker_.Fail(
          fmt::format("member {} was handed snapshot {} to persist "
                      "but has {}: {}",
                      n.id, rd.snapshot.metadata.index, disk.FirstIndex() - 1,
                      s.ToString()));
      return false;
    }
    n.commit_recorded = std::max(n.commit_recorded, rd.snapshot.metadata.index);
  }
  const raft::HardState* hs =
      rd.hard_state.IsEmpty() ? nullptr : &rd.hard_state;
  if (rd.entries.empty() && hs == nullptr) return true;
  if (!rd.entries.empty()) {
    checker_.BeforeAppend(n.id, disk.storage(), rd.entries);
    if (!checker_.ok()) return false;
  }
  if (hs != nullptr) {
    checker_.OnHardState(n.id, disk.GetHardState(), *hs);
    if (!checker_.ok()) return false;
  }
  // One write, entries then hard state, as a WAL batch.
  Status s = disk.Save(hs, rd.entries);
  if (!s.ok() && disk.dead()) {
    DiedInIo(n, "persisting a Ready");
    return false;
  }
  if (!s.ok()) {
    checker_.Fail(fmt::format("member {} failed to persist a Ready: {}", n.id,
                              s.ToString()));
    return false;
  }
  if (!rd.entries.empty()) {
    checker_.AfterAppend(n.id, disk.storage(), rd.entries);
  }
  if (hs != nullptr) RecordCommits(n);
  return checker_.ok();
}

// Entries up to the persisted commit index are committed: feeding them to
// the checker as soon as they are known catches a lost committed entry even
// before anyone applies it.
void SimCluster::RecordCommits(SimNode& n) {
  const raft::Storage& st = n.disk->storage();
  raft::Index commit = n.disk->GetHardState().commit;
  if (commit <= n.commit_recorded) return;
  if (commit > st.LastIndex()) {
    checker_.Fail(
        fmt::format("member {} persisted commit index {} beyond its "
                    "persisted log (last index {})",
                    n.id, commit, st.LastIndex()));
    return;
  }
  raft::Index lo = std::max(n.commit_recorded + 1, st.FirstIndex());
  if (lo <= commit) {
    auto ents = st.Entries(lo, commit + 1, UINT64_MAX);
    KEEL_CHECK(ents.ok()) << ents.status().ToString();
    Term seen_in = n.disk->GetHardState().term;
    for (const Entry& e : *ents) checker_.OnCommitted(n.id, e, seen_in);
  }
  n.commit_recorded = commit;
}

void SimCluster::Send(SimNode& n, const std::vector<Message>& msgs) {
  for (const Message& m : msgs) {
    if (tracing()) {
      std::ostringstream os;
      os << m;
      Log("send " + os.str());
    }
    auto r = net_.Send(m, n.incarnation, step_);
    if (r == SimNetwork::SendResult::kQueued) continue;
    if (m.type == MessageType::kSnap) n.failed_snapshot_reports.push_back(m.to);
    if (r == SimNetwork::SendResult::kCut &&
        rng_.Chance(p_.unreachable_report_rate)) {
      n.unreachable_reports.push_back(m.to);
    }
  }
}

void SimCluster::FlushReports(SimNode& n) {
  for (NodeId id : n.failed_snapshot_reports) n.raw->ReportSnapshot(id, true);
  for (NodeId id : n.unreachable_reports) n.raw->ReportUnreachable(id);
  n.failed_snapshot_reports.clear();
  n.unreachable_reports.clear();
}

void SimCluster::AfterReadies(SimNode& n) {
  ServeReads(n);
  if (n.raw->role() != StateRole::kLeader) return;
  Term term = n.raw->term();
  checker_.OnLeader(n.id, term);
  if (n.leader_checked_term != term) {
    n.leader_checked_term = term;
    stats_.leaders++;
    checker_.OnNewLeader(n.id, term, n.disk->storage());
  }
}

void SimCluster::CheckAllLogs() {
  std::map<NodeId, const raft::Storage*> logs;
  for (auto& [id, n] : nodes_) logs[id] = &n->disk->storage();
  checker_.CheckLogs(logs);
}

std::string SimCluster::DescribeState() {
  std::string s =
      fmt::format("tick {} step {}; in flight {}; cuts: {}\n", tick_, step_,
                  net_.in_flight(), net_.DescribeCuts());
  for (auto& [id, n] : nodes_) {
    const SimDisk& st = *n->disk;
    raft::HardState hs = st.GetHardState();
    s += fmt::format(
        "  member {}: {} disk[hs term={} vote={} commit={}; log "
        "{}..{}; {}]",
        id,
        n->stopped   ? "stopped"
        : n->alive() ? "up"
                     : "down",
        hs.term, hs.vote, hs.commit, st.FirstIndex(), st.LastIndex(),
        st.Describe());
    if (n->alive()) {
      s += fmt::format(" {} term={} lead={} applied={} {}",
                       raft::StateRoleName(n->raw->role()), n->raw->term(),
                       n->raw->leader(), n->sm.applied, DescribeConf(n->conf));
    }
    s += '\n';
  }
  return s;
}

}  // namespace keel::sim
