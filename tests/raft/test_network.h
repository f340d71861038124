// Network: an in-memory cluster of RawNodes for scenario tests of the Raft
// core, modelled on the `network` helper of etcd raft's tests.
//
// Each member has its own MemoryStorage and its own SeededRng (fixed seed,
// reported by SeedInfo()). The harness handles every Ready the way a real
// server would (persist snapshot, entries and hard state; then queue the
// messages; apply committed entries, including conf changes; record read
// states; Advance) and delivers queued messages breadth-first until the
// cluster is quiescent. Nothing depends on the wall clock: time moves only
// through the Tick helpers.
//
// While it works, the harness checks invariants of the paper on every Ready
// and reports violations with ADD_FAILURE (so any test that drives a
// scenario also checks them):
//  - Election Safety: at most one leader per term (Figure 3).
//  - State Machine Safety: no two members apply different entries at the
//    same index, and no entry at or below a member's commit index is ever
//    overwritten in its log (Figure 3, §5.4.3).
//  - Durability (§5.1 / Figure 2 "persistent state ... updated on stable
//    storage before responding to RPCs"): a granted vote or a vote request
//    leaves only once the term and vote are persisted.
//  - term and commit never go backwards on stable storage.
//
// Thread safety: none; tests are single-threaded.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/rng.h"
#include "common/status.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace keel::raft::test {

// Adjusts a member's Config before its RawNode is created (id, storage and
// rng are already filled in).
using ConfigFn = std::function<void(Config*)>;

// Returns a ConfState with the given voters (and learners).
ConfState Voters(std::vector<NodeId> voters, std::vector<NodeId> learners = {});

// A storage bootstrapped for a brand-new cluster: a snapshot at index 1,
// term 1 carrying `cs`, and HardState{term 1, no vote, commit 1}.
std::unique_ptr<MemoryStorage> BootstrapStorage(const ConfState& cs);

// A storage holding an arbitrary log: entry i (1-based) has term terms[i-1]
// and data "t<term>i<index>", so that entries of equal index and term are
// equal across members. `hs` is the persisted hard state.
std::unique_ptr<MemoryStorage> LogStorage(const ConfState& cs,
                                          const std::vector<Term>& terms,
                                          const HardState& hs);

// The entries of a storage, FirstIndex()..LastIndex().
std::vector<Entry> StoredEntries(const MemoryStorage& s);

// A message with the given header; fill in the rest as needed.
Message MakeMsg(MessageType type, NodeId from, NodeId to, Term term);

// The messages of `msgs` of type t.
std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType t);

// A member of the network and what the harness observed of it.
struct Peer {
  NodeId id = kNone;
  uint64_t seed = 0;
  Config config;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<SeededRng> rng;
  std::unique_ptr<RawNode> node;

  // Last applied index (snapshot or committed entry).
  Index applied = 0;
  // Every committed entry handed to this member, in order.
  std::vector<Entry> applied_entries;
  // Conf changes applied with ApplyConfChange(), in order.
  std::vector<ConfChange> applied_conf_changes;
  // The configuration after each applied conf change or snapshot.
  std::vector<ConfState> conf_history;
  ConfState conf_state;
  std::vector<ReadState> read_states;
  // Snapshots handed to this member in a Ready.
  std::vector<Snapshot> applied_snapshots;
  // Number of Readies handled.
  int readies = 0;
  // If set, a copy of every Ready is kept in `recorded`, as received.
  bool record_readies = false;
  std::vector<Ready> recorded;
};

// One step of the network's trace.
struct TraceEvent {
  enum class Kind : uint8_t {
    kSent,       // emitted by a member's Ready
    kDelivered,  // stepped into the recipient
    kDropped,    // lost to a partition, a drop ratio or a filter
  };
  Kind kind;
  Message msg;
};

class Network {
 public:
  // A network with no members; add them with AddPeer(). `seed` derives
  // every member's seed and the network's own (for Drop ratios).
  explicit Network(uint64_t seed = 1);
  // A bootstrapped cluster whose voters are `ids`.
  Network(const std::vector<NodeId>& ids, ConfigFn fn = nullptr,
          uint64_t seed = 1);
  ~Network();

  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Adds a member over `storage`. Fails the test if Create() fails.
  Peer& AddPeer(NodeId id, std::unique_ptr<MemoryStorage> storage,
                ConfigFn fn = nullptr);
  // Recreates the member's RawNode from its storage, as after a crash and
  // restart (messages queued to or from it are kept; held ones too).
  void Restart(NodeId id);

  Peer& peer(NodeId id);
  RawNode& node(NodeId id) { return *peer(id).node; }
  MemoryStorage& storage(NodeId id) { return *peer(id).storage; }
  std::vector<NodeId> ids() const;
  bool Has(NodeId id) const { return peers_.count(id) != 0; }

  // Handles every pending Ready of `id`, queueing its messages without
  // delivering them.
  void Process(NodeId id);
  void ProcessAll();
  // Queues messages (e.g. hand-made ones) as if sent.
  void Queue(std::vector<Message> msgs);
  // Queues `msgs`, then delivers until quiescent.
  void Send(std::vector<Message> msgs);
  // Delivers queued messages and handles Readies until nothing is left.
  void Stabilize();
  // Delivers only the messages queued now (one "hop"), handling the
  // recipients' Readies; their replies are queued, not delivered.
  void DeliverQueued();
  const std::deque<Message>& queued() const { return queue_; }
  // Handles pending Readies, then removes and returns every queued message
  // (they will not be delivered unless Send() back).
  std::vector<Message> TakeQueued();

  // Campaign() on `id`, then Stabilize().
  void Campaign(NodeId id);
  // Propose() on `id`, then Stabilize(); returns Propose's status.
  Status Propose(NodeId id, std::string data);
  Status ProposeConfChange(NodeId id, const ConfChange& cc);
  // Ticks `id` n times, stabilizing after each tick.
  void Tick(NodeId id, int n = 1);
  // Ticks every member once per round, stabilizing after each round.
  void TickAll(int rounds = 1);
  // Ticks all members until Leader(among) is not kNone, or `max_rounds`
  // pass. Returns the leader or kNone.
  NodeId TickUntilLeader(int max_rounds, std::vector<NodeId> among = {});

  // Ticks all members until one of `among` (default: all) leads and every
  // member of `among` follows it in its term, or `max_rounds` pass. (A
  // stale leader that others no longer follow does not count.)
  NodeId TickUntilAgreedLeader(int max_rounds, std::vector<NodeId> among = {});

  // Among `among` (default: every member), the one leading with the highest
  // term, or kNone. (An isolated old leader may still think it leads.)
  NodeId Leader(const std::vector<NodeId>& among = {}) const;

  // Faults. Applied when a message is delivered, so they also catch
  // messages already queued.
  void Cut(NodeId a, NodeId b);
  void Isolate(NodeId id);
  // Removes cuts, isolations, drop ratios, ignored types and the filter
  // (held messages stay held).
  void Recover();
  void Drop(NodeId from, NodeId to, double ratio);
  void Ignore(MessageType t);
  // Drops the message if `filter` returns false; it may modify it.
  void SetFilter(std::function<bool(Message&)> filter);
  // Keeps back messages matching `pred` until ReleaseHeld().
  void Hold(std::function<bool(const Message&)> pred);
  // Stops holding, queues the held messages and stabilizes.
  void ReleaseHeld();
  size_t held() const { return held_.size(); }

  // Trace of sent, delivered and dropped messages.
  const std::vector<TraceEvent>& trace() const { return trace_; }
  void ClearTrace() { trace_.clear(); }
  // Messages of the trace with this kind matching pred.
  std::vector<Message> Traced(
      TraceEvent::Kind kind,
      const std::function<bool(const Message&)>& pred = nullptr) const;
  size_t CountSent(MessageType t, NodeId from = kNone, NodeId to = kNone) const;
  size_t CountDelivered(MessageType t, NodeId from = kNone,
                        NodeId to = kNone) const;

  // "seeds: 1=..., 2=..., net=..." for failure messages.
  std::string SeedInfo() const;

  // The application of `id` snapshots its state at its applied index, with
  // its current ConfState, and discards the log up to there — as a server
  // does periodically. (A member added later can only be caught up by a
  // snapshot whose ConfState includes it.)
  void CompactLog(NodeId id, std::string data);

  // Fails the test unless every member's stored log equals `id`'s.
  void ExpectLogsMatch(NodeId id) const;

 private:
  void Deliver(Message m);
  bool Blocked(const Message& m);
  void HandleReady(Peer& p, Ready rd);
  void CheckPersistedBeforeSend(const Peer& p, const Ready& rd);
  void ApplyCommitted(Peer& p, const Entry& e);

  uint64_t seed_;
  SeededRng rng_;
  std::map<NodeId, std::unique_ptr<Peer>> peers_;
  std::deque<Message> queue_;
  std::vector<TraceEvent> trace_;

  std::set<std::pair<NodeId, NodeId>> cuts_;  // (from, to), both ways
  std::set<NodeId> isolated_;
  std::map<std::pair<NodeId, NodeId>, double> drop_;
  std::set<MessageType> ignored_;
  std::function<bool(Message&)> filter_;
  std::function<bool(const Message&)> hold_;
  std::vector<Message> held_;

  // Invariant state.
  std::map<Term, NodeId> leader_of_term_;
  std::map<Index, Entry> committed_;  // first entry applied at each index
};

}  // namespace keel::raft::test
