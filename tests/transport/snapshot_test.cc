// Snapshot streaming between real transports on loopback.
#include <gtest/gtest.h>

#include <atomic>

#include "test_util.h"
#include "transport/transport.h"

namespace keel::transport {
namespace {

using namespace testing;  // NOLINT
using raft::Message;
using raft::MessageType;

Message Snap(NodeId from, NodeId to, uint64_t payload_bytes) {
  auto snap = std::make_shared<raft::Snapshot>();
  snap->data = std::to_string(payload_bytes);  // the descriptor
  snap->metadata.index = 1000;
  snap->metadata.term = 3;
  snap->metadata.conf_state.voters = {1, 2, 3};
  Message m;
  m.type = MessageType::kSnap;
  m.from = from;
  m.to = to;
  m.term = 3;
  m.snapshot = std::move(snap);
  return m;
}

struct Pair {
  Pair() {
    EXPECT_TRUE(a.t->Start().ok());
    EXPECT_TRUE(b.t->Start().ok());
    a.t->AddPeer(2, {b.url()});
    b.t->AddPeer(1, {a.url()});
  }
  Member a{1};
  Member b{2};
};

TEST(SnapshotTest, SixtyFourMiBStreamedInChunksAndDeliveredAfterFinish) {
  constexpr uint64_t kSize = 64u << 20;
  Pair p;
  // The kSnap message must reach the handler only once the sink is durable.
  std::atomic<int> finished_at_delivery{-1};
  p.b.handler.on_message = [&](const Message& m) {
    if (m.type == MessageType::kSnap) {
      finished_at_delivery = p.b.store.finished();
    }
  };
  p.a.t->Send({Snap(1, 2, kSize)});
  ASSERT_TRUE(WaitFor([&] { return !p.a.handler.SnapStatus().empty(); }, 60s));
  ASSERT_EQ(p.a.handler.SnapStatus(),
            (std::vector<std::pair<NodeId, bool>>{{2, true}}));
  ASSERT_TRUE(WaitFor([&] { return p.b.handler.Count() == 1; }));
  EXPECT_EQ(finished_at_delivery.load(), 1);
  EXPECT_EQ(p.b.store.bytes(), kSize);
  EXPECT_EQ(p.b.store.crc(), TestStore::ExpectedCrc(kSize));
  EXPECT_GE(p.b.store.writes(), 64);  // 1 MiB chunks
  Message got = p.b.handler.Messages()[0];
  EXPECT_EQ(got.type, MessageType::kSnap);
  ASSERT_TRUE(got.snapshot);
  EXPECT_EQ(got.snapshot->data, std::to_string(kSize));
  EXPECT_EQ(got.snapshot->metadata.index, 1000u);
  EXPECT_EQ(got.snapshot->metadata.conf_state.voters,
            (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(p.a.t->Stats(2).snapshots_sent, 1u);
  EXPECT_EQ(p.b.t->Stats(1).snapshots_received, 1u);
}

TEST(SnapshotTest, OrdinaryMessagesFlowWhileASnapshotStreams) {
  Pair p;
  p.b.store.gate_first_write = true;  // the receiver's disk "stalls"
  p.a.t->Send({Snap(1, 2, 8u << 20)});
  for (uint64_t i = 0; i < 500; i++) p.a.t->Send({App(1, 2, i)});
  p.b.t->Send({App(2, 1, 0)});
  // While the snapshot is stuck in its sink, both directions still work.
  ASSERT_TRUE(WaitFor([&] { return p.b.handler.Count() == 500; }));
  ASSERT_TRUE(WaitFor([&] { return p.a.handler.Count() == 1; }));
  EXPECT_TRUE(p.a.handler.SnapStatus().empty());
  p.b.store.Release();
  ASSERT_TRUE(WaitFor([&] { return !p.a.handler.SnapStatus().empty(); }));
  EXPECT_EQ(p.a.handler.SnapStatus()[0], std::make_pair(NodeId{2}, true));
  ASSERT_TRUE(WaitFor([&] { return p.b.handler.Count() == 501; }));
  EXPECT_EQ(p.b.handler.Messages().back().type, MessageType::kSnap);
}

// A snapshot sent in the same Send() as ordinary messages, once the link
// is up and idle: the ordinary ones go out on the caller's thread, and the
// snapshot must still be started (by the io thread).
TEST(SnapshotTest, StartsWhenSentWithMessagesOnAnIdleLink) {
  Pair p;
  ASSERT_TRUE(WaitFor([&] { return p.a.t->Stats(2).connected; }));
  p.a.t->Send({App(1, 2, 0)});
  ASSERT_TRUE(WaitFor([&] { return p.b.handler.Count() == 1; }));
  p.a.t->Send({App(1, 2, 1), Snap(1, 2, 1u << 20)});
  ASSERT_TRUE(WaitFor([&] { return !p.a.handler.SnapStatus().empty(); }));
  EXPECT_EQ(p.a.handler.SnapStatus()[0], std::make_pair(NodeId{2}, true));
  ASSERT_TRUE(WaitFor([&] { return p.b.handler.Count() == 3; }));
}

TEST(SnapshotTest, SinkWriteFailureReportsFalse) {
  Pair p;
  p.b.store.fail_write_at = 3;
  p.a.t->Send({Snap(1, 2, 16u << 20)});
  ASSERT_TRUE(WaitFor([&] { return !p.a.handler.SnapStatus().empty(); }));
  EXPECT_EQ(p.a.handler.SnapStatus()[0], std::make_pair(NodeId{2}, false));
  ASSERT_TRUE(WaitFor([&] { return p.b.store.abandoned() == 1; }));
  EXPECT_EQ(p.b.store.finished(), 0);
  EXPECT_EQ(p.b.handler.Count(), 0u);  // never delivered
  EXPECT_EQ(p.a.t->Stats(2).snapshots_failed, 1u);

  // The next snapshot goes through.
  p.b.store.fail_write_at = -1;
  p.a.t->Send({Snap(1, 2, 1u << 20)});
  ASSERT_TRUE(WaitFor([&] { return p.a.handler.SnapStatus().size() == 2; }));
  EXPECT_EQ(p.a.handler.SnapStatus()[1], std::make_pair(NodeId{2}, true));
}

TEST(SnapshotTest, SinkFinishFailureReportsFalse) {
  Pair p;
  p.b.store.fail_finish = true;
  p.a.t->Send({Snap(1, 2, 3u << 20)});
  ASSERT_TRUE(WaitFor([&] { return !p.a.handler.SnapStatus().empty(); }));
  EXPECT_EQ(p.a.handler.SnapStatus()[0], std::make_pair(NodeId{2}, false));
  EXPECT_EQ(p.b.handler.Count(), 0u);
}

TEST(SnapshotTest, SourceFailureReportsFalse) {
  Pair p;
  p.a.store.fail_open = true;
  p.a.t->Send({Snap(1, 2, 1u << 20)});
  ASSERT_TRUE(WaitFor([&] { return !p.a.handler.SnapStatus().empty(); }));
  EXPECT_EQ(p.a.handler.SnapStatus()[0], std::make_pair(NodeId{2}, false));
}

TEST(SnapshotTest, UnreachableReceiverReportsFalse) {
  Member a(1, 0xc1, 0, [](Options& o) { o.dial_timeout = 2s; });
  ASSERT_TRUE(a.t->Start().ok());
  a.t->AddPeer(2, {"127.0.0.1:1"});  // nothing listens on port 1
  a.t->Send({Snap(1, 2, 1u << 20)});
  ASSERT_TRUE(WaitFor([&] { return !a.handler.SnapStatus().empty(); }));
  EXPECT_EQ(a.handler.SnapStatus()[0], std::make_pair(NodeId{2}, false));
}

TEST(SnapshotTest, EmptyPayload) {
  Pair p;
  p.a.t->Send({Snap(1, 2, 0)});
  ASSERT_TRUE(WaitFor([&] { return !p.a.handler.SnapStatus().empty(); }));
  EXPECT_EQ(p.a.handler.SnapStatus()[0], std::make_pair(NodeId{2}, true));
  ASSERT_TRUE(WaitFor([&] { return p.b.handler.Count() == 1; }));
}

}  // namespace
}  // namespace keel::transport
