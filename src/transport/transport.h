// Transport: carries raft::Messages between the members of one cluster over
// TCP (standalone asio), with snapshots streamed on a side connection.
//
// Usage by the server's RaftNode loop:
//
//   Transport t(opts, &handler, &snapshot_store);
//   KEEL_RETURN_IF_ERROR(t.Start());           // binds opts.listen_url
//   t.AddPeer(2, {"http://10.0.0.2:2380"});
//   ... after each Ready: t.Send(std::move(rd.messages));
//   ... handler.OnMessage(m): hand m to the loop, which Step()s it;
//       handler.OnUnreachable(p): loop calls RawNode::ReportUnreachable(p);
//       handler.OnSnapshotStatus(p, ok): RawNode::ReportSnapshot(p, !ok).
//   t.Stop();
//
// Per peer there is one persistent "message stream" connection, dialled by
// the sender: the receiver never answers on it except for pings, so each
// direction between two members has its own connection. Everything queued
// for a peer is coalesced into one write. Messages to one peer arrive in the
// order they were sent, unless a connection breaks (then the messages in
// flight and queued are dropped and OnUnreachable reported: Raft retries).
// While a peer's link is down (after a failure, until the next successful
// handshake) messages to it are dropped at once and OnUnreachable reported,
// as etcd does; before a peer's first dial completes they wait in its queue.
// Reconnection runs in the background with jittered exponential backoff;
// a connection silent for opts.peer_timeout is declared dead.
//
// A kSnap message goes on its own connection, streamed from
// SnapshotStore::OpenForSend in chunks, so ordinary messages keep flowing.
// The wire format is in wire.h.
//
// Threading contract:
//  - All public methods are thread-safe. Send() never blocks on the network:
//    it takes a short per-peer lock and, when the peer's plain TCP link is
//    idle, writes the messages with a non-blocking send on the caller's
//    thread (see peer.h); otherwise, and for what the socket did not take,
//    it posts to the io thread.
//  - One io thread runs every other socket operation and every Handler
//    callback. With Options::external_io there is no io thread: the owner
//    runs the transport's io with Poll() and RunOneUntil() from one thread
//    of its own (keel's Raft loop, so that a peer's message is read and
//    stepped on one thread, without a hand-off), and that thread is then
//    "the io thread" below; Stop() runs what is left on its caller's
//    thread, once the owner has stopped driving. The price: what a direct
//    send left over, and what was queued behind it, goes out only when the
//    owner next polls (for keel's Raft loop, after its fdatasync).
//    Callbacks must not block for long and must not call Stop() (Send,
//    AddPeer, UpdatePeer, RemovePeer and Stats are fine from a callback).
//    No transport lock is held while a callback runs.
//  - One snapshot worker thread makes every SnapshotStore, ByteSource and
//    ByteSink call; those may block on disk IO.
//  - After Stop() returns no callback runs any more. Stop() waits for a
//    SnapshotStore/ByteSource/ByteSink call in progress to return.
//  - Options::fault_hook runs on the thread calling Send().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "raft/types.h"
#include "transport/byte_stream.h"
#include "transport/tls_options.h"

namespace keel::transport {

using raft::NodeId;

// Implemented by the server. Called on the transport's io thread.
class Handler {
 public:
  virtual ~Handler() = default;
  // Any message from a peer; a kSnap only once its payload is durable
  // (the receiving SnapshotStore sink's Finish() succeeded).
  virtual void OnMessage(raft::Message m) = 0;
  // Messages to peer were lost: its queue overflowed, its link is down, a
  // connection to it failed, or it is not a known peer.
  virtual void OnUnreachable(NodeId peer) = 0;
  // Outcome of a kSnap we sent: ok once the receiver acknowledged Finish().
  virtual void OnSnapshotStatus(NodeId peer, bool ok) = 0;
};

// Snapshot payloads can be gigabytes: they are streamed, never held in
// memory whole. Implemented by the server; called on the snapshot worker
// thread.
class SnapshotStore {
 public:
  virtual ~SnapshotStore() = default;
  // The payload of a snapshot we send. The kSnap message's snapshot->data is
  // a small descriptor chosen by the server; it travels as is.
  virtual Result<std::unique_ptr<ByteSource>> OpenForSend(
      const raft::Snapshot& snap) = 0;
  // Where a received payload goes (see ByteSink).
  virtual Result<std::unique_ptr<ByteSink>> CreateForReceive(
      const raft::SnapshotMetadata& md, NodeId from) = 0;
};

// What the test-only fault hook decides for one outgoing message.
struct FaultDecision {
  enum class Kind : uint8_t { kDeliver, kDrop, kDelay };
  Kind kind = Kind::kDeliver;
  std::chrono::milliseconds delay{0};  // kDelay only

  static FaultDecision Deliver() { return {}; }
  static FaultDecision Drop() { return {Kind::kDrop, {}}; }
  static FaultDecision Delay(std::chrono::milliseconds d) {
    return {Kind::kDelay, d};
  }
};
// Sees every message given to Send() (kSnap included). A dropped message is
// lost silently (no OnUnreachable), like a lossy network; a delayed one is
// queued after the delay, so it may overtake or be overtaken.
using FaultHook = std::function<FaultDecision(const raft::Message&)>;

struct Options {
  uint64_t cluster_id = 0;
  NodeId local_id = raft::kNone;
  // Where peers reach us: "http://127.0.0.1:2380" or "127.0.0.1:2380";
  // port 0 picks a free port (see Transport::port()).
  std::string listen_url;
  // TLS: the listener uses it when listen_url is https://, the dialer for
  // every https:// peer URL (with cert_file as its client certificate).
  TlsOptions tls;

  // Like etcd's 4096-message send buffer; a full queue drops.
  size_t max_queued_msgs_per_peer = 4096;
  // One write carries at most about this many bytes of messages.
  size_t max_batch_bytes = 4u << 20;
  size_t snapshot_chunk_bytes = 1u << 20;

  // Connect plus handshake, for dialling and for accepting.
  std::chrono::milliseconds dial_timeout{5000};
  // Reconnection: backoff_min doubling to backoff_max, each delay jittered
  // to between half and all of its value.
  std::chrono::milliseconds backoff_min{50};
  std::chrono::milliseconds backoff_max{2000};
  // Pings measure round-trip time and keep the connection audibly alive.
  std::chrono::milliseconds ping_interval{1000};
  // A connection silent for this long is dead (half-open TCP, hung peer):
  // the dialler hears no pong, the listener no frame. Keep it well above
  // ping_interval.
  std::chrono::milliseconds peer_timeout{5000};
  // A snapshot send fails when no chunk moves for this long.
  std::chrono::milliseconds snapshot_idle_timeout{30000};
  // Seeds the backoff jitter; 0 derives a seed from local_id and the clock.
  uint64_t jitter_seed = 0;

  // Answers a membership query (StreamKind::kMembers) from a member that
  // joins the cluster; unset: such queries are refused. Called on the io
  // thread; must not block for long.
  std::function<std::string()> membership;

  // No io thread: the owner drives the io (Poll, RunOneUntil, Wake).
  bool external_io = false;

  // Test only: unset (the default) in production.
  FaultHook fault_hook;
};

struct PeerStats {
  bool connected = false;  // message stream to the peer is up
  uint64_t msgs_sent = 0;
  uint64_t bytes_sent = 0;  // message stream, framing included
  uint64_t writes = 0;      // socket writes on the message stream
  uint64_t msgs_dropped = 0;
  uint64_t msgs_received = 0;
  uint64_t bytes_received = 0;
  uint64_t snapshots_sent = 0;
  uint64_t snapshots_failed = 0;
  uint64_t snapshots_received = 0;
  // Smoothed (1/8 weight per sample, as TCP does); zero until measured.
  std::chrono::microseconds rtt{0};
};

class Transport {
 public:
  // handler and store must outlive the Transport.
  Transport(Options opts, Handler* handler, SnapshotStore* store);
  ~Transport();  // Stop()s
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Binds and listens (IOError naming the address if that fails, e.g. the
  // port is taken), then starts the threads and dials known peers. Once.
  Status Start();
  // Closes every connection, joins the threads; idempotent. Pending
  // snapshot sinks are destroyed without Finish(). No restart.
  void Stop();
  // The bound port, after a successful Start().
  uint16_t port() const;

  // Peers may be added before or after Start(). Adding a known peer
  // updates its URLs. URLs are tried in turn when dialling.
  void AddPeer(NodeId id, std::vector<std::string> urls);
  // New URLs take effect at the next dial; a down link is redialled now.
  void UpdatePeer(NodeId id, std::vector<std::string> urls);
  // Closes the peer's connections and drops what is queued for it.
  void RemovePeer(NodeId id);

  // Queues each message for m.to. Never blocks on the network.
  void Send(std::vector<raft::Message> msgs);

  // Options::external_io only. From the one thread that drives the io,
  // after Start() and before Stop(): Poll() runs the handlers that are
  // ready without blocking; RunOneUntil() blocks until one handler has run
  // (socket events, timers, Wake()) or the deadline passes. Wake() may be
  // called from any thread; a wake with nobody waiting makes the next
  // RunOneUntil return at once.
  void Poll();
  void RunOneUntil(std::chrono::steady_clock::time_point deadline);
  void Wake();

  // Counters for one peer (zeros if unknown), and for every peer seen.
  PeerStats Stats(NodeId peer) const;
  std::map<NodeId, PeerStats> AllStats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::transport
