#include "transport/snapshot_sender.h"

#include <spdlog/spdlog.h>

#include "common/coding.h"

namespace keel::transport {

using asio::ip::tcp;

std::shared_ptr<SnapshotSender> SnapshotSender::Start(Context* ctx,
                                                      std::string url,
                                                      raft::Message m,
                                                      Done done) {
  auto s = std::make_shared<SnapshotSender>(ctx, std::move(url), std::move(m),
                                            std::move(done));
  s->started_ = std::chrono::steady_clock::now();
  s->ResetIdleTimer();
  if (!s->msg_.snapshot) {
    // Still asynchronous: done must not run inside Start().
    asio::post(ctx->io(), [s] { s->Finish(false, "kSnap without snapshot"); });
    return s;
  }
  SnapshotStore* store = ctx->store();
  ctx->Blocking(
      [store, snap = s->msg_.snapshot] { return store->OpenForSend(*snap); },
      [s](Result<std::unique_ptr<ByteSource>> r) { s->Opened(std::move(r)); });
  return s;
}

SnapshotSender::SnapshotSender(Context* ctx, std::string url, raft::Message m,
                               Done done)
    : ctx_(ctx),
      url_(std::move(url)),
      msg_(std::move(m)),
      to_(msg_.to),
      done_(std::move(done)),
      idle_timer_(ctx->io()) {}

void SnapshotSender::Cancel() {
  done_ = nullptr;
  Finish(false, "cancelled");
}

void SnapshotSender::ResetIdleTimer() {
  idle_timer_.expires_after(ctx_->opts().snapshot_idle_timeout);
  idle_timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
    if (ec || self->finished_) return;
    self->Finish(
        false,
        "no progress for " +
            std::to_string(self->ctx_->opts().snapshot_idle_timeout.count()) +
            " ms");
  });
}

void SnapshotSender::Opened(Result<std::unique_ptr<ByteSource>> source) {
  if (finished_) return;
  if (!source.ok()) {
    Finish(false, "open payload: " + source.status().ToString());
    return;
  }
  source_ = std::move(source.value());
  Hello hello;
  hello.kind = StreamKind::kSnapshot;
  hello.cluster_id = ctx_->opts().cluster_id;
  hello.from = ctx_->opts().local_id;
  hello.to = to_;
  connector_ =
      Connector::Start(ctx_, url_, hello,
                       [self = shared_from_this()](Status s, Stream sock) {
                         self->Connected(std::move(s), std::move(sock));
                       });
}

void SnapshotSender::Connected(Status s, Stream socket) {
  connector_.reset();
  if (finished_) return;
  if (!s.ok()) {
    Finish(false, s.ToString());
    return;
  }
  socket_.emplace(std::move(socket));
  ReadAck();
  std::string header;
  AppendMessageFrame(msg_, &header, FrameType::kSnapHeader);
  Write(std::move(header), /*last=*/false);
}

void SnapshotSender::ReadChunk() {
  const size_t n = ctx_->opts().snapshot_chunk_bytes;
  ctx_->Blocking(
      // Captures only the source: the sender itself stays on the io thread.
      [source = source_, n]() -> Result<std::string> {
        std::string payload(n, '\0');
        auto got = source->Read(payload.data(), n);
        if (!got.ok()) return got.status();
        std::string frame;
        if (*got > 0) {
          AppendFrame(FrameType::kSnapChunk,
                      std::string_view(payload.data(), *got), &frame);
        }
        return frame;  // empty: end of payload
      },
      [self = shared_from_this()](Result<std::string> frame) {
        self->ChunkRead(std::move(frame));
      });
}

void SnapshotSender::ChunkRead(Result<std::string> frame) {
  if (finished_) return;
  if (!frame.ok()) {
    Finish(false, "read payload: " + frame.status().ToString());
    return;
  }
  if (frame->empty()) {
    std::string body;
    PutFixed64(&body, payload_bytes_);
    std::string end;
    AppendFrame(FrameType::kSnapEnd, body, &end);
    Write(std::move(end), /*last=*/true);
    return;
  }
  payload_bytes_ += frame->size() - kFrameHeaderSize - 1;
  chunks_++;
  Write(std::move(frame.value()), /*last=*/false);
}

void SnapshotSender::Write(std::string frame, bool last) {
  out_ = std::move(frame);
  asio::async_write(
      *socket_, asio::buffer(out_),
      [self = shared_from_this(), last](asio::error_code ec, size_t) {
        if (self->finished_) return;
        if (ec) {
          self->Finish(false, "write: " + ec.message());
          return;
        }
        self->ResetIdleTimer();
        if (last) {
          self->end_sent_ = true;  // now wait for the ack
        } else {
          self->ReadChunk();
        }
      });
}

// Reading starts right after the handshake, so that a receiver refusing
// early (its sink failed) is noticed at once rather than at the end.
void SnapshotSender::ReadAck() {
  socket_->async_read_some(
      asio::buffer(read_buf_),
      [self = shared_from_this()](asio::error_code ec, size_t n) {
        if (self->finished_) return;
        if (ec) {
          self->Finish(false, ec == asio::error::eof
                                  ? "closed by receiver without an answer"
                                  : "read: " + ec.message());
          return;
        }
        self->decoder_.Append(self->read_buf_.data(), n);
        Frame f;
        std::string error;
        auto st = self->decoder_.Next(&f, &error);
        if (st == FrameDecoder::State::kNeedMore) {
          self->ReadAck();
        } else if (st == FrameDecoder::State::kCorrupt) {
          self->Finish(false, "corrupt answer: " + error);
        } else if (f.type != FrameType::kSnapAck || f.body.empty()) {
          self->Finish(false, "unexpected answer frame");
        } else if (f.body[0] != 1) {
          self->Finish(false, "receiver failed: " + f.body.substr(1));
        } else if (!self->end_sent_) {
          self->Finish(false, "receiver acknowledged before the end");
        } else {
          self->Finish(true, "");
        }
      });
}

void SnapshotSender::Finish(bool ok, const std::string& reason) {
  if (finished_) return;
  finished_ = true;
  idle_timer_.cancel();
  if (connector_) connector_->Cancel();
  connector_.reset();
  if (socket_) {
    asio::error_code ignored;
    socket_->close(ignored);
  }
  source_.reset();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started_)
                      .count();
  const auto& md =
      msg_.snapshot ? msg_.snapshot->metadata : raft::SnapshotMetadata{};
  if (ok) {
    spdlog::info(
        "transport: sent snapshot (index {}, term {}) to peer {}: {} bytes in "
        "{} chunks, {} ms",
        md.index, md.term, to_, payload_bytes_, chunks_, ms);
  } else if (done_) {
    spdlog::warn(
        "transport: sending snapshot (index {}, term {}) to peer {} failed "
        "after {} bytes, {} ms: {}",
        md.index, md.term, to_, payload_bytes_, ms, reason);
  }
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(ok);
}

}  // namespace keel::transport
