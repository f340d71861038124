// Peer: everything we send to one member. Owns the persistent message
// stream (dial, handshake, batched writes, pings, reconnection with
// jittered exponential backoff) and the queue of kSnap messages, which it
// hands one at a time to a SnapshotSender.
//
// States of the message stream:
//   kIdle --Start--> kDialing --ok--> kConnected --error--> kBackoff
//   kDialing --error--> kBackoff --timer--> kDialing;  any --Close--> kClosed
//
// Thread safety: Enqueue() and SetUrls() from any thread (they take mu_);
// everything else on the io thread only. mu_ is never held while calling
// out (Handler, asio).
//
// Direct sends: when the link is a plain TCP connection and the io thread
// has nothing queued or in flight, Enqueue() encodes the messages and
// writes them on the caller's thread (a non-blocking send under mu_), so
// that a message does not wait for the io thread to wake: on a member with
// one request in flight that hand-off was a visible part of every write's
// latency (the leader's append and each follower's acknowledgement). What
// the socket does not take at once is left to the io thread, which writes
// it before anything else.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "metrics/metrics.h"
#include "transport/connector.h"
#include "transport/context.h"
#include "transport/snapshot_sender.h"
#include "transport/thread_annotations.h"
#include "transport/wire.h"

namespace keel::transport {

class Peer : public std::enable_shared_from_this<Peer> {
 public:
  Peer(Context* ctx, NodeId id, std::vector<std::string> urls);

  struct Dropped {
    size_t msgs = 0;   // queue full or link down: report OnUnreachable
    size_t snaps = 0;  // report OnSnapshotStatus(false)
  };
  // Any thread. Queues all of msgs (in order) under one lock, so that the
  // messages of one Send() leave in one write.
  Dropped Enqueue(std::vector<raft::Message> msgs) LOCKS_EXCLUDED(mu_);
  void SetUrls(std::vector<std::string> urls) LOCKS_EXCLUDED(mu_);

  // io thread.
  void Start();
  void Close();
  // Redial now if the link is down (after SetUrls).
  void Redial();

 private:
  enum class State { kIdle, kDialing, kConnected, kBackoff, kClosed };

  // Posts OnKick to the io thread unless one is already on its way.
  void KickLocked() EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes queue_ on the caller's thread (see the header comment); false
  // if it must be left to the io thread.
  bool SendDirectLocked() EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the socket for direct sends (-1: none) and forgets a direct
  // send's leftover.
  void ResetDirectLocked(int fd) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a completed write in the peer's stats.
  void CountWrite(size_t msgs, size_t bytes);

  // Each of these takes mu_ for its whole body.
  std::vector<std::string> Urls() LOCKS_EXCLUDED(mu_);
  void ClearKick() LOCKS_EXCLUDED(mu_);
  // fd: the socket for direct sends, or -1.
  void MarkUp(int fd) LOCKS_EXCLUDED(mu_);
  // Marks the link down and empties the queue; returns how many it held.
  size_t MarkDown() LOCKS_EXCLUDED(mu_);
  // What the io thread writes next: the bytes a direct send left over,
  // then queued messages. Marks the io thread busy (no direct sends) when
  // there is anything, or idle when not and no ping is due.
  std::vector<raft::Message> TakeBatch(std::string* rest, size_t* rest_msgs)
      LOCKS_EXCLUDED(mu_);
  std::optional<raft::Message> PopSnapshot() LOCKS_EXCLUDED(mu_);
  void CloseQueues() LOCKS_EXCLUDED(mu_);

  // io thread; called without mu_.
  void OnKick();
  void Dial();
  void OnDialed(Status s, Stream socket, const std::string& url);
  // Tears the connection (or attempt) down, drops what was queued or in
  // flight, reports OnUnreachable if anything was lost, schedules a redial.
  void Fail(const std::string& reason);
  void ScheduleRedial();
  void Flush();
  void OnWritten(asio::error_code ec, size_t bytes);
  void ReadMore();
  void OnRead(asio::error_code ec, size_t n);
  void SchedulePing();
  void MaybeStartSnapshot();

  // Constant after construction.
  Context* const ctx_;
  const NodeId id_;

  Mutex mu_;
  std::vector<std::string> urls_ GUARDED_BY(mu_);
  std::deque<raft::Message> queue_ GUARDED_BY(mu_);
  std::deque<raft::Message> snaps_ GUARDED_BY(mu_);
  // An OnKick is posted and has not yet taken the queue.
  bool kick_posted_ GUARDED_BY(mu_) = false;
  // The last connection attempt or connection failed and none succeeded
  // since: Enqueue drops instead of letting messages age in the queue.
  bool link_down_ GUARDED_BY(mu_) = false;
  // Set by Close(); Enqueue drops silently.
  bool closed_ GUARDED_BY(mu_) = false;
  // The connected plain TCP socket, for direct sends; -1 when there is
  // none (not connected, TLS, closing).
  int direct_fd_ GUARDED_BY(mu_) = -1;
  // The io thread has bytes in flight or queued to write: direct sends
  // would reorder the stream.
  bool io_busy_ GUARDED_BY(mu_) = false;
  // The tail of a direct send the socket did not take.
  std::string direct_rest_ GUARDED_BY(mu_);
  size_t direct_rest_msgs_ GUARDED_BY(mu_) = 0;  // messages it ends

  // io thread only.
  State state_ = State::kIdle;
  // Bumped whenever the connection is torn down, so completions of an old
  // connection's operations recognise themselves as stale.
  uint64_t generation_ = 0;
  std::shared_ptr<Connector> connector_;
  std::optional<Stream> socket_;
  std::string connected_url_;
  asio::steady_timer redial_timer_;
  asio::steady_timer ping_timer_;
  int failures_ = 0;  // since the last successful handshake
  size_t next_url_ = 0;
  std::string last_error_;  // to log a repeated dial error once
  bool writing_ = false;
  bool ping_due_ = false;
  std::string out_;  // the batch being written
  size_t out_msgs_ = 0;
  std::chrono::steady_clock::time_point last_heard_;  // connect or pong
  // This peer's child of the RTT histogram (io thread; set on first pong).
  metrics::Histogram* rtt_ = nullptr;
  std::array<char, 16 * 1024> read_buf_;
  FrameDecoder decoder_{64};  // only pongs come back
  std::shared_ptr<SnapshotSender> snapshot_;
};

}  // namespace keel::transport
