#include "test_network.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <utility>

#include "common/check.h"
#include "raft/codec.h"

namespace keel::raft::test {

namespace {

// Enough for any scenario here; more means the cluster never goes quiet
// (a livelock), which is a failure in itself.
constexpr int kMaxDeliveriesPerStabilize = 1'000'000;
constexpr int kMaxReadiesPerProcess = 10'000;

std::string EntryData(Term term, Index index) {
  return "t" + std::to_string(term) + "i" + std::to_string(index);
}

}  // namespace

ConfState Voters(std::vector<NodeId> voters, std::vector<NodeId> learners) {
  ConfState cs;
  cs.voters = std::move(voters);
  cs.learners = std::move(learners);
  return cs;
}

std::unique_ptr<MemoryStorage> BootstrapStorage(const ConfState& cs) {
  auto s = std::make_unique<MemoryStorage>();
  Snapshot snap;
  snap.metadata.conf_state = cs;
  snap.metadata.index = 1;
  snap.metadata.term = 1;
  KEEL_CHECK(s->ApplySnapshot(std::move(snap)).ok()) << "bootstrap";
  s->SetHardState(HardState{1, kNone, 1});
  return s;
}

std::unique_ptr<MemoryStorage> LogStorage(const ConfState& cs,
                                          const std::vector<Term>& terms,
                                          const HardState& hs) {
  auto s = std::make_unique<MemoryStorage>();
  s->SetConfState(cs);
  std::vector<Entry> ents;
  for (size_t i = 0; i < terms.size(); i++) {
    Index index = i + 1;
    ents.push_back(
        Entry{terms[i], index, EntryType::kNormal, EntryData(terms[i], index)});
  }
  KEEL_CHECK(s->Append(ents).ok()) << "LogStorage";
  s->SetHardState(hs);
  return s;
}

std::vector<Entry> StoredEntries(const MemoryStorage& s) {
  if (s.LastIndex() < s.FirstIndex()) return {};
  auto r = s.Entries(s.FirstIndex(), s.LastIndex() + 1, UINT64_MAX);
  KEEL_CHECK(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

Message MakeMsg(MessageType type, NodeId from, NodeId to, Term term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType t) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == t) out.push_back(m);
  }
  return out;
}

Network::Network(uint64_t seed) : seed_(seed), rng_(seed) {}

Network::Network(const std::vector<NodeId>& ids, ConfigFn fn, uint64_t seed)
    : Network(seed) {
  ConfState cs;
  cs.voters = ids;
  for (NodeId id : ids) AddPeer(id, BootstrapStorage(cs), fn);
}

Network::~Network() = default;

Peer& Network::AddPeer(NodeId id, std::unique_ptr<MemoryStorage> storage,
                       ConfigFn fn) {
  KEEL_CHECK(!Has(id)) << "peer " << id << " added twice";
  auto p = std::make_unique<Peer>();
  p->id = id;
  // Distinct, fixed seeds per member so that election timeouts differ
  // but every run is the same.
  p->seed = seed_ * 1'000'003 + id;
  p->storage = std::move(storage);
  p->rng = std::make_unique<SeededRng>(p->seed);
  p->config.id = id;
  p->config.storage = p->storage.get();
  p->config.rng = p->rng.get();
  if (fn) fn(&p->config);
  HardState hs;
  KEEL_CHECK(p->storage->InitialState(&hs, &p->conf_state).ok()) << id;
  // A restarted member has applied nothing yet unless told otherwise.
  p->applied = p->config.applied;
  if (p->applied == 0) {
    Snapshot snap = p->storage->GetSnapshot().value();
    p->applied = snap.metadata.index;
  }
  auto r = RawNode::Create(p->config);
  KEEL_CHECK(r.ok()) << "RawNode::Create(" << id
                     << "): " << r.status().ToString();
  p->node = std::move(r).value();
  Peer& ref = *p;
  peers_[id] = std::move(p);
  return ref;
}

void Network::Restart(NodeId id) {
  Peer& p = peer(id);
  p.node.reset();
  Config c = p.config;
  c.applied = p.applied;
  auto r = RawNode::Create(c);
  KEEL_CHECK(r.ok()) << "restart " << id << ": " << r.status().ToString();
  p.node = std::move(r).value();
}

Peer& Network::peer(NodeId id) {
  auto it = peers_.find(id);
  KEEL_CHECK(it != peers_.end()) << "no peer " << id;
  return *it->second;
}

std::vector<NodeId> Network::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, p] : peers_) out.push_back(id);
  return out;
}

void Network::Process(NodeId id) {
  Peer& p = peer(id);
  int n = 0;
  while (p.node->HasReady()) {
    if (++n > kMaxReadiesPerProcess) {
      ADD_FAILURE() << "peer " << id << " never stops having Readies; "
                    << SeedInfo();
      return;
    }
    HandleReady(p, p.node->GetReady());
  }
}

void Network::ProcessAll() {
  for (auto& [id, p] : peers_) Process(id);
}

void Network::HandleReady(Peer& p, Ready rd) {
  p.readies++;
  if (p.record_readies) p.recorded.push_back(rd);
  MemoryStorage& s = *p.storage;
  const HardState before = s.GetHardState();

  if (!rd.snapshot.IsEmpty()) {
    Status st = s.ApplySnapshot(rd.snapshot);
    EXPECT_TRUE(st.ok()) << "peer " << p.id
                         << " ApplySnapshot: " << st.ToString();
    p.applied = rd.snapshot.metadata.index;
    p.conf_state = rd.snapshot.metadata.conf_state;
    p.conf_history.push_back(p.conf_state);
    p.applied_snapshots.push_back(rd.snapshot);
  }

  // State Machine Safety: an entry at or below the persisted commit index
  // may be rewritten only with itself (§5.4.3: committed entries are never
  // truncated).
  for (const Entry& e : rd.entries) {
    if (e.index > before.commit) break;
    if (e.index < s.FirstIndex() || e.index > s.LastIndex()) continue;
    auto old = s.Entries(e.index, e.index + 1, UINT64_MAX);
    if (old.ok() && !old->empty() && (*old)[0] != e) {
      ADD_FAILURE() << "peer " << p.id << " overwrites committed entry "
                    << e.index << " (term " << (*old)[0].term << " -> "
                    << e.term << "), commit " << before.commit << "; "
                    << SeedInfo();
    }
  }
  if (!rd.entries.empty()) {
    Status st = s.Append(rd.entries);
    EXPECT_TRUE(st.ok()) << "peer " << p.id << " Append: " << st.ToString();
  }

  if (!rd.hard_state.IsEmpty()) {
    EXPECT_GE(rd.hard_state.term, before.term)
        << "peer " << p.id << " term went back; " << SeedInfo();
    EXPECT_GE(rd.hard_state.commit, before.commit)
        << "peer " << p.id << " commit went back; " << SeedInfo();
    if (rd.hard_state.term == before.term && before.vote != kNone) {
      EXPECT_EQ(rd.hard_state.vote, before.vote)
          << "peer " << p.id << " changed its vote within term " << before.term
          << "; " << SeedInfo();
    }
    s.SetHardState(rd.hard_state);
  }

  CheckPersistedBeforeSend(p, rd);
  for (Message& m : rd.messages) {
    trace_.push_back(TraceEvent{TraceEvent::Kind::kSent, m});
    queue_.push_back(std::move(m));
  }

  for (const Entry& e : rd.committed_entries) ApplyCommitted(p, e);
  for (const ReadState& rs : rd.read_states) p.read_states.push_back(rs);

  p.node->Advance(rd);

  // Election Safety: at most one leader can be elected in a given term.
  if (p.node->role() == StateRole::kLeader) {
    auto [it, inserted] = leader_of_term_.emplace(p.node->term(), p.id);
    if (!inserted && it->second != p.id) {
      ADD_FAILURE() << "two leaders in term " << it->first << ": " << it->second
                    << " and " << p.id << "; " << SeedInfo();
    }
  }
}

void Network::CheckPersistedBeforeSend(const Peer& p, const Ready& rd) {
  const HardState hs = p.storage->GetHardState();
  for (const Message& m : rd.messages) {
    switch (m.type) {
      case MessageType::kVote:
        // A candidate votes for itself and persists it before asking.
        EXPECT_TRUE(hs.term == m.term && hs.vote == p.id)
            << "peer " << p.id << " sends " << m << " with persisted term "
            << hs.term << " vote " << hs.vote << "; " << SeedInfo();
        break;
      case MessageType::kVoteResp:
        if (!m.reject) {
          EXPECT_TRUE(hs.term == m.term && hs.vote == m.to)
              << "peer " << p.id << " grants " << m << " with persisted term "
              << hs.term << " vote " << hs.vote << "; " << SeedInfo();
        }
        break;
      case MessageType::kPreVote:
      case MessageType::kPreVoteResp:
        // Pre-votes speak of a future term that is not persisted.
        break;
      default:
        EXPECT_LE(m.term, hs.term)
            << "peer " << p.id << " sends " << m
            << " before persisting its term; " << SeedInfo();
    }
  }
}

void Network::ApplyCommitted(Peer& p, const Entry& e) {
  EXPECT_EQ(e.index, p.applied + 1)
      << "peer " << p.id << " applies out of order; " << SeedInfo();
  EXPECT_LE(e.index, p.storage->GetHardState().commit)
      << "peer " << p.id << " applies an uncommitted entry";
  auto [it, inserted] = committed_.emplace(e.index, e);
  if (!inserted && it->second != e) {
    ADD_FAILURE() << "peer " << p.id << " applies entry " << e.index << " term "
                  << e.term << " but another member applied term "
                  << it->second.term << "; " << SeedInfo();
  }
  p.applied = e.index;
  p.applied_entries.push_back(e);
  if (e.type == EntryType::kConfChange) {
    ConfChange cc;
    EXPECT_TRUE(DecodeConfChange(e.data, &cc))
        << "peer " << p.id << " cannot decode conf change at " << e.index;
    p.applied_conf_changes.push_back(cc);
    p.conf_state = p.node->ApplyConfChange(cc);
    p.conf_history.push_back(p.conf_state);
  }
}

void Network::Queue(std::vector<Message> msgs) {
  for (Message& m : msgs) {
    trace_.push_back(TraceEvent{TraceEvent::Kind::kSent, m});
    queue_.push_back(std::move(m));
  }
}

void Network::Send(std::vector<Message> msgs) {
  Queue(std::move(msgs));
  Stabilize();
}

bool Network::Blocked(const Message& m) {
  if (isolated_.count(m.from) || isolated_.count(m.to)) return true;
  if (cuts_.count({m.from, m.to})) return true;
  if (ignored_.count(m.type)) return true;
  auto it = drop_.find({m.from, m.to});
  if (it != drop_.end() && rng_.Chance(it->second)) return true;
  return false;
}

void Network::Deliver(Message m) {
  if (!Has(m.to) || Blocked(m)) {
    trace_.push_back(TraceEvent{TraceEvent::Kind::kDropped, std::move(m)});
    return;
  }
  if (hold_ && hold_(m)) {
    held_.push_back(std::move(m));
    return;
  }
  if (filter_ && !filter_(m)) {
    trace_.push_back(TraceEvent{TraceEvent::Kind::kDropped, std::move(m)});
    return;
  }
  trace_.push_back(TraceEvent{TraceEvent::Kind::kDelivered, m});
  NodeId to = m.to;
  // Errors (e.g. a response from a peer that is no longer a member) are
  // what a real transport would log and ignore.
  (void)peer(to).node->Step(std::move(m));
  Process(to);
}

void Network::Stabilize() {
  for (int n = 0;; n++) {
    ProcessAll();
    if (queue_.empty()) return;
    if (n >= kMaxDeliveriesPerStabilize) {
      ADD_FAILURE() << "network never quiesces; " << SeedInfo();
      queue_.clear();
      return;
    }
    Message m = std::move(queue_.front());
    queue_.pop_front();
    Deliver(std::move(m));
  }
}

void Network::DeliverQueued() {
  ProcessAll();
  std::deque<Message> now;
  now.swap(queue_);
  for (Message& m : now) Deliver(std::move(m));
}

std::vector<Message> Network::TakeQueued() {
  ProcessAll();
  std::vector<Message> out(std::make_move_iterator(queue_.begin()),
                           std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

void Network::Campaign(NodeId id) {
  node(id).Campaign();
  Stabilize();
}

Status Network::Propose(NodeId id, std::string data) {
  Status st = node(id).Propose(std::move(data));
  Stabilize();
  return st;
}

Status Network::ProposeConfChange(NodeId id, const ConfChange& cc) {
  Status st = node(id).ProposeConfChange(cc);
  Stabilize();
  return st;
}

void Network::Tick(NodeId id, int n) {
  for (int i = 0; i < n; i++) {
    node(id).Tick();
    Stabilize();
  }
}

void Network::TickAll(int rounds) {
  for (int r = 0; r < rounds; r++) {
    for (auto& [id, p] : peers_) p->node->Tick();
    Stabilize();
  }
}

NodeId Network::TickUntilLeader(int max_rounds, std::vector<NodeId> among) {
  for (int r = 0; r < max_rounds; r++) {
    NodeId l = Leader(among);
    if (l != kNone) return l;
    TickAll(1);
  }
  return Leader(among);
}

NodeId Network::TickUntilAgreedLeader(int max_rounds,
                                      std::vector<NodeId> among) {
  if (among.empty()) among = ids();
  auto agreed = [&]() -> NodeId {
    NodeId l = Leader(among);
    if (l == kNone) return kNone;
    for (NodeId id : among) {
      const RawNode& n = *peer(id).node;
      if (n.leader() != l || n.term() != peer(l).node->term()) return kNone;
    }
    return l;
  };
  for (int r = 0; r < max_rounds; r++) {
    if (NodeId l = agreed(); l != kNone) return l;
    TickAll(1);
  }
  return agreed();
}

NodeId Network::Leader(const std::vector<NodeId>& among) const {
  NodeId best = kNone;
  Term best_term = 0;
  for (const auto& [id, p] : peers_) {
    if (!among.empty() &&
        std::find(among.begin(), among.end(), id) == among.end()) {
      continue;
    }
    if (p->node->role() == StateRole::kLeader && p->node->term() > best_term) {
      best = id;
      best_term = p->node->term();
    }
  }
  return best;
}

void Network::Cut(NodeId a, NodeId b) {
  cuts_.insert({a, b});
  cuts_.insert({b, a});
}

void Network::Isolate(NodeId id) { isolated_.insert(id); }

void Network::Recover() {
  cuts_.clear();
  isolated_.clear();
  drop_.clear();
  ignored_.clear();
  filter_ = nullptr;
}

void Network::Drop(NodeId from, NodeId to, double ratio) {
  drop_[{from, to}] = ratio;
}

void Network::Ignore(MessageType t) { ignored_.insert(t); }

void Network::SetFilter(std::function<bool(Message&)> filter) {
  filter_ = std::move(filter);
}

void Network::Hold(std::function<bool(const Message&)> pred) {
  hold_ = std::move(pred);
}

void Network::ReleaseHeld() {
  hold_ = nullptr;
  for (Message& m : held_) queue_.push_back(std::move(m));
  held_.clear();
  Stabilize();
}

std::vector<Message> Network::Traced(
    TraceEvent::Kind kind,
    const std::function<bool(const Message&)>& pred) const {
  std::vector<Message> out;
  for (const TraceEvent& ev : trace_) {
    if (ev.kind == kind && (!pred || pred(ev.msg))) out.push_back(ev.msg);
  }
  return out;
}

namespace {
size_t CountKind(const std::vector<TraceEvent>& trace, TraceEvent::Kind kind,
                 MessageType t, NodeId from, NodeId to) {
  return std::count_if(trace.begin(), trace.end(), [&](const TraceEvent& ev) {
    return ev.kind == kind && ev.msg.type == t &&
           (from == kNone || ev.msg.from == from) &&
           (to == kNone || ev.msg.to == to);
  });
}
}  // namespace

size_t Network::CountSent(MessageType t, NodeId from, NodeId to) const {
  return CountKind(trace_, TraceEvent::Kind::kSent, t, from, to);
}

size_t Network::CountDelivered(MessageType t, NodeId from, NodeId to) const {
  return CountKind(trace_, TraceEvent::Kind::kDelivered, t, from, to);
}

std::string Network::SeedInfo() const {
  std::ostringstream os;
  os << "seeds:";
  for (const auto& [id, p] : peers_) os << " " << id << "=" << p->seed;
  os << " net=" << seed_;
  return os.str();
}

void Network::CompactLog(NodeId id, std::string data) {
  Peer& p = peer(id);
  auto snap =
      p.storage->CreateSnapshot(p.applied, &p.conf_state, std::move(data));
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  Status st = p.storage->Compact(p.applied);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

void Network::ExpectLogsMatch(NodeId id) const {
  const MemoryStorage& ref = *peers_.at(id)->storage;
  for (const auto& [other, p] : peers_) {
    if (other == id) continue;
    const MemoryStorage& s = *p->storage;
    EXPECT_EQ(s.LastIndex(), ref.LastIndex()) << "peer " << other;
    Index lo = std::max(s.FirstIndex(), ref.FirstIndex());
    Index hi = std::min(s.LastIndex(), ref.LastIndex());
    for (Index i = lo; i <= hi; i++) {
      auto a = s.Entries(i, i + 1, UINT64_MAX);
      auto b = ref.Entries(i, i + 1, UINT64_MAX);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ((*a)[0], (*b)[0]) << "peer " << other << " index " << i;
    }
  }
}

}  // namespace keel::raft::test
