#include "transport/peer.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "common/coding.h"
#include "metrics/metrics.h"

namespace keel::transport {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Rough encoded size, to cap a batch without encoding under the lock.
size_t EstimateSize(const raft::Message& m) {
  size_t n = 64 + m.context.size();
  for (const auto& e : m.entries) n += e.Size();
  return n;
}

uint64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch())
      .count();
}

}  // namespace

Peer::Peer(Context* ctx, NodeId id, std::vector<std::string> urls)
    : ctx_(ctx),
      id_(id),
      urls_(std::move(urls)),
      redial_timer_(ctx->io()),
      ping_timer_(ctx->io()) {}

Peer::Dropped Peer::Enqueue(std::vector<raft::Message> msgs) {
  MutexLock l(&mu_);
  Dropped dropped;
  if (closed_) return dropped;  // removed: nobody wants to hear about it
  const size_t limit = ctx_->opts().max_queued_msgs_per_peer;
  bool queued = false, snap = false;
  for (auto& m : msgs) {
    if (m.type == raft::MessageType::kSnap) {
      if (snaps_.size() >= limit) {
        dropped.snaps++;
        continue;
      }
      snaps_.push_back(std::move(m));
      snap = true;
    } else {
      if (link_down_ || queue_.size() >= limit) {
        dropped.msgs++;
        continue;
      }
      queue_.push_back(std::move(m));
    }
    queued = true;
  }
  // A snapshot is always started by the io thread.
  if (queued && (!SendDirectLocked() || snap)) KickLocked();
  return dropped;
}

bool Peer::SendDirectLocked() {
  if (direct_fd_ < 0 || io_busy_ || queue_.empty()) return false;
  std::string out;
  size_t msgs = 0;
  while (!queue_.empty()) {
    AppendMessageFrame(queue_.front(), &out);
    queue_.pop_front();
    msgs++;
  }
  size_t sent = 0;
  while (sent < out.size()) {
    ssize_t n = ::send(direct_fd_, out.data() + sent, out.size() - sent,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // full (EAGAIN) or broken: the io thread takes over
  }
  const bool all = sent == out.size();
  if (!all) {
    // The io thread writes the rest first, and counts the messages once
    // it has. A broken socket fails that write (or the pending read) and
    // the link is torn down as usual; the messages are lost as those of a
    // failed write are.
    direct_rest_.assign(out, sent, std::string::npos);
    direct_rest_msgs_ = msgs;
    io_busy_ = true;
  }
  if (sent > 0) CountWrite(all ? msgs : 0, sent);
  return all;
}

void Peer::CountWrite(size_t msgs, size_t bytes) {
  ctx_->stats().Update(id_, [msgs, bytes](PeerStats& s) {
    s.msgs_sent += msgs;
    s.bytes_sent += bytes;
    s.writes++;
  });
}

void Peer::ResetDirectLocked(int fd) {
  direct_fd_ = fd;
  io_busy_ = false;
  direct_rest_.clear();
  direct_rest_msgs_ = 0;
}

void Peer::KickLocked() {
  if (kick_posted_) return;
  kick_posted_ = true;
  asio::post(ctx_->io(), [self = shared_from_this()] { self->OnKick(); });
}

void Peer::SetUrls(std::vector<std::string> urls) {
  MutexLock l(&mu_);
  urls_ = std::move(urls);
}

std::vector<std::string> Peer::Urls() {
  MutexLock l(&mu_);
  return urls_;
}

void Peer::ClearKick() {
  MutexLock l(&mu_);
  kick_posted_ = false;
}

void Peer::OnKick() {
  ClearKick();
  Flush();
  MaybeStartSnapshot();
}

void Peer::Start() {
  if (state_ == State::kIdle) Dial();
}

void Peer::Redial() {
  if (state_ != State::kBackoff) return;
  redial_timer_.cancel();
  Dial();
}

void Peer::Dial() {
  std::vector<std::string> urls = Urls();
  if (urls.empty()) {
    Fail("no URLs");
    return;
  }
  const std::string url = urls[next_url_++ % urls.size()];
  state_ = State::kDialing;
  Hello hello;
  hello.kind = StreamKind::kMessages;
  hello.cluster_id = ctx_->opts().cluster_id;
  hello.from = ctx_->opts().local_id;
  hello.to = id_;
  connector_ =
      Connector::Start(ctx_, url, hello,
                       [self = shared_from_this(), gen = generation_, url](
                           Status s, Stream sock) {
                         if (gen != self->generation_) return;
                         self->OnDialed(std::move(s), std::move(sock), url);
                       });
}

void Peer::MarkUp(int fd) {
  MutexLock l(&mu_);
  link_down_ = false;
  ResetDirectLocked(fd);
}

size_t Peer::MarkDown() {
  MutexLock l(&mu_);
  link_down_ = true;
  ResetDirectLocked(-1);
  size_t n = queue_.size();
  queue_.clear();
  return n;
}

void Peer::OnDialed(Status s, Stream socket, const std::string& url) {
  connector_.reset();
  if (!s.ok()) {
    Fail(s.ToString());
    return;
  }
  socket_.emplace(std::move(socket));
  state_ = State::kConnected;
  connected_url_ = url;
  failures_ = 0;
  last_error_.clear();
  MarkUp(socket_->tls() == nullptr ? socket_->socket().native_handle() : -1);
  ctx_->stats().Update(id_, [](PeerStats& s) { s.connected = true; });
  spdlog::info("transport: connected to peer {} at {}", id_, url);
  decoder_.Reset();
  last_heard_ = Clock::now();
  ReadMore();
  ping_due_ = true;  // a first RTT sample at once
  SchedulePing();
  Flush();
}

void Peer::Fail(const std::string& reason) {
  const bool was_connected = state_ == State::kConnected;
  const size_t lost_in_flight = writing_ ? out_msgs_ : 0;
  generation_++;
  // Before the descriptor is closed (and can be reused): no direct send
  // may reach it any more.
  const size_t dropped = lost_in_flight + MarkDown();
  if (socket_) {
    asio::error_code ignored;
    socket_->close(ignored);
    socket_.reset();
  }
  ping_timer_.cancel();
  writing_ = false;
  out_msgs_ = 0;
  state_ = State::kBackoff;
  failures_++;
  ctx_->stats().Update(id_, [dropped](PeerStats& s) {
    s.connected = false;
    s.msgs_dropped += dropped;
  });
  if (was_connected) {
    spdlog::warn("transport: lost connection to peer {} at {}: {}", id_,
                 connected_url_, reason);
  } else if (reason != last_error_) {
    // Logged once per distinct error, not once per retry.
    spdlog::warn("transport: cannot reach peer {}: {} (retrying)", id_, reason);
  } else {
    spdlog::debug("transport: cannot reach peer {}: {}", id_, reason);
  }
  last_error_ = reason;
  if (was_connected || dropped > 0) ctx_->Unreachable(id_);
  ScheduleRedial();
}

void Peer::ScheduleRedial() {
  const auto& o = ctx_->opts();
  auto base = o.backoff_min;
  for (int i = 1; i < failures_ && base < o.backoff_max; i++) base *= 2;
  base = std::min(base, o.backoff_max);
  const uint64_t half = static_cast<uint64_t>(base.count()) / 2;
  const auto delay =
      std::chrono::milliseconds(half + ctx_->rng().Range(0, half));
  redial_timer_.expires_after(delay);
  redial_timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
    if (ec || self->state_ != State::kBackoff) return;
    self->Dial();
  });
}

std::vector<raft::Message> Peer::TakeBatch(std::string* rest,
                                           size_t* rest_msgs) {
  MutexLock l(&mu_);
  rest->swap(direct_rest_);
  direct_rest_.clear();
  *rest_msgs = std::exchange(direct_rest_msgs_, 0);
  std::vector<raft::Message> batch;
  size_t bytes = 0;
  const size_t max_bytes = ctx_->opts().max_batch_bytes;
  while (!queue_.empty() && (batch.empty() || bytes < max_bytes)) {
    bytes += EstimateSize(queue_.front());
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  io_busy_ = ping_due_ || !rest->empty() || !batch.empty();
  return batch;
}

void Peer::Flush() {
  if (state_ != State::kConnected || writing_) return;
  // A direct send's leftover is the tail of a frame: it goes first.
  out_.clear();
  size_t rest_msgs = 0;
  std::vector<raft::Message> batch = TakeBatch(&out_, &rest_msgs);
  if (ping_due_) {
    ping_due_ = false;
    std::string body;
    PutFixed64(&body, NowNanos());
    AppendFrame(FrameType::kPing, body, &out_);
  }
  for (const auto& m : batch) AppendMessageFrame(m, &out_);
  if (out_.empty()) return;
  writing_ = true;
  out_msgs_ = rest_msgs + batch.size();
  asio::async_write(*socket_, asio::buffer(out_),
                    [self = shared_from_this(), gen = generation_](
                        asio::error_code ec, size_t n) {
                      if (gen != self->generation_) return;
                      self->OnWritten(ec, n);
                    });
}

void Peer::OnWritten(asio::error_code ec, size_t bytes) {
  if (ec) {
    Fail("write: " + ec.message());
    return;
  }
  writing_ = false;
  CountWrite(std::exchange(out_msgs_, 0), bytes);
  Flush();
}

void Peer::ReadMore() {
  socket_->async_read_some(asio::buffer(read_buf_),
                           [self = shared_from_this(), gen = generation_](
                               asio::error_code ec, size_t n) {
                             if (gen != self->generation_) return;
                             self->OnRead(ec, n);
                           });
}

void Peer::OnRead(asio::error_code ec, size_t n) {
  if (ec) {
    Fail(ec == asio::error::eof ? "closed by peer" : "read: " + ec.message());
    return;
  }
  decoder_.Append(read_buf_.data(), n);
  Frame f;
  std::string error;
  for (;;) {
    auto st = decoder_.Next(&f, &error);
    if (st == FrameDecoder::State::kNeedMore) break;
    if (st == FrameDecoder::State::kCorrupt) {
      Fail("corrupt answer: " + error);
      return;
    }
    if (f.type != FrameType::kPong || f.body.size() != 8) {
      Fail("unexpected frame on message stream");
      return;
    }
    last_heard_ = Clock::now();
    const uint64_t sent = DecodeFixed64(f.body.data());
    const auto sample = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::nanoseconds(NowNanos() - sent));
    // etcd's histogram of the same name, labelled with the peer's id.
    static auto& rtt_seconds = metrics::Registry::Default().AddHistogramVec(
        "etcd_network_peer_round_trip_time_seconds",
        "Round-Trip-Time histogram between peers", {"To"},
        metrics::ExponentialBuckets(0.0001, 2, 16));
    if (rtt_ == nullptr) {
      char hex[17];
      std::snprintf(hex, sizeof(hex), "%llx",
                    static_cast<unsigned long long>(id_));
      rtt_ = &rtt_seconds.WithLabelValues({hex});
    }
    rtt_->Observe(std::chrono::duration<double>(sample).count());
    ctx_->stats().Update(id_, [sample](PeerStats& s) {
      s.rtt = s.rtt.count() == 0 ? sample : s.rtt - s.rtt / 8 + sample / 8;
    });
  }
  ReadMore();
}

void Peer::SchedulePing() {
  ping_timer_.expires_after(ctx_->opts().ping_interval);
  ping_timer_.async_wait(
      [self = shared_from_this(), gen = generation_](asio::error_code ec) {
        if (ec || gen != self->generation_) return;
        const auto timeout = self->ctx_->opts().peer_timeout;
        if (Clock::now() - self->last_heard_ > timeout) {
          self->Fail("no answer to pings for " +
                     std::to_string(timeout.count()) + " ms");
          return;
        }
        self->ping_due_ = true;
        self->Flush();
        self->SchedulePing();
      });
}

std::optional<raft::Message> Peer::PopSnapshot() {
  MutexLock l(&mu_);
  if (snaps_.empty()) return std::nullopt;
  raft::Message m = std::move(snaps_.front());
  snaps_.pop_front();
  return m;
}

void Peer::MaybeStartSnapshot() {
  if (snapshot_ || state_ == State::kClosed) return;
  std::optional<raft::Message> m = PopSnapshot();
  if (!m) return;
  std::string url = connected_url_;
  if (url.empty()) {
    std::vector<std::string> urls = Urls();
    if (!urls.empty()) url = urls[next_url_ % urls.size()];
  }
  snapshot_ = SnapshotSender::Start(
      ctx_, url, std::move(*m), [self = shared_from_this()](bool ok) {
        self->snapshot_.reset();
        self->ctx_->stats().Update(self->id_, [ok](PeerStats& s) {
          (ok ? s.snapshots_sent : s.snapshots_failed)++;
        });
        self->ctx_->SnapshotStatus(self->id_, ok);
        self->MaybeStartSnapshot();
      });
}

void Peer::CloseQueues() {
  MutexLock l(&mu_);
  closed_ = true;
  ResetDirectLocked(-1);
  queue_.clear();
  snaps_.clear();
}

void Peer::Close() {
  state_ = State::kClosed;
  generation_++;
  CloseQueues();  // before the socket closes: stops direct sends
  if (connector_) connector_->Cancel();
  connector_.reset();
  if (socket_) {
    asio::error_code ignored;
    socket_->close(ignored);
    socket_.reset();
  }
  redial_timer_.cancel();
  ping_timer_.cancel();
  if (snapshot_) snapshot_->Cancel();
  snapshot_.reset();
  ctx_->stats().Update(id_, [](PeerStats& s) { s.connected = false; });
}

}  // namespace keel::transport
