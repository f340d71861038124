// SnapshotSender: streams one kSnap message to a peer on its own connection.
//
// Steps: SnapshotStore::OpenForSend (worker thread) -> dial + handshake
// (kSnapshot stream) -> kSnapHeader frame (the encoded kSnap message) ->
// kSnapChunk frames of up to opts.snapshot_chunk_bytes, each read from the
// ByteSource on the worker thread and written before the next is read ->
// kSnapEnd -> wait for the receiver's kSnapAck, sent after its Finish().
// done(ok) runs once on the io thread; any failure (source, connection,
// refusal, negative ack, no progress for opts.snapshot_idle_timeout) is
// done(false). Ordinary messages are unaffected: they use another socket.
//
// Thread safety: io thread only (the ByteSource is used on the worker
// thread, one call at a time).
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "transport/byte_stream.h"
#include "transport/connector.h"
#include "transport/context.h"
#include "transport/wire.h"

namespace keel::transport {

class SnapshotSender : public std::enable_shared_from_this<SnapshotSender> {
 public:
  using Done = std::function<void(bool ok)>;

  static std::shared_ptr<SnapshotSender> Start(Context* ctx, std::string url,
                                               raft::Message m, Done done);
  // done will not run.
  void Cancel();

  SnapshotSender(Context* ctx, std::string url, raft::Message m, Done done);

 private:
  void Opened(Result<std::unique_ptr<ByteSource>> source);
  void Connected(Status s, Stream socket);
  void ReadChunk();
  void ChunkRead(Result<std::string> frame);
  void Write(std::string frame, bool last);
  void ReadAck();
  void ResetIdleTimer();
  void Finish(bool ok, const std::string& reason);

  Context* const ctx_;
  const std::string url_;
  const raft::Message msg_;
  const NodeId to_;
  Done done_;
  bool finished_ = false;
  // Shared with the worker thread while a read is in progress; the worker
  // task holds a reference, so it never outlives its user.
  std::shared_ptr<ByteSource> source_;
  std::shared_ptr<Connector> connector_;
  std::optional<Stream> socket_;
  asio::steady_timer idle_timer_;
  std::string out_;
  bool end_sent_ = false;
  uint64_t payload_bytes_ = 0;
  uint64_t chunks_ = 0;
  std::array<char, 512> read_buf_;
  FrameDecoder decoder_{4096};
  std::chrono::steady_clock::time_point started_;
};

}  // namespace keel::transport
