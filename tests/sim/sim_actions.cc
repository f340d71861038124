// The simulator's faults, workload and liveness phase (SimCluster's second
// half; the step loop and Ready handling are in sim_cluster.cc).

#include <fmt/format.h>

#include <algorithm>

#include "sim/sim_cluster.h"

namespace keel::sim {

using raft::ConfChange;
using raft::ConfChangeSingle;
using raft::ConfChangeTransition;
using raft::ConfChangeType;
using raft::ConfState;

namespace {

template <typename T>
const T& Pick(Rng* rng, const std::vector<T>& v) {
  return v[rng->Uniform(v.size())];
}

std::string Describe(const ConfChange& cc) {
  static const char* kTypes[] = {"add", "remove", "update", "add-learner"};
  static const char* kTransitions[] = {"auto", "joint-implicit",
                                       "joint-explicit"};
  if (cc.changes.empty()) return "leave-joint";
  std::string s = kTransitions[static_cast<int>(cc.transition)];
  for (const ConfChangeSingle& c : cc.changes) {
    s += fmt::format(" {}({})", kTypes[static_cast<int>(c.type)], c.node_id);
  }
  return s;
}

}  // namespace

void SimCluster::PerTickActions() {
  if (faults_on_) {
    NetworkFaults();
    ProcessFaults();
    if (p_.conf_change_rate > 0 && rng_.Chance(p_.conf_change_rate)) {
      ChangeMembership();
    }
    if (p_.transfer_rate > 0 && rng_.Chance(p_.transfer_rate)) {
      TransferLeadership();
    }
    ClientWork();
  }
  ExpireRequests();
  if (tick_ % 64 == 0) CheckAllLogs();
}

void SimCluster::NetworkFaults() {
  if (net_.HasCuts()) {
    if (rng_.Chance(p_.partition_heal_rate)) {
      net_.HealLinks();
      if (tracing()) Log("heal partition");
    }
    return;
  }
  if (p_.partition_rate == 0 || !rng_.Chance(p_.partition_rate)) return;
  std::vector<NodeId> ids;
  for (auto& [id, n] : nodes_) {
    if (!n->stopped) ids.push_back(id);
  }
  if (ids.size() < 2) return;
  NodeId x = Pick(&rng_, ids);
  std::vector<NodeId> others;
  for (NodeId id : ids) {
    if (id != x) others.push_back(id);
  }
  switch (rng_.Uniform(4)) {
    case 0:  // isolate one member
      net_.Partition({x}, others);
      break;
    case 1: {  // split in two
      std::vector<NodeId> shuffled = ids;
      for (size_t i = shuffled.size() - 1; i > 0; i--) {
        std::swap(shuffled[i], shuffled[rng_.Uniform(i + 1)]);
      }
      size_t k = 1 + rng_.Uniform(shuffled.size() / 2);
      net_.Partition({shuffled.begin(), shuffled.begin() + k},
                     {shuffled.begin() + k, shuffled.end()});
      break;
    }
    case 2:  // asymmetric: x can send but not hear, or hear but not send
      for (NodeId y : others) {
        if (rng_.Chance(0.5)) {
          net_.Cut(x, y);
        } else {
          net_.Cut(y, x);
        }
      }
      break;
    default: {  // a few one-way links
      size_t k = 1 + rng_.Uniform(ids.size());
      for (size_t i = 0; i < k; i++) {
        NodeId a = Pick(&rng_, ids), b = Pick(&rng_, ids);
        if (a != b) net_.Cut(a, b);
      }
    }
  }
  if (tracing()) Log("PARTITION " + net_.DescribeCuts());
}

void SimCluster::ProcessFaults() {
  if (p_.crash_rate > 0 && rng_.Chance(p_.crash_rate)) {
    std::vector<SimNode*> live = LiveMembers();
    if (!live.empty()) Crash(*Pick(&rng_, live), "fault");
  }
  if (p_.io_crash_rate > 0 && rng_.Chance(p_.io_crash_rate)) {
    std::vector<SimNode*> live = LiveMembers();
    if (!live.empty()) {
      // The process will die at one of its next file operations: inside a
      // batch's write or sync, a segment rollover, a snapshot, a purge.
      SimNode& n = *Pick(&rng_, live);
      uint64_t ops = rng_.Range(1, 12);
      n.disk->ArmIoCrash(ops);
      if (tracing()) {
        Log(
            fmt::format("ARM member {} to die at its file operation {} from "
                        "now",
                        n.id, ops));
      }
    }
  }
  if (p_.pause_rate > 0 && rng_.Chance(p_.pause_rate)) {
    std::vector<SimNode*> live = LiveMembers();
    if (!live.empty()) {
      SimNode& n = *Pick(&rng_, live);
      n.paused_until_tick = tick_ + rng_.Range(1, p_.pause_max_ticks);
      stats_.pauses++;
      if (tracing()) {
        Log(fmt::format("PAUSE member {} until tick {}", n.id,
                        n.paused_until_tick));
      }
    }
  }
  for (auto& [id, n] : nodes_) {
    if (n->alive() || n->stopped || !rng_.Chance(p_.restart_rate)) continue;
    if (options_.inject == Injection::kAmnesia) {
      // A disk that lost its log but kept term and vote (say, the log lived
      // on a different device): what Raft cannot survive, and what the
      // checks, not the core, must notice.
      Log(fmt::format("INJECT member {} restarts with its log wiped", id));
      auto fresh = std::make_unique<SimDisk>(DiskOptions());
      raft::HardState hs = n->disk->GetHardState();
      if (id <= static_cast<NodeId>(p_.cluster_size)) {
        raft::Snapshot boot;
        boot.metadata.index = 1;
        boot.metadata.term = 1;
        for (int i = 1; i <= p_.cluster_size; i++) {
          boot.metadata.conf_state.voters.push_back(i);
        }
        SimStateMachine empty;
        empty.applied = 1;
        boot.data = empty.Encode();
        KEEL_CHECK(fresh->ApplySnapshot(boot).ok()) << "";
        hs.commit = 1;
      } else {
        hs.commit = 0;
      }
      KEEL_CHECK(fresh->Save(&hs, {}).ok()) << "";
      n->disk = std::move(fresh);
      n->commit_recorded = hs.commit;
    }
    Start(*n);
  }
}

void SimCluster::ClientWork() {
  std::vector<SimNode*> live = LiveMembers();
  if (live.empty()) return;
  double rate = p_.propose_rate;
  while (rng_.Chance(rate)) {
    Propose(*Pick(&rng_, live));
    rate /= 2;
  }
  if (p_.read_rate > 0 && rng_.Chance(p_.read_rate)) {
    IssueRead(*Pick(&rng_, live));
  }
}

uint64_t SimCluster::Propose(SimNode& n) {
  uint64_t id = next_write_++;
  std::string data = fmt::format("w{}:k{}", id, rng_.Uniform(8));
  stats_.proposals++;
  Status s = n.raw->Propose(data);
  if (tracing()) {
    Log(fmt::format("propose {} on member {}: {}", data, n.id, s.ToString()));
  }
  if (!s.ok()) {
    // Reported failed to the client at once.
    stats_.proposals_refused++;
    return 0;
  }
  proposals_[id] = Proposal{n.id, tick_, 0, false};
  pending_writes_.push_back(id);
  return id;
}

void SimCluster::IssueRead(SimNode& n) {
  std::string ctx = fmt::format("r{}", next_read_++);
  // Everything applied anywhere is committed and may have been
  // acknowledged to some client: the read must see at least that much.
  reads_[ctx] = Read{n.id, n.incarnation, max_applied_, tick_, false};
  stats_.reads++;
  if (tracing()) {
    Log(fmt::format("read {} on member {} (needs >= {})", ctx, n.id,
                    max_applied_));
  }
  if (options_.inject == Injection::kStaleRead) {
    OnReadState(n, raft::ReadState{n.sm.applied, ctx});
    return;
  }
  n.raw->ReadIndex(ctx);
}

void SimCluster::ExpireRequests() {
  // A client gives up on a write after a while: "reported failed", outcome
  // unknown (it may still commit, which is fine).
  uint64_t timeout = 10 * static_cast<uint64_t>(p_.election_tick);
  while (!pending_writes_.empty()) {
    Proposal& pr = proposals_[pending_writes_.front()];
    if (pr.tick + timeout > tick_) break;
    if (pr.applied_index == 0) {
      pr.timed_out = true;
      stats_.proposals_timed_out++;
    }
    pending_writes_.pop_front();
  }
}

void SimCluster::ChangeMembership() {
  SimNode* l = FindLeader();
  if (l == nullptr) return;
  ConfState cs = l->raw->GetStatus().conf_state;
  ConfChange cc;
  if (!cs.voters_outgoing.empty()) {
    if (cs.auto_leave) return;  // the core leaves by itself
    // Leave the joint configuration: an empty change.
  } else {
    const std::vector<NodeId>& voters = cs.voters;
    const std::vector<NodeId>& learners = cs.learners;
    bool can_add = next_id_ <= static_cast<NodeId>(p_.max_node_ids);
    // Never go below 3 voters: the cluster must stay able to make progress
    // with one member down.
    std::vector<int> options;
    if (can_add) options.insert(options.end(), {0, 1});
    if (!learners.empty()) options.insert(options.end(), {2, 4});
    if (voters.size() >= 4) options.insert(options.end(), {3, 6});
    if (voters.size() >= 3 && (can_add || !learners.empty())) {
      options.push_back(5);
    }
    if (options.empty()) return;
    switch (Pick(&rng_, options)) {
      case 0:
        cc.changes.push_back({ConfChangeType::kAddLearnerNode, next_id_++});
        break;
      case 1:
        cc.changes.push_back({ConfChangeType::kAddNode, next_id_++});
        break;
      case 2:  // promote a learner
        cc.changes.push_back({ConfChangeType::kAddNode, Pick(&rng_, learners)});
        break;
      case 3:
        cc.changes.push_back(
            {ConfChangeType::kRemoveNode, Pick(&rng_, voters)});
        break;
      case 4:
        cc.changes.push_back(
            {ConfChangeType::kRemoveNode, Pick(&rng_, learners)});
        break;
      case 5: {  // replace a voter: needs joint consensus
        NodeId in = !learners.empty() && (!can_add || rng_.Chance(0.5))
                        ? Pick(&rng_, learners)
                        : next_id_++;
        cc.changes.push_back({ConfChangeType::kAddNode, in});
        cc.changes.push_back(
            {ConfChangeType::kRemoveNode, Pick(&rng_, voters)});
        break;
      }
      default:  // demote a voter to learner
        cc.changes.push_back(
            {ConfChangeType::kAddLearnerNode, Pick(&rng_, voters)});
    }
    cc.transition = static_cast<ConfChangeTransition>(rng_.Uniform(3));
  }
  // Mostly at the leader; sometimes at a follower, which forwards it.
  SimNode* target = l;
  if (rng_.Chance(0.3)) target = Pick(&rng_, LiveMembers());
  Status s = target->raw->ProposeConfChange(cc);
  stats_.conf_changes_proposed++;
  if (tracing()) {
    Log(fmt::format("propose conf change {} on member {}: {}", Describe(cc),
                    target->id, s.ToString()));
  }
}

void SimCluster::TransferLeadership() {
  SimNode* l = FindLeader();
  if (l == nullptr) return;
  ConfState cs = l->raw->GetStatus().conf_state;
  if (cs.voters.empty()) return;
  NodeId to = Pick(&rng_, cs.voters);
  SimNode* target = rng_.Chance(0.8) ? l : Pick(&rng_, LiveMembers());
  stats_.transfers++;
  if (tracing()) {
    Log(fmt::format("transfer leadership {} -> {} (asked member {})", l->id, to,
                    target->id));
  }
  target->raw->TransferLeader(to);
}

// ---- Liveness ----

void SimCluster::Heal() {
  faults_on_ = false;
  net_.HealLinks();
  SimNetwork::Faults f = net_.faults();
  f.drop_rate = 0;
  f.dup_rate = 0;
  net_.SetFaults(f);
  if (tracing()) Log("HEAL: no more faults; restarting every crashed member");
  for (auto& [id, n] : nodes_) {
    n->paused_until_tick = 0;
    n->disk->DisarmIoCrash();
    if (!n->alive() && !n->stopped) Start(*n);
  }
}

bool SimCluster::Converged(std::string* why) {
  SimNode* l = FindLeader();
  if (l == nullptr) {
    *why = "no leader";
    return false;
  }
  ConfState cs = l->raw->GetStatus().conf_state;
  uint64_t retry = 2 * static_cast<uint64_t>(p_.election_tick);
  if (!cs.voters_outgoing.empty()) {
    if (!cs.auto_leave && tick_ % retry == 0) {
      Status s = l->raw->ProposeConfChange(ConfChange{});
      if (tracing()) Log("liveness: leave joint config: " + s.ToString());
    }
    *why = "still in a joint configuration";
    return false;
  }
  std::vector<NodeId> members = cs.voters;
  members.insert(members.end(), cs.learners.begin(), cs.learners.end());
  // A fresh write through the leader proves the cluster can commit.
  if (marker_write_ == 0 || (proposals_[marker_write_].applied_index == 0 &&
                             tick_ >= marker_tick_ + retry)) {
    marker_tick_ = tick_;
    uint64_t id = Propose(*l);
    if (id != 0) marker_write_ = id;
  }
  if (marker_write_ == 0 || proposals_[marker_write_].applied_index == 0) {
    *why = "the liveness write is not committed";
    return false;
  }
  raft::Index marker_index = proposals_[marker_write_].applied_index;
  if (l->sm.applied < max_applied_ ||
      l->sm.applied != l->disk->GetHardState().commit) {
    *why = fmt::format("leader {} applied {} (commit {}, max applied {})",
                       l->id, l->sm.applied, l->disk->GetHardState().commit,
                       max_applied_);
    return false;
  }
  for (NodeId id : members) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || !it->second->alive()) {
      *why = fmt::format("member {} of the configuration is not running", id);
      return false;
    }
    SimNode& n = *it->second;
    if (n.raw->leader() != l->id || n.raw->term() != l->raw->term()) {
      *why =
          fmt::format("member {} follows {} in term {}, not {} in term {}", id,
                      n.raw->leader(), n.raw->term(), l->id, l->raw->term());
      return false;
    }
    if (n.sm.applied != l->sm.applied || n.sm.hash != l->sm.hash ||
        n.sm.applied < marker_index) {
      *why = fmt::format("member {} applied {}, leader {} applied {}", id,
                         n.sm.applied, l->id, l->sm.applied);
      return false;
    }
  }
  return true;
}

void SimCluster::RunLiveness() {
  Heal();
  uint64_t start = tick_;
  // The bound grows with the backlog left by the faulty phase: with the
  // smallest flow-control windows (one entry per message, one or two
  // messages in flight) replication moves about one entry per tick.
  raft::Index last = 0, commit = UINT64_MAX;
  for (auto& [id, n] : nodes_) {
    if (n->stopped) continue;
    last = std::max(last, n->disk->LastIndex());
    commit = std::min(commit, n->disk->GetHardState().commit);
  }
  uint64_t backlog = last > commit ? last - commit : 0;
  uint64_t bound = static_cast<uint64_t>(p_.liveness_bound_ticks) + 2 * backlog;
  std::string why = "not checked";
  while (checker_.ok()) {
    StepOnce();
    if (step_ % p_.steps_per_tick != 0) continue;
    if (Converged(&why)) {
      // Every write acknowledged to a client (applied somewhere) is now
      // applied on every member of the configuration.
      raft::Index applied = FindLeader()->sm.applied;
      for (const auto& [id, pr] : proposals_) {
        if (pr.applied_index > applied) {
          checker_.Fail(
              fmt::format("acknowledged write w{} at index {} is "
                          "missing after convergence at {}",
                          id, pr.applied_index, applied));
          return;
        }
      }
      stats_.liveness_ticks = tick_ - start;
      if (tracing()) Log("converged");
      return;
    }
    if (tick_ - start > bound) {
      checker_.Fail(fmt::format(
          "liveness: no convergence within {} ticks after healing (backlog "
          "{} entries): {}",
          bound, backlog, why));
    }
  }
}

SimResult SimCluster::Run() {
  Bootstrap();
  while (checker_.ok() && tick_ < static_cast<uint64_t>(p_.fault_ticks)) {
    StepOnce();
  }
  if (checker_.ok()) RunLiveness();
  if (checker_.ok()) CheckAllLogs();
  SimResult r;
  r.seed = p_.seed;
  r.ok = checker_.ok();
  r.failure = checker_.violation();
  r.params = p_;
  if (!r.ok) r.state = DescribeState();
  r.trace.assign(trace_.begin(), trace_.end());
  stats_.ticks = tick_;
  stats_.steps = step_;
  stats_.dropped = net_.dropped();
  r.stats = stats_;
  return r;
}

SimResult RunSimulation(uint64_t seed, const SimOptions& options) {
  SimCluster cluster(seed, options);
  return cluster.Run();
}

}  // namespace keel::sim
