// Real transports on loopback: ordering, batching, reconnection, handshake
// refusals, queue overflow, garbage on the listener, the fault hook.
#include "transport/transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "test_util.h"
#include "transport/wire.h"

namespace keel::transport {
namespace {

using namespace testing;  // NOLINT
using raft::Message;
using raft::MessageType;

// Checks that the messages from `from` arrived with indexes 0..n-1 in order.
void ExpectInOrder(Recorder& r, NodeId from, uint64_t n) {
  uint64_t next = 0;
  for (const auto& m : r.Messages()) {
    if (m.from != from) continue;
    ASSERT_EQ(m.index, next) << "from " << from;
    next++;
  }
  EXPECT_EQ(next, n);
}

TEST(TransportTest, TwoMembersExchangeThousandsInOrder) {
  Member a(1), b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  b.t->AddPeer(1, {a.url()});
  constexpr uint64_t kN = 5000;
  // Both directions at once, in Send() calls of varying size, with at most
  // 1000 messages in flight (Raft's in-flight window does the same; the
  // queue bound would otherwise drop a burst this size).
  auto send = [](Member& m, NodeId from, NodeId to, Recorder& receiver) {
    uint64_t i = 0;
    for (size_t batch = 1; i < kN; batch = batch % 37 + 1) {
      ASSERT_TRUE(WaitFor([&] { return receiver.Count() + 1000 > i; }));
      std::vector<Message> msgs;
      for (size_t k = 0; k < batch && i < kN; k++) {
        msgs.push_back(App(from, to, i++));
      }
      m.t->Send(std::move(msgs));
    }
  };
  // Wait for the links first: messages sent before a first dial completes
  // wait in the queue, but bounded by the queue size.
  ASSERT_TRUE(WaitFor(
      [&] { return a.t->Stats(2).connected && b.t->Stats(1).connected; }));
  std::thread other([&] { send(b, 2, 1, a.handler); });
  send(a, 1, 2, b.handler);
  other.join();
  ASSERT_TRUE(WaitFor([&] { return b.handler.Count() == kN; }))
      << b.handler.Count() << " dropped " << a.t->Stats(2).msgs_dropped;
  ASSERT_TRUE(WaitFor([&] { return a.handler.Count() == kN; }));
  ExpectInOrder(b.handler, 1, kN);
  ExpectInOrder(a.handler, 2, kN);
  // The sender counts a write when its completion runs, which may be after
  // the receiver has already handled the messages.
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).msgs_sent == kN; }))
      << a.t->Stats(2).msgs_sent;
  PeerStats s = a.t->Stats(2);
  EXPECT_EQ(s.msgs_dropped, 0u);
  EXPECT_EQ(b.t->Stats(1).msgs_received, kN);
  EXPECT_GT(b.t->Stats(1).bytes_received, 0u);
  EXPECT_EQ(a.handler.Unreachable(2), 0);
}

// Messages far larger than the socket buffer, one Send() each: most
// direct sends (from the caller's thread) fill the socket part way and leave
// the rest of a frame to the io thread, and the messages behind it must
// queue until that tail is out. Order, count and the sent counter hold.
TEST(TransportTest, LargeMessagesFillTheSocketAndStayInOrder) {
  Member a(1), b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  b.t->AddPeer(1, {a.url()});
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).connected; }));
  constexpr uint64_t kN = 300;
  constexpr size_t kPayload = 96 << 10;
  std::thread sender([&] {
    for (uint64_t i = 0; i < kN; i++) a.t->Send({App(1, 2, i, kPayload)});
  });
  // Meanwhile small messages the other way, on the same sockets' peers.
  for (uint64_t i = 0; i < 100; i++) b.t->Send({App(2, 1, i)});
  sender.join();
  ASSERT_TRUE(WaitFor([&] { return b.handler.Count() == kN; }))
      << b.handler.Count() << " dropped " << a.t->Stats(2).msgs_dropped;
  ExpectInOrder(b.handler, 1, kN);
  for (const auto& m : b.handler.Messages()) {
    ASSERT_EQ(m.entries.size(), 1u);
    ASSERT_EQ(m.entries[0].data.size(), kPayload);
  }
  ASSERT_TRUE(WaitFor([&] { return a.handler.Count() == 100; }));
  ExpectInOrder(a.handler, 2, 100);
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).msgs_sent == kN; }))
      << a.t->Stats(2).msgs_sent;
  EXPECT_EQ(a.t->Stats(2).msgs_dropped, 0u);
  EXPECT_GT(a.t->Stats(2).bytes_sent, kN * kPayload);
}

// Options::external_io: no io thread; the owner drives the io (keel's Raft
// loop does). Every handler runs on the driving thread, messages flow both
// ways in order (large ones too, which need the io side to finish writing
// what a direct send left), Wake() ends a long RunOneUntil from another
// thread, and Stop() closes without anybody driving.
TEST(TransportTest, ExternalIoRunsOnTheDrivingThread) {
  // No pings: no timer may end a RunOneUntil that only Wake() should end.
  auto quiet = [](Options& o) {
    o.ping_interval = std::chrono::hours(1);
    o.peer_timeout = std::chrono::hours(2);
  };
  Member a(1, 0xc1, 0, quiet);
  Member b(2, 0xc1, 0, [&](Options& o) {
    quiet(o);
    o.external_io = true;
  });
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  b.t->AddPeer(1, {a.url()});

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> wakes{0};
  std::atomic<int> foreign_calls{0};
  std::thread::id driver_id;
  std::mutex id_mu;
  b.handler.on_message = [&](const raft::Message&) {
    std::lock_guard l(id_mu);
    if (std::this_thread::get_id() != driver_id) foreign_calls++;
  };
  std::thread driver([&] {
    {
      std::lock_guard l(id_mu);
      driver_id = std::this_thread::get_id();
    }
    uint64_t i = 0;
    while (!stop.load()) {
      b.t->RunOneUntil(std::chrono::steady_clock::now() +
                       std::chrono::seconds(60));
      b.t->Poll();
      wakes++;
      // b answers from the driving thread, as the Raft loop does.
      while (i < b.handler.Count()) b.t->Send({App(2, 1, i++, 64 << 10)});
    }
  });
  constexpr uint64_t kN = 200;
  for (uint64_t i = 0; i < kN; i++) a.t->Send({App(1, 2, i, 32 << 10)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.Count() == kN; }))
      << b.handler.Count() << " dropped " << a.t->Stats(2).msgs_dropped;
  ExpectInOrder(b.handler, 1, kN);
  ASSERT_TRUE(WaitFor([&] { return a.handler.Count() == kN; }))
      << a.handler.Count() << " dropped " << b.t->Stats(1).msgs_dropped;
  ExpectInOrder(a.handler, 2, kN);
  EXPECT_EQ(foreign_calls.load(), 0);

  // Nothing arrives now: only Wake() can end the driver's 60 s wait.
  ASSERT_TRUE(WaitFor([&] {
    uint64_t before = wakes.load();
    b.t->Wake();
    return WaitFor([&] { return wakes.load() > before; });
  }));
  stop = true;
  b.t->Wake();
  driver.join();
  b.t->Stop();
  EXPECT_TRUE(WaitFor([&] { return !a.t->Stats(2).connected; }));
}

TEST(TransportTest, ThreeMembersAllPairsInOrder) {
  std::vector<std::unique_ptr<Member>> ms;
  for (NodeId id = 1; id <= 3; id++) {
    ms.push_back(std::make_unique<Member>(id));
    ASSERT_TRUE(ms.back()->t->Start().ok());
  }
  for (NodeId a = 1; a <= 3; a++) {
    for (NodeId b = 1; b <= 3; b++) {
      if (a != b) ms[a - 1]->t->AddPeer(b, {ms[b - 1]->url()});
    }
  }
  constexpr uint64_t kN = 2000;
  std::vector<std::thread> threads;
  for (NodeId from = 1; from <= 3; from++) {
    threads.emplace_back([&, from] {
      for (uint64_t i = 0; i < kN; i++) {
        std::vector<Message> msgs;
        for (NodeId to = 1; to <= 3; to++) {
          if (to != from) msgs.push_back(App(from, to, i));
        }
        ms[from - 1]->t->Send(std::move(msgs));
      }
    });
  }
  for (auto& t : threads) t.join();
  for (NodeId id = 1; id <= 3; id++) {
    Recorder& r = ms[id - 1]->handler;
    ASSERT_TRUE(WaitFor([&] { return r.Count() == 2 * kN; }))
        << "member " << id << " got " << r.Count();
    for (NodeId from = 1; from <= 3; from++) {
      if (from != id) ExpectInOrder(r, from, kN);
    }
  }
}

TEST(TransportTest, QueuedMessagesAreCoalescedIntoFewWrites) {
  Member a(1), b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).connected; }));
  const uint64_t writes_before = a.t->Stats(2).writes;  // pings
  constexpr uint64_t kN = 2000;
  std::vector<Message> msgs;
  for (uint64_t i = 0; i < kN; i++) msgs.push_back(App(1, 2, i));
  a.t->Send(std::move(msgs));
  ASSERT_TRUE(WaitFor([&] { return b.handler.Count() == kN; }));
  ExpectInOrder(b.handler, 1, kN);
  const uint64_t writes = a.t->Stats(2).writes - writes_before;
  // One Send() of 2000 small messages is one kick and one batch; a ping
  // may add a write or two.
  EXPECT_LE(writes, 3u) << "2000 messages took " << writes << " writes";
}

TEST(TransportTest, PeerRestartedOnSamePortIsReconnected) {
  Member a(1, 0xc1, 0, [](Options& o) { o.backoff_max = 200ms; });
  ASSERT_TRUE(a.t->Start().ok());
  auto b = std::make_unique<Member>(2);
  ASSERT_TRUE(b->t->Start().ok());
  const uint16_t port = b->t->port();
  a.t->AddPeer(2, {b->url()});
  a.t->Send({App(1, 2, 0)});
  ASSERT_TRUE(WaitFor([&] { return b->handler.Count() == 1; }));

  b.reset();  // stops: closes its listener and connections
  ASSERT_TRUE(WaitFor([&] { return !a.t->Stats(2).connected; }));
  // The broken connection is reported (Raft then probes the peer).
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) >= 1; }));

  b = std::make_unique<Member>(2, 0xc1, port);
  ASSERT_TRUE(b->t->Start().ok()) << "rebinding port " << port;
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).connected; }));
  for (uint64_t i = 0; i < 100; i++) a.t->Send({App(1, 2, i)});
  ASSERT_TRUE(WaitFor([&] { return b->handler.Count() == 100; }));
  ExpectInOrder(b->handler, 1, 100);
}

TEST(TransportTest, ClusterIdMismatchIsRefused) {
  LogCapture logs;
  Member a(1, 0xaaaa), b(2, 0xbbbb);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  a.t->Send({App(1, 2, 0)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) >= 1; }));
  ASSERT_TRUE(WaitFor([&] {
    return logs.Contains("refused connection from") &&
           logs.Contains("cluster id mismatch") &&
           logs.Contains("refused by member 2");
  }));
  EXPECT_FALSE(a.t->Stats(2).connected);
  EXPECT_EQ(b.handler.Count(), 0u);
}

TEST(TransportTest, WrongMemberIdIsRefused) {
  LogCapture logs;
  Member a(1), b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(3, {b.url()});  // member 2 listens there, not 3
  a.t->Send({App(1, 3, 0)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(3) >= 1; }));
  ASSERT_TRUE(WaitFor([&] { return logs.Contains("wrong member id"); }));
  EXPECT_EQ(b.handler.Count(), 0u);
}

// A socket that listens but never accepts: connects succeed (backlog),
// handshakes never complete.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    KEEL_CHECK(bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0);
    KEEL_CHECK(listen(fd_, 16) == 0);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~BlackHole() { close(fd_); }
  std::string url() const { return "127.0.0.1:" + std::to_string(port_); }
  int fd() const { return fd_; }

 private:
  int fd_;
  uint16_t port_;
};

TEST(TransportTest, QueueOverflowDropsAndReportsUnreachable) {
  BlackHole hole;
  Member a(1, 0xc1, 0, [](Options& o) {
    o.max_queued_msgs_per_peer = 16;
    o.dial_timeout = 30s;  // the handshake hangs; the queue fills
  });
  ASSERT_TRUE(a.t->Start().ok());
  a.t->AddPeer(2, {hole.url()});
  std::vector<Message> msgs;
  for (uint64_t i = 0; i < 100; i++) msgs.push_back(App(1, 2, i));
  a.t->Send(std::move(msgs));
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) >= 1; }));
  EXPECT_EQ(a.t->Stats(2).msgs_dropped, 84u);
  EXPECT_EQ(a.handler.Unreachable(2), 1);  // one report per Send()
}

TEST(TransportTest, MessagesToUnknownPeerAreReportedUnreachable) {
  Member a(1);
  ASSERT_TRUE(a.t->Start().ok());
  a.t->Send({App(1, 9, 0)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(9) == 1; }));
}

// Connects a raw socket to port, writes bytes, and reports whether the
// listener closed the connection within the deadline.
bool ListenerClosesAfter(uint16_t port, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return false;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!write(fd, bytes.data(), bytes.size());
  // Read until EOF or reset; a refusal answer (HelloAck) may come first.
  char buf[256];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) break;
    if (n < 0) {  // timed out: still open
      close(fd);
      return false;
    }
  }
  close(fd);
  return true;
}

TEST(TransportTest, GarbageOnTheListenerClosesOnlyThatConnection) {
  LogCapture logs;
  Member a(1), b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  const uint16_t port = b.t->port();

  // Bad magic: an HTTP request, or noise.
  EXPECT_TRUE(ListenerClosesAfter(
      port,
      "GET /raft/stream HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(64, 'z')));
  std::string noise(4096, '\0');
  for (size_t i = 0; i < noise.size(); i++) noise[i] = PayloadByte(i);
  EXPECT_TRUE(ListenerClosesAfter(port, noise));

  // A good handshake, then: an oversized frame; a frame with a bad CRC;
  // an undecodable message; a message claiming another sender.
  Hello h;
  h.cluster_id = 0xc1;
  h.from = 1;
  h.to = 2;
  std::string hello;
  EncodeHello(h, &hello);
  std::string oversized =
      hello + std::string("\xff\xff\xff\x7f", 4) + std::string(64, 'a');
  EXPECT_TRUE(ListenerClosesAfter(port, oversized));
  std::string bad_crc = hello;
  AppendMessageFrame(App(1, 2, 0), &bad_crc);
  bad_crc[kHelloSize + 5] ^= 1;
  EXPECT_TRUE(ListenerClosesAfter(port, bad_crc));
  std::string undecodable = hello;
  AppendFrame(FrameType::kMsg, "not a message", &undecodable);
  EXPECT_TRUE(ListenerClosesAfter(port, undecodable));
  std::string forged = hello;
  AppendMessageFrame(App(3, 2, 0), &forged);
  EXPECT_TRUE(ListenerClosesAfter(port, forged));

  EXPECT_TRUE(logs.Contains("bad magic"));
  EXPECT_TRUE(logs.Contains("bad frame length"));
  EXPECT_TRUE(logs.Contains("bad frame checksum"));
  EXPECT_TRUE(logs.Contains("undecodable message"));
  EXPECT_EQ(b.handler.Count(), 0u);

  // The member keeps serving.
  for (uint64_t i = 0; i < 10; i++) a.t->Send({App(1, 2, i)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.Count() == 10; }));
  ExpectInOrder(b.handler, 1, 10);
}

TEST(TransportTest, SilentInboundConnectionIsDropped) {
  LogCapture logs;
  Member b(2, 0xc1, 0, [](Options& o) { o.peer_timeout = 200ms; });
  ASSERT_TRUE(b.t->Start().ok());
  Hello h;
  h.cluster_id = 0xc1;
  h.from = 1;
  h.to = 2;
  std::string hello;
  EncodeHello(h, &hello);
  // Handshakes, then says nothing: no pings, no messages.
  EXPECT_TRUE(ListenerClosesAfter(b.t->port(), hello));
  EXPECT_TRUE(logs.Contains("silent for 200 ms"));
}

// Accepts one connection, completes the handshake as member 2, then never
// answers a ping (a hung peer).
class MutePeer {
 public:
  MutePeer() {
    thread_ = std::thread([this] {
      int conn = accept(hole_fd(), nullptr, nullptr);
      if (conn < 0) return;
      char buf[kHelloSize];
      size_t got = 0;
      while (got < kHelloSize) {
        ssize_t n = read(conn, buf + got, kHelloSize - got);
        if (n <= 0) break;
        got += n;
      }
      HelloAck ack;
      ack.cluster_id = 0xc1;
      ack.member_id = 2;
      std::string out;
      EncodeHelloAck(ack, &out);
      (void)!write(conn, out.data(), out.size());
      // Swallow whatever comes until the dialler gives up.
      while (read(conn, buf, sizeof buf) > 0) {
      }
      close(conn);
    });
  }
  ~MutePeer() {
    shutdown(hole_fd(), SHUT_RDWR);
    thread_.join();
  }
  std::string url() const { return hole_.url(); }

 private:
  int hole_fd() const { return hole_.fd(); }
  BlackHole hole_;
  std::thread thread_;
};

TEST(TransportTest, PeerThatStopsAnsweringIsDeclaredDown) {
  MutePeer mute;
  Member a(1, 0xc1, 0, [](Options& o) {
    o.ping_interval = 20ms;
    o.peer_timeout = 200ms;
  });
  ASSERT_TRUE(a.t->Start().ok());
  a.t->AddPeer(2, {mute.url()});
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).connected; }));
  ASSERT_TRUE(WaitFor([&] { return !a.t->Stats(2).connected; }));
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) >= 1; }));
}

TEST(TransportTest, StartOnATakenPortFailsClearly) {
  Member a(1);
  ASSERT_TRUE(a.t->Start().ok());
  Member b(2, 0xc1, a.t->port());
  Status s = b.t->Start();
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_NE(s.message().find("Address already in use"), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find(std::to_string(a.t->port())), std::string::npos);
  EXPECT_FALSE(b.t->Start().ok());  // once only
  b.t->Stop();
  b.t->Stop();  // idempotent
}

TEST(TransportTest, FaultHookDropsAndDelays) {
  std::atomic<int> seen{0};
  Member a(1, 0xc1, 0, [&](Options& o) {
    o.fault_hook = [&](const Message& m) {
      seen++;
      if (m.type == MessageType::kHeartbeat) return FaultDecision::Drop();
      if (m.index == 0) return FaultDecision::Delay(300ms);
      return FaultDecision::Deliver();
    };
  });
  Member b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).connected; }));
  Message hb;
  hb.type = MessageType::kHeartbeat;
  hb.from = 1;
  hb.to = 2;
  a.t->Send({hb, App(1, 2, 0), App(1, 2, 1), App(1, 2, 2)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.Count() == 3; }));
  auto got = b.handler.Messages();
  // The delayed message comes last; the heartbeat never.
  EXPECT_EQ(got[0].index, 1u);
  EXPECT_EQ(got[1].index, 2u);
  EXPECT_EQ(got[2].index, 0u);
  EXPECT_EQ(seen.load(), 4);
  EXPECT_EQ(a.handler.Unreachable(2), 0);
}

TEST(TransportTest, MeasuresRoundTripTime) {
  Member a(1, 0xc1, 0, [](Options& o) { o.ping_interval = 20ms; });
  Member b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).rtt.count() > 0; }));
  EXPECT_LT(a.t->Stats(2).rtt, 1s);
}

TEST(TransportTest, RemovedPeerIsDisconnected) {
  Member a(1), b(2);
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {b.url()});
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).connected; }));
  a.t->RemovePeer(2);
  ASSERT_TRUE(WaitFor([&] { return !a.t->Stats(2).connected; }));
  a.t->Send({App(1, 2, 0)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) == 1; }));
  // Added back with new URLs, it is dialled again.
  a.t->AddPeer(2, {"127.0.0.1:1", b.url()});
  ASSERT_TRUE(WaitFor([&] { return a.t->Stats(2).connected; }, 20s));
}

}  // namespace
}  // namespace keel::transport
