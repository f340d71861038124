// Scenario tests of log replication (§5.3 of the Raft paper, Ongaro &
// Ousterhout, extended version) and of the flow control around it (the
// thesis' §10.2 and etcd's raft: batching, in-flight windows).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "test_network.h"

namespace keel::raft::test {
namespace {

using MT = MessageType;

std::vector<Term> Repeat(Term t, size_t n) { return std::vector<Term>(n, t); }

std::vector<Term> Concat(std::vector<Term> a, const std::vector<Term>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// §5.3: "When sending an AppendEntries RPC, the leader includes the index
// and term of the entry in its log that immediately precedes the new
// entries. If the follower does not find an entry in its log with the same
// index and term, then it refuses the new entries."
TEST(PaperReplication, FollowerChecksPrevIndexAndTerm) {
  const struct {
    Term prev_term;
    Index prev_index;
    bool accept;
  } cases[] = {
      {1, 1, true},   // matches entry 1
      {2, 2, true},   // matches the last entry
      {1, 2, false},  // index 2 has term 2, not 1
      {2, 3, false},  // nothing at index 3
      {3, 5, false},  // far beyond the end
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "prev (" << c.prev_term << "," << c.prev_index << ")");
    Network nt;
    nt.AddPeer(1, LogStorage(Voters({1, 2, 3}), {1, 2}, {2, kNone, 1}));
    nt.Isolate(1);
    // A leader of term 3: its entry differs from any the follower has.
    Message m = MakeMsg(MT::kApp, 2, 1, 3);
    m.log_term = c.prev_term;
    m.index = c.prev_index;
    m.entries = {Entry{3, c.prev_index + 1, EntryType::kNormal, "new"}};
    (void)nt.node(1).Step(m);
    std::vector<Message> out = OfType(nt.TakeQueued(), MT::kAppResp);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].reject, !c.accept);
    auto t = nt.storage(1).Entries(c.prev_index + 1, c.prev_index + 2, 1);
    bool appended = t.ok() && !t->empty() && (*t)[0].data == "new";
    EXPECT_EQ(appended, c.accept);
    if (c.accept) EXPECT_EQ(out[0].index, c.prev_index + 1);
  }
}

// §5.3: "After a rejection, the leader decrements nextIndex and retries
// the AppendEntries RPC. ... If desired, the protocol can be optimized to
// reduce the number of rejected AppendEntries RPCs. For example, when
// rejecting an AppendEntries request, the follower can include the term of
// the conflicting entry and the first index it stores for that term." A
// follower with a long divergent or missing suffix is repaired in a few
// round trips, not one per entry.
TEST(PaperReplication, FastBacktrackingOverLongDivergentLog) {
  const std::vector<Term> common = Repeat(1, 10);
  const struct {
    const char* name;
    std::vector<Term> leader;
    std::vector<Term> follower;
    Term follower_term;
  } cases[] = {
      // 100 divergent entries of an old term.
      {"divergent", Concat(common, Repeat(3, 50)),
       Concat(common, Repeat(2, 100)), 2},
      // Missing 100 entries.
      {"lagging", Concat(common, Repeat(3, 100)), common, 3},
      // Divergent over several old terms, longer than the leader's log.
      {"multi-term", Concat(common, Repeat(5, 20)),
       Concat(Concat(common, Repeat(2, 40)),
              Concat(Repeat(3, 40), Repeat(4, 40))),
       4},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const ConfState cs = Voters({1, 2, 3});
    Network nt;
    const Term lt = c.leader.back();
    nt.AddPeer(1, LogStorage(cs, c.leader, {lt, kNone, 10}));
    nt.AddPeer(2, LogStorage(cs, c.follower, {c.follower_term, kNone, 10}));
    nt.AddPeer(3, LogStorage(cs, c.leader, {lt, kNone, 10}));
    SCOPED_TRACE(nt.SeedInfo());
    nt.Campaign(1);
    ASSERT_EQ(nt.node(1).role(), StateRole::kLeader);
    nt.ExpectLogsMatch(1);
    size_t rejects =
        nt.Traced(TraceEvent::Kind::kDelivered, [](const Message& m) {
            return m.type == MT::kAppResp && m.from == 2 && m.reject;
          }).size();
    EXPECT_GE(rejects, 1u);
    EXPECT_LE(rejects, 3u) << "one rejection per entry is the slow path";
    EXPECT_EQ(nt.storage(2).GetHardState().commit,
              nt.storage(1).GetHardState().commit);
  }
}

// §5.3: "The leader keeps track of the highest index it knows to be
// committed, and it includes that index in future AppendEntries RPCs
// (including heartbeats) so that the other servers eventually find out.
// Once a follower learns that a log entry is committed, it applies the
// entry to its local state machine".
TEST(PaperReplication, HeartbeatCarriesCommitIndex) {
  Network nt({1, 2, 3});
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  // 3 receives the new entry, but every later kApp to it (the one telling
  // it the entry committed) is lost.
  bool got_entry = false;
  nt.SetFilter([&](Message& m) {
    if (m.type == MT::kApp && m.to == 3) {
      if (got_entry) return false;
      if (!m.entries.empty()) got_entry = true;
    }
    return true;
  });
  ASSERT_TRUE(nt.Propose(1, "x").ok());
  const Index commit = nt.storage(1).GetHardState().commit;
  ASSERT_EQ(commit, 3u);
  ASSERT_EQ(nt.storage(3).LastIndex(), 3u);
  ASSERT_LT(nt.storage(3).GetHardState().commit, commit);
  ASSERT_LT(nt.peer(3).applied, commit);

  // Only heartbeats from now on.
  nt.SetFilter(nullptr);
  nt.Ignore(MT::kApp);
  nt.Tick(1, nt.peer(1).config.heartbeat_tick);
  EXPECT_GE(nt.CountDelivered(MT::kHeartbeat, 1, 3), 1u);
  EXPECT_EQ(nt.storage(3).GetHardState().commit, commit);
  EXPECT_EQ(nt.peer(3).applied, commit);
  ASSERT_FALSE(nt.peer(3).applied_entries.empty());
  EXPECT_EQ(nt.peer(3).applied_entries.back().data, "x");
}

// A heartbeat never claims more than the follower has: a follower that is
// missing entries does not commit past its own log (Log Matching; etcd
// sends min(match, commit)).
TEST(PaperReplication, HeartbeatDoesNotCommitPastFollowerLog) {
  Network nt({1, 2, 3});
  nt.Campaign(1);
  nt.Isolate(3);
  ASSERT_TRUE(nt.Propose(1, "x").ok());
  ASSERT_TRUE(nt.Propose(1, "y").ok());
  nt.Recover();
  nt.Ignore(MT::kApp);
  nt.Tick(1, 3);
  EXPECT_LE(nt.storage(3).GetHardState().commit, nt.storage(3).LastIndex());
  EXPECT_EQ(nt.peer(3).applied, 2u);
}

// etcd raft (max_size_per_msg): when a follower is behind, the leader
// batches entries into kApp messages bounded in bytes (at least one entry
// per message).
TEST(PaperReplication, CatchUpBatchesBoundedInBytes) {
  const uint64_t kMax = 300;  // two 100-byte entries (124 bytes each) fit
  Network nt({1, 2, 3}, [&](Config* c) { c->max_size_per_msg = kMax; });
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  nt.Isolate(3);
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(nt.Propose(1, std::string(100, 'a' + i)).ok());
  }
  nt.Recover();
  nt.ClearTrace();
  for (int i = 0; i < 20 && nt.storage(3).LastIndex() < 12; i++) nt.Tick(1);
  ASSERT_EQ(nt.storage(3).LastIndex(), 12u);
  nt.ExpectLogsMatch(1);

  size_t multi = 0;
  for (const Message& m : nt.Traced(
           TraceEvent::Kind::kSent,
           [](const Message& m) { return m.type == MT::kApp && m.to == 3; })) {
    uint64_t bytes = 0;
    for (const Entry& e : m.entries) bytes += e.Size();
    if (m.entries.size() > 1) {
      multi++;
      EXPECT_LE(bytes, kMax) << m;
    }
  }
  EXPECT_GE(multi, 1u) << "a lagging follower should get batches";
}

// Counts, through the trace, the kApp messages with entries from `from` to
// `to` that were sent while none acknowledged them, and returns the most
// outstanding at once (by count) and the bytes outstanding before each
// send (via `bytes_before_send`).
struct Window {
  size_t max_count = 0;
  std::vector<uint64_t> bytes_before_send;
};
Window MeasureWindow(const Network& nt, NodeId from, NodeId to) {
  Window w;
  // Last index and bytes of each unacknowledged message.
  std::vector<std::pair<Index, uint64_t>> out;
  for (const TraceEvent& ev : nt.trace()) {
    const Message& m = ev.msg;
    if (ev.kind == TraceEvent::Kind::kSent && m.type == MT::kApp &&
        m.from == from && m.to == to && !m.entries.empty()) {
      uint64_t bytes = 0, total = 0;
      for (const Entry& e : m.entries) bytes += e.Size();
      for (const auto& [i, b] : out) total += b;
      w.bytes_before_send.push_back(total);
      out.push_back({m.entries.back().index, bytes});
      w.max_count = std::max(w.max_count, out.size());
    }
    if (ev.kind == TraceEvent::Kind::kDelivered && m.type == MT::kAppResp &&
        m.from == to && m.to == from && !m.reject) {
      std::erase_if(out, [&](const auto& p) { return p.first <= m.index; });
    }
  }
  return w;
}

// etcd raft (max_inflight_msgs): "limits the max number of in-flight
// append messages during optimistic replication phase" — the thesis'
// §10.2.1 pipelining, bounded.
TEST(PaperReplication, InflightWindowBoundsUnackedAppends) {
  const size_t kWindow = 3;
  Network nt({1, 2, 3}, [&](Config* c) { c->max_inflight_msgs = kWindow; });
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  ASSERT_EQ(nt.node(1).GetStatus().progress[2].state,
            ProgressState::kReplicate);
  nt.ClearTrace();
  // 2 receives everything but its acknowledgements are held back.
  nt.Hold(
      [](const Message& m) { return m.type == MT::kAppResp && m.from == 2; });
  for (int i = 0; i < 10; i++) ASSERT_TRUE(nt.Propose(1, "p").ok());
  // 3 acknowledges, so the entries commit meanwhile.
  EXPECT_EQ(nt.storage(1).GetHardState().commit, 12u);
  size_t sent =
      nt.Traced(TraceEvent::Kind::kSent, [](const Message& m) {
          return m.type == MT::kApp && m.to == 2 && !m.entries.empty();
        }).size();
  EXPECT_EQ(sent, kWindow);
  EXPECT_LT(nt.storage(2).LastIndex(), 12u);

  nt.ReleaseHeld();
  for (int i = 0; i < 10 && nt.storage(2).LastIndex() < 12; i++) nt.Tick(1);
  EXPECT_EQ(nt.storage(2).LastIndex(), 12u);
  nt.ExpectLogsMatch(1);
  EXPECT_LE(MeasureWindow(nt, 1, 2).max_count, kWindow);
}

// etcd raft (max_inflight_bytes): "limits the number of in-flight bytes in
// append messages" — once the bytes in flight reach the bound, nothing more
// is sent until acknowledgements arrive.
TEST(PaperReplication, InflightBytesBoundUnackedAppends) {
  const uint64_t kBytes = 2500;  // room for two 1000-byte entries, not three
  Network nt({1, 2, 3}, [&](Config* c) {
    c->max_inflight_bytes = kBytes;
    c->max_size_per_msg = 1100;  // one entry per message; must be <= kBytes
  });
  SCOPED_TRACE(nt.SeedInfo());
  nt.Campaign(1);
  nt.ClearTrace();
  nt.Hold(
      [](const Message& m) { return m.type == MT::kAppResp && m.from == 2; });
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(nt.Propose(1, std::string(1000, 'a' + i)).ok());
  }
  Window w = MeasureWindow(nt, 1, 2);
  // The third message takes the window over the bound; no fourth.
  EXPECT_EQ(w.bytes_before_send.size(), 3u);
  for (uint64_t b : w.bytes_before_send) EXPECT_LT(b, kBytes);

  nt.ReleaseHeld();
  for (int i = 0; i < 10 && nt.storage(2).LastIndex() < 12; i++) nt.Tick(1);
  EXPECT_EQ(nt.storage(2).LastIndex(), 12u);
  for (uint64_t b : MeasureWindow(nt, 1, 2).bytes_before_send) {
    EXPECT_LT(b, kBytes);
  }
}

// §5.3: "If followers crash or run slowly, or if network packets are lost,
// the leader retries AppendEntries RPCs indefinitely ... until all
// followers eventually store all log entries." With 30% loss on every
// link, every entry still reaches every member, and all apply the same
// sequence (checked by the harness).
TEST(PaperReplication, LossyLinksEventuallyReplicateEverything) {
  for (uint64_t seed = 1; seed <= 5; seed++) {
    Network nt({1, 2, 3, 4, 5}, nullptr, seed);
    SCOPED_TRACE(nt.SeedInfo());
    NodeId lead = nt.TickUntilLeader(100);
    ASSERT_NE(lead, kNone);
    for (NodeId a : nt.ids()) {
      for (NodeId b : nt.ids()) {
        if (a != b) nt.Drop(a, b, 0.3);
      }
    }
    int accepted = 0;
    for (int i = 0; i < 50; i++) {
      NodeId l = nt.Leader();
      if (l != kNone && nt.Propose(l, "v" + std::to_string(i)).ok()) {
        accepted++;
      }
      nt.TickAll(1);
    }
    nt.Recover();
    nt.TickAll(50);
    lead = nt.Leader();
    ASSERT_NE(lead, kNone);
    nt.ExpectLogsMatch(lead);
    Index commit = nt.storage(lead).GetHardState().commit;
    for (NodeId id : nt.ids()) EXPECT_EQ(nt.peer(id).applied, commit);
    EXPECT_GT(accepted, 0);
  }
}

}  // namespace
}  // namespace keel::raft::test
