#include "transport/inbound.h"

#include <spdlog/spdlog.h>

#include "common/coding.h"
#include "raft/codec.h"

namespace keel::transport {

using asio::ip::tcp;

namespace {

Stream MakeStream(Context* ctx, tcp::socket s, bool tls) {
  if (tls) return Stream(std::move(s), ctx->tls()->server());
  return Stream(std::move(s));
}

}  // namespace

InboundConn::InboundConn(Context* ctx, tcp::socket socket, uint64_t conn_id,
                         bool tls)
    : ctx_(ctx),
      socket_(MakeStream(ctx, std::move(socket), tls)),
      conn_id_(conn_id),
      hello_timer_(ctx->io()) {
  asio::error_code ec;
  auto ep = socket_.socket().remote_endpoint(ec);
  remote_ =
      ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
}

void InboundConn::Start() {
  ctx_->inbound()[conn_id_] = weak_from_this();
  TuneSocket(socket_.socket());
  // Until the Hello is read, a connection gets no more than its 41 bytes
  // and dial_timeout.
  hello_timer_.expires_after(ctx_->opts().dial_timeout);
  hello_timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
    if (ec || self->accepted_ || self->closed_) return;
    self->Drop("no handshake in time");
  });
  if (socket_.tls() == nullptr) {
    ReadHello();
    return;
  }
  socket_.tls()->async_handshake(
      asio::ssl::stream_base::server,
      [self = shared_from_this()](asio::error_code ec) {
        if (self->closed_) return;
        if (ec) {
          self->Drop("TLS handshake: " + ec.message());
          return;
        }
        Status s = self->ctx_->tls()->CheckPeer(
            self->socket_.tls()->native_handle(), /*server_side=*/true);
        if (!s.ok()) {
          self->Drop("rejected peer certificate: " + s.message());
          return;
        }
        self->ReadHello();
      });
}

void InboundConn::ReadHello() {
  hello_buf_.resize(kHelloSize);
  asio::async_read(socket_, asio::buffer(hello_buf_),
                   [self = shared_from_this()](asio::error_code ec, size_t) {
                     if (self->closed_) return;
                     if (ec) {
                       spdlog::debug(
                           "transport: connection from {} closed "
                           "before handshake: {}",
                           self->remote_, ec.message());
                       self->Close();
                       return;
                     }
                     self->OnHello();
                   });
}

void InboundConn::OnHello() {
  hello_timer_.cancel();
  Status s = DecodeHello(hello_buf_, &hello_);
  if (!s.ok()) {
    Drop("bad handshake: " + s.message());
    return;
  }
  const Options& o = ctx_->opts();
  HelloAck ack;
  ack.cluster_id = o.cluster_id;
  ack.member_id = o.local_id;
  if (hello_.version != kProtocolVersion) {
    ack.code = AckCode::kBadVersion;
  } else if (hello_.kind == StreamKind::kMembers) {
    // A joining member asks who we are: answer and close.
    if (!o.membership) {
      ack.code = AckCode::kWrongMember;
    } else {
      std::string out;
      EncodeHelloAck(ack, &out);
      AppendFrame(FrameType::kMembers, o.membership(), &out);
      spdlog::info("transport: answered a membership query from {}", remote_);
      close_after_write_ = true;
      QueueWrite(std::move(out));
      return;
    }
  } else if (hello_.cluster_id != o.cluster_id) {
    ack.code = AckCode::kClusterMismatch;
  } else if (hello_.to != o.local_id) {
    ack.code = AckCode::kWrongMember;
  }
  std::string out;
  EncodeHelloAck(ack, &out);
  if (ack.code != AckCode::kOk) {
    spdlog::warn(
        "transport: refused connection from {} (member {} of cluster {:x}, "
        "protocol {}, asking for member {}): {}; we are member {} of cluster "
        "{:x}, protocol {}",
        remote_, hello_.from, hello_.cluster_id, hello_.version, hello_.to,
        AckCodeName(ack.code), o.local_id, o.cluster_id, kProtocolVersion);
    close_after_write_ = true;
    QueueWrite(std::move(out));
    return;
  }
  accepted_ = true;
  QueueWrite(std::move(out));
  if (hello_.kind == StreamKind::kMessages) {
    spdlog::info("transport: peer {} connected from {}", hello_.from, remote_);
  }
  last_read_ = std::chrono::steady_clock::now();
  CheckSilence();
  ReadMore();
}

void InboundConn::CheckSilence() {
  const auto timeout = ctx_->opts().peer_timeout;
  hello_timer_.expires_after(timeout / 2);
  hello_timer_.async_wait(
      [self = shared_from_this(), timeout](asio::error_code ec) {
        if (ec || self->closed_) return;
        // While a sink call runs we are not reading: the silence is ours.
        if (self->busy_) self->last_read_ = std::chrono::steady_clock::now();
        if (std::chrono::steady_clock::now() - self->last_read_ > timeout) {
          self->Drop("silent for " + std::to_string(timeout.count()) + " ms");
          return;
        }
        self->CheckSilence();
      });
}

void InboundConn::ReadMore() {
  if (reading_ || closed_) return;
  reading_ = true;
  socket_.async_read_some(
      asio::buffer(read_buf_),
      [self = shared_from_this()](asio::error_code ec, size_t n) {
        self->reading_ = false;
        if (self->closed_) return;
        self->OnRead(ec, n);
      });
}

void InboundConn::OnRead(asio::error_code ec, size_t n) {
  if (ec) {
    const std::string why =
        ec == asio::error::eof ? "closed by peer" : ec.message();
    if (hello_.kind == StreamKind::kMessages) {
      spdlog::info("transport: peer {} disconnected ({}): {}", hello_.from,
                   remote_, why);
    } else if (snap_state_ != SnapState::kDone) {
      spdlog::warn(
          "transport: snapshot from peer {} aborted after {} bytes: {}",
          hello_.from, snap_bytes_, why);
    }
    Close();
    return;
  }
  last_read_ = std::chrono::steady_clock::now();
  decoder_.Append(read_buf_.data(), n);
  ctx_->stats().Update(hello_.from,
                       [n](PeerStats& s) { s.bytes_received += n; });
  Pump();
}

void InboundConn::Pump() {
  Frame f;
  std::string error;
  while (!busy_ && !closed_ && snap_state_ != SnapState::kDone) {
    auto st = decoder_.Next(&f, &error);
    if (st == FrameDecoder::State::kNeedMore) {
      ReadMore();
      return;
    }
    if (st == FrameDecoder::State::kCorrupt) {
      Drop("corrupt stream: " + error);
      return;
    }
    bool open = hello_.kind == StreamKind::kMessages ? OnMessageFrame(f)
                                                     : OnSnapshotFrame(f);
    if (!open) return;
  }
}

bool InboundConn::CheckAddressing(const raft::Message& m) {
  if (m.to == ctx_->opts().local_id && m.from == hello_.from) return true;
  Drop("message from " + std::to_string(m.from) + " to " +
       std::to_string(m.to) + " on a stream from " +
       std::to_string(hello_.from));
  return false;
}

bool InboundConn::OnMessageFrame(Frame& f) {
  if (f.type == FrameType::kPing && f.body.size() == 8) {
    std::string pong;
    AppendFrame(FrameType::kPong, f.body, &pong);
    QueueWrite(std::move(pong));
    return true;
  }
  if (f.type != FrameType::kMsg) {
    Drop("unexpected frame on message stream");
    return false;
  }
  raft::Message m;
  if (!raft::DecodeMessage(f.body, &m)) {
    Drop("undecodable message");
    return false;
  }
  if (!CheckAddressing(m)) return false;
  if (m.type == raft::MessageType::kSnap) {
    Drop("kSnap on a message stream");
    return false;
  }
  ctx_->stats().Update(hello_.from, [](PeerStats& s) { s.msgs_received++; });
  ctx_->Deliver(std::move(m));
  return !closed_;
}

bool InboundConn::OnSnapshotFrame(Frame& f) {
  if (snap_state_ == SnapState::kHeader && f.type == FrameType::kSnapHeader) {
    if (!raft::DecodeMessage(f.body, &snap_msg_) ||
        snap_msg_.type != raft::MessageType::kSnap || !snap_msg_.snapshot) {
      Drop("bad snapshot header");
      return false;
    }
    if (!CheckAddressing(snap_msg_)) return false;
    busy_ = true;
    SnapshotStore* store = ctx_->store();
    ctx_->Blocking(
        [store, md = snap_msg_.snapshot->metadata, from = hello_.from] {
          return store->CreateForReceive(md, from);
        },
        [self = shared_from_this()](Result<std::unique_ptr<ByteSink>> r) {
          if (r.ok()) self->sink_ = std::move(r.value());
          self->SinkDone(r.status(), "create sink");
        });
    snap_state_ = SnapState::kChunks;
    return true;
  }
  if (snap_state_ == SnapState::kChunks && f.type == FrameType::kSnapChunk) {
    snap_bytes_ += f.body.size();
    busy_ = true;
    ctx_->Blocking(
        [sink = sink_, data = std::move(f.body)] { return sink->Write(data); },
        [self = shared_from_this()](Status s) {
          self->SinkDone(std::move(s), "write");
        });
    return true;
  }
  if (snap_state_ == SnapState::kChunks && f.type == FrameType::kSnapEnd &&
      f.body.size() == 8) {
    if (DecodeFixed64(f.body.data()) != snap_bytes_) {
      AnswerSnapshot(false, "payload length mismatch");
      return false;
    }
    busy_ = true;
    ctx_->Blocking([sink = sink_] { return sink->Finish(); },
                   [self = shared_from_this()](Status s) {
                     self->busy_ = false;
                     if (!self->closed_) self->Finished(std::move(s));
                   });
    return true;
  }
  Drop("unexpected frame on snapshot stream");
  return false;
}

void InboundConn::SinkDone(Status s, const char* what) {
  busy_ = false;
  if (closed_) return;
  if (!s.ok()) {
    AnswerSnapshot(false, std::string(what) + ": " + s.ToString());
    return;
  }
  Pump();
}

void InboundConn::Finished(Status s) {
  if (!s.ok()) {
    AnswerSnapshot(false, "finish: " + s.ToString());
    return;
  }
  const auto& md = snap_msg_.snapshot->metadata;
  spdlog::info(
      "transport: received snapshot (index {}, term {}) from peer {}: {} "
      "bytes",
      md.index, md.term, hello_.from, snap_bytes_);
  ctx_->stats().Update(hello_.from,
                       [](PeerStats& s) { s.snapshots_received++; });
  ctx_->Deliver(std::move(snap_msg_));
  AnswerSnapshot(true, "");
}

void InboundConn::AnswerSnapshot(bool ok, const std::string& reason) {
  if (!ok) {
    spdlog::warn("transport: receiving snapshot from peer {} failed: {}",
                 hello_.from, reason);
  }
  snap_state_ = SnapState::kDone;
  sink_.reset();  // without Finish(): abandoned
  std::string body(1, ok ? 1 : 0);
  body += reason;
  std::string frame;
  AppendFrame(FrameType::kSnapAck, body, &frame);
  close_after_write_ = true;
  QueueWrite(std::move(frame));
}

void InboundConn::QueueWrite(std::string data) {
  writes_.push_back(std::move(data));
  WriteNext();
}

void InboundConn::WriteNext() {
  if (writing_ || closed_) return;
  if (writes_.empty()) {
    if (close_after_write_) Close();
    return;
  }
  writing_ = true;
  asio::async_write(socket_, asio::buffer(writes_.front()),
                    [self = shared_from_this()](asio::error_code ec, size_t) {
                      self->writing_ = false;
                      if (self->closed_) return;
                      if (ec) {
                        spdlog::debug("transport: write to {}: {}",
                                      self->remote_, ec.message());
                        self->Close();
                        return;
                      }
                      self->writes_.pop_front();
                      self->WriteNext();
                    });
}

void InboundConn::Drop(const std::string& reason) {
  if (closed_) return;
  if (accepted_) {
    spdlog::warn("transport: closing connection from peer {} ({}): {}",
                 hello_.from, remote_, reason);
  } else {
    spdlog::warn("transport: closing connection from {}: {}", remote_, reason);
  }
  Close();
}

void InboundConn::Close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  socket_.close(ignored);
  hello_timer_.cancel();
  sink_.reset();
  ctx_->inbound().erase(conn_id_);
}

}  // namespace keel::transport
