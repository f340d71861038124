// InboundConn: one accepted connection. On a TLS listener, first the TLS
// handshake and etcd's certificate checks (CRL, allowed CN and hostname).
// Then reads and checks the Hello (protocol
// version, cluster id, our member id), answers with a HelloAck, then either
//  - message stream: decodes kMsg frames and hands each message to the
//    Handler, answers kPing with kPong; or
//  - snapshot stream: kSnapHeader -> SnapshotStore::CreateForReceive,
//    kSnapChunk -> ByteSink::Write, kSnapEnd -> ByteSink::Finish, then
//    delivers the kSnap message and answers kSnapAck. Sink calls run on the
//    worker thread; no frame is read meanwhile (back-pressure on the
//    sender through TCP).
// Garbage (bad magic or checksum, oversized frame, undecodable message, a
// message not from the handshaken peer or not to us) closes the connection
// with a log line; nothing else is affected.
//
// Thread safety: io thread only.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include "transport/byte_stream.h"
#include "transport/context.h"
#include "transport/wire.h"

namespace keel::transport {

class InboundConn : public std::enable_shared_from_this<InboundConn> {
 public:
  // tls: the listener is https (ctx->tls() is set).
  InboundConn(Context* ctx, asio::ip::tcp::socket socket, uint64_t conn_id,
              bool tls);

  // Registers in ctx->inbound() and reads the Hello.
  void Start();
  // Closes without further Handler calls; a pending sink is abandoned.
  void Close();

 private:
  enum class SnapState { kHeader, kChunks, kDone };

  void ReadHello();
  void OnHello();
  // Drops the connection if nothing arrived for opts.peer_timeout while we
  // were waiting for bytes.
  void CheckSilence();
  void ReadMore();
  void OnRead(asio::error_code ec, size_t n);
  // Handles buffered frames until a sink call is in flight or more bytes
  // are needed.
  void Pump();
  // Return false when the connection was closed.
  bool OnMessageFrame(Frame& f);
  bool OnSnapshotFrame(Frame& f);
  void SinkDone(Status s, const char* what);
  void Finished(Status s);
  // Answers the sender and closes once the answer is written.
  void AnswerSnapshot(bool ok, const std::string& reason);
  void QueueWrite(std::string data);
  void WriteNext();
  // Closes with a warning naming the peer and the reason.
  void Drop(const std::string& reason);
  bool CheckAddressing(const raft::Message& m);

  Context* const ctx_;
  Stream socket_;
  const uint64_t conn_id_;
  std::string remote_;              // "ip:port", for logs
  asio::steady_timer hello_timer_;  // handshake deadline, then silence
  std::chrono::steady_clock::time_point last_read_;
  std::string hello_buf_;
  Hello hello_;
  bool accepted_ = false;
  bool closed_ = false;
  bool reading_ = false;
  // A sink call is in flight on the worker: frames wait.
  bool busy_ = false;
  std::array<char, 64 * 1024> read_buf_;
  FrameDecoder decoder_;
  std::deque<std::string> writes_;
  bool writing_ = false;
  bool close_after_write_ = false;

  // Snapshot stream only.
  SnapState snap_state_ = SnapState::kHeader;
  raft::Message snap_msg_;
  std::shared_ptr<ByteSink> sink_;
  uint64_t snap_bytes_ = 0;
};

}  // namespace keel::transport
