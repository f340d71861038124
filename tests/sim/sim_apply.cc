// The application half of a simulated member (SimCluster's third part):
// the replicated state machine, applying snapshots, committed entries and
// configuration changes, answering reads, and taking snapshots.

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "raft/codec.h"
#include "sim/sim_cluster.h"

namespace keel::sim {

using raft::ConfState;
using raft::Entry;
using raft::EntryType;
using raft::StateRole;

namespace {

std::string Join(const std::vector<NodeId>& ids) {
  std::string s;
  for (NodeId id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

}  // namespace

std::string DescribeConf(const ConfState& cs) {
  std::string s = "voters=" + Join(cs.voters);
  if (!cs.learners.empty()) s += " learners=" + Join(cs.learners);
  if (!cs.voters_outgoing.empty()) {
    s += " outgoing=" + Join(cs.voters_outgoing);
    s += cs.auto_leave ? " (auto-leave)" : " (explicit leave)";
  }
  if (!cs.learners_next.empty()) {
    s += " learners_next=" + Join(cs.learners_next);
  }
  return s;
}

bool InConf(const ConfState& cs, NodeId id) {
  for (const auto* v :
       {&cs.voters, &cs.learners, &cs.voters_outgoing, &cs.learners_next}) {
    if (std::find(v->begin(), v->end(), id) != v->end()) return true;
  }
  return false;
}

// ---- State machine ----

std::string SimStateMachine::Encode() const {
  std::string out = fmt::format("{} {} {}", applied, hash, removed.size());
  for (NodeId id : removed) out += fmt::format(" {}", id);
  out += '\n';
  for (const auto& [k, v] : kv) out += k + "=" + v + "\n";
  return out;
}

bool SimStateMachine::Decode(const std::string& data, SimStateMachine* out) {
  *out = SimStateMachine();
  if (data.empty()) return true;  // a member that never had a snapshot
  std::istringstream in(data);
  std::string line;
  size_t n_removed;
  if (!(in >> out->applied >> out->hash >> n_removed)) return false;
  for (size_t i = 0; i < n_removed; i++) {
    NodeId id;
    if (!(in >> id)) return false;
    out->removed.insert(id);
  }
  std::getline(in, line);
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) return false;
    out->kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return true;
}

// ---- Applying ----

void SimCluster::InstallSnapshot(SimNode& n, const raft::Snapshot& snap) {
  const auto& md = snap.metadata;
  if (md.index <= n.sm.applied) {
    checker_.Fail(
        fmt::format("member {} was handed snapshot {} but has "
                    "applied {} already",
                    n.id, md.index, n.sm.applied));
    return;
  }
  SimStateMachine sm;
  if (!SimStateMachine::Decode(snap.data, &sm) || sm.applied != md.index) {
    checker_.Fail(
        fmt::format("member {}: snapshot {} carries bad data", n.id, md.index));
    return;
  }
  n.sm = std::move(sm);
  n.conf = md.conf_state;
  stats_.snapshots_installed++;
  if (tracing()) {
    Log(fmt::format("member {} installs snapshot {}/{} {}", n.id, md.term,
                    md.index, DescribeConf(n.conf)));
  }
  checker_.OnSnapshot(n.id, md.index, md.term, n.sm.hash, n.raw->term());
  // A removed member stops once it is out of every configuration (it may
  // still be in the outgoing half of a joint one).
  for (NodeId id : n.sm.removed) {
    if (!InConf(n.conf, id)) to_stop_.insert(id);
  }
  max_applied_ = std::max(max_applied_, n.sm.applied);
}

void SimCluster::ApplyEntry(SimNode& n, const Entry& e) {
  if (e.index != n.sm.applied + 1) {
    checker_.Fail(
        fmt::format("member {} was handed committed entry {} after "
                    "applying {}",
                    n.id, e.index, n.sm.applied));
    return;
  }
  auto t = n.disk->storage().TermAt(e.index);
  if (!t.ok() || *t != e.term) {
    checker_.Fail(
        fmt::format("member {} applies entry {}/{} that is not in "
                    "its persisted log",
                    n.id, e.term, e.index));
    return;
  }
  uint64_t digest = EntryDigest(e);
  if (options_.inject == Injection::kCorruptApply && !injected_ && tick_ > 30 &&
      e.type == EntryType::kNormal && !e.data.empty()) {
    injected_ = true;
    Entry bad = e;
    bad.data += "!";
    digest = EntryDigest(bad);
    Log(fmt::format("INJECT member {} applies a corrupted entry {}", n.id,
                    e.index));
  }
  n.sm.hash = NextStateHash(n.sm.hash, digest);
  n.sm.applied = e.index;
  checker_.OnApplied(n.id, e, n.sm.hash, n.raw->term());
  max_applied_ = std::max(max_applied_, e.index);
  if (e.type == EntryType::kConfChange) {
    raft::ConfChange cc;
    if (!raft::DecodeConfChange(e.data, &cc)) {
      checker_.Fail(fmt::format("member {}: undecodable conf change at {}",
                                n.id, e.index));
      return;
    }
    // As etcd's membership layer does, refuse changes that name a removed
    // member (ids are never reused): a removal and a late demotion of the
    // same member may both commit. The decision depends only on this
    // member's applied log, so every member decides alike.
    raft::ConfChange valid = cc;
    valid.changes.clear();
    for (const raft::ConfChangeSingle& c : cc.changes) {
      if (!n.sm.removed.count(c.node_id)) valid.changes.push_back(c);
    }
    if (!cc.changes.empty() && valid.changes.empty()) {
      if (tracing()) {
        Log(
            fmt::format("member {} skips conf change at {}: names removed "
                        "members only",
                        n.id, e.index));
      }
      return;
    }
    n.conf = n.raw->ApplyConfChange(valid);
    for (const raft::ConfChangeSingle& c : valid.changes) {
      const ConfState& cs = n.conf;
      auto in = [&](const std::vector<NodeId>& v) {
        return std::find(v.begin(), v.end(), c.node_id) != v.end();
      };
      if (c.type == raft::ConfChangeType::kRemoveNode && !in(cs.voters) &&
          !in(cs.learners) && !in(cs.learners_next)) {
        n.sm.removed.insert(c.node_id);
      }
    }
    OnConfApplied(n, valid);
    return;
  }
  // Writes look like "w<id>:<key>"; the key's value becomes the write id.
  if (e.data.size() > 1 && e.data[0] == 'w') {
    size_t colon = e.data.find(':');
    uint64_t id = std::stoull(e.data.substr(1, colon - 1));
    n.sm.kv[e.data.substr(colon + 1)] = std::to_string(id);
    auto it = proposals_.find(id);
    if (it != proposals_.end() && it->second.applied_index == 0) {
      // Acknowledged: a server answers the client once any member (the one
      // it asked) has applied the write.
      it->second.applied_index = e.index;
      stats_.writes_committed++;
    }
  }
}

void SimCluster::OnConfApplied(SimNode& n, const raft::ConfChange& cc) {
  if (tracing()) {
    Log(fmt::format("member {} applies conf change at {}: {}", n.id,
                    n.sm.applied, DescribeConf(n.conf)));
  }
  if (n.raw->role() == StateRole::kLeader) stats_.conf_changes_applied++;
  for (const raft::ConfChangeSingle& c : cc.changes) {
    if (c.type != raft::ConfChangeType::kRemoveNode &&
        c.type != raft::ConfChangeType::kUpdateNode &&
        !nodes_.count(c.node_id)) {
      // The operator starts the new member once the change is committed,
      // with an empty disk; the leader catches it up by snapshot.
      stats_.members_added++;
      Start(NewMember(c.node_id));
    }
    if (c.type == raft::ConfChangeType::kAddNode ||
        c.type == raft::ConfChangeType::kAddLearnerNode) {
      n.snapshot_lacks_member = true;
    }
  }
  // A removed member stops once it is out of every configuration (it may
  // still be in the outgoing half of a joint one).
  for (NodeId id : n.sm.removed) {
    if (!InConf(n.conf, id)) to_stop_.insert(id);
  }
}

void SimCluster::OnReadState(SimNode& n, const raft::ReadState& rs) {
  auto it = reads_.find(rs.request_ctx);
  if (it == reads_.end()) {
    checker_.Fail(fmt::format("member {} answered unknown read '{}'", n.id,
                              rs.request_ctx));
    return;
  }
  if (tracing()) {
    Log(fmt::format("member {} read {} index {} (needs >= {})", n.id,
                    rs.request_ctx, rs.index, it->second.required));
  }
  checker_.OnReadState(n.id, rs.request_ctx, rs.index, it->second.required);
  n.waiting_reads.push_back(rs);
}

void SimCluster::ServeReads(SimNode& n) {
  auto& w = n.waiting_reads;
  for (auto it = w.begin(); it != w.end();) {
    if (it->index > n.sm.applied) {
      ++it;
      continue;
    }
    auto r = reads_.find(it->request_ctx);
    if (r != reads_.end() && !r->second.served) {
      r->second.served = true;
      stats_.reads_served++;
    }
    it = w.erase(it);
  }
}

void SimCluster::MaybeSnapshot(SimNode& n) {
  SimDisk& st = *n.disk;
  raft::Index snap = st.FirstIndex() - 1;
  // A new member is caught up with the leader's latest snapshot, which
  // must therefore include it (as etcd's bootstrap through log entries
  // guarantees there); beyond that, snapshot at the swarm's rate.
  if (!n.snapshot_lacks_member && (n.sm.applied < snap + p_.snapshot_min_gap ||
                                   !rng_.Chance(p_.snapshot_rate))) {
    return;
  }
  n.snapshot_lacks_member = false;
  auto s = st.CreateSnapshot(n.sm.applied, &n.conf, n.sm.Encode());
  if (!s.ok()) {
    if (st.dead()) DiedInIo(n, "taking a snapshot");
    return;
  }
  raft::Index compact = n.sm.applied > static_cast<raft::Index>(p_.compact_keep)
                            ? n.sm.applied - p_.compact_keep
                            : 0;
  if (compact > snap) {
    Status c = st.Compact(compact);
    if (!c.ok() && st.dead()) {
      DiedInIo(n, "compacting the log");
      return;
    }
    KEEL_CHECK(c.ok()) << c.ToString();
  }
  if (tracing()) {
    Log(fmt::format("member {} snapshots at {}, compacts to {}", n.id,
                    n.sm.applied, st.FirstIndex()));
  }
}

}  // namespace keel::sim
