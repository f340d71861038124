#include "transport/connector.h"

#include <fmt/format.h>

namespace keel::transport {

using asio::ip::tcp;

std::shared_ptr<Connector> Connector::Start(Context* ctx, std::string url,
                                            Hello hello, Done done) {
  auto c =
      std::make_shared<Connector>(ctx, std::move(url), hello, std::move(done));
  c->Run();
  return c;
}

Connector::Connector(Context* ctx, std::string url, Hello hello, Done done)
    : ctx_(ctx),
      url_(std::move(url)),
      hello_(hello),
      done_(std::move(done)),
      resolver_(ctx->io()),
      socket_(ctx->io()),
      timer_(ctx->io()) {}

void Connector::Cancel() {
  done_ = nullptr;
  finished_ = true;
  asio::error_code ignored;
  resolver_.cancel();
  socket_.close(ignored);
  if (stream_) stream_->close(ignored);
  timer_.cancel();
}

void Connector::Finish(Status s) {
  if (finished_) return;
  finished_ = true;
  timer_.cancel();
  resolver_.cancel();
  asio::error_code ignored;
  if (!s.ok()) {
    socket_.close(ignored);
    if (stream_) stream_->close(ignored);
  }
  if (!stream_) stream_.emplace(std::move(socket_));
  Done done = std::move(done_);
  if (done) done(std::move(s), std::move(*stream_));
}

void Connector::Fail(const char* what, const asio::error_code& ec) {
  Finish(
      Status::Unavailable(fmt::format("{} {}: {}", what, url_, ec.message())));
}

void Connector::Run() {
  auto hp = ParseUrl(url_);
  if (!hp.ok()) {
    // Report asynchronously so the caller's state is settled first.
    asio::post(ctx_->io(), [self = shared_from_this(), s = hp.status()] {
      self->Finish(s);
    });
    return;
  }
  host_ = hp->host;
  tls_ = hp->tls;
  if (tls_ && ctx_->tls() == nullptr) {
    asio::post(ctx_->io(), [self = shared_from_this()] {
      self->Finish(Status::FailedPrecondition("https peer URL " + self->url_ +
                                              " without TLS settings"));
    });
    return;
  }
  timer_.expires_after(ctx_->opts().dial_timeout);
  timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
    if (ec || self->finished_) return;
    self->Finish(Status::TimedOut(
        fmt::format("dial {}: no handshake within {} ms", self->url_,
                    self->ctx_->opts().dial_timeout.count())));
  });
  resolver_.async_resolve(
      hp->host, hp->port,
      [self = shared_from_this()](asio::error_code ec,
                                  tcp::resolver::results_type results) {
        if (self->finished_) return;
        if (ec) return self->Fail("resolve", ec);
        self->OnResolved(std::move(results));
      });
}

void Connector::OnResolved(tcp::resolver::results_type results) {
  asio::async_connect(
      socket_, results,
      [self = shared_from_this()](asio::error_code ec, const tcp::endpoint&) {
        if (self->finished_) return;
        if (ec) return self->Fail("connect", ec);
        self->OnConnected();
      });
}

void Connector::OnConnected() {
  TuneSocket(socket_);
  if (!tls_) {
    stream_.emplace(std::move(socket_));
    SendHello();
    return;
  }
  TlsContext* tls = ctx_->tls();
  stream_.emplace(std::move(socket_), tls->client());
  Status s = tls->SetExpectedHost(stream_->tls()->native_handle(), host_);
  if (!s.ok()) return Finish(s);
  stream_->tls()->async_handshake(
      asio::ssl::stream_base::client,
      [self = shared_from_this()](asio::error_code ec) {
        if (self->finished_) return;
        if (ec) return self->Fail("TLS handshake with", ec);
        self->OnTlsHandshake();
      });
}

void Connector::OnTlsHandshake() {
  Status s = ctx_->tls()->CheckPeer(stream_->tls()->native_handle(),
                                    /*server_side=*/false);
  if (!s.ok()) {
    return Finish(Status::FailedPrecondition(
        fmt::format("TLS handshake with {}: {}", url_, s.message())));
  }
  SendHello();
}

void Connector::SendHello() {
  EncodeHello(hello_, &out_);
  in_.resize(kHelloAckSize);
  // The listener answers only after reading the whole Hello, so the read
  // can be started at once.
  asio::async_write(*stream_, asio::buffer(out_),
                    [self = shared_from_this()](asio::error_code ec, size_t) {
                      if (self->finished_) return;
                      if (ec) self->Fail("handshake with", ec);
                    });
  asio::async_read(*stream_, asio::buffer(in_),
                   [self = shared_from_this()](asio::error_code ec, size_t) {
                     if (self->finished_) return;
                     if (ec) return self->Fail("handshake with", ec);
                     self->OnAck();
                   });
}

void Connector::OnAck() {
  HelloAck ack;
  Status s = DecodeHelloAck(in_, &ack);
  if (!s.ok()) {
    Finish(Status::Corruption(
        fmt::format("handshake with {}: {}", url_, s.message())));
  } else if (ack.code != AckCode::kOk) {
    Finish(Status::FailedPrecondition(fmt::format(
        "refused by member {} at {}: {} (we are member {} of cluster {:x}, "
        "protocol {}, dialling member {}; it is in cluster {:x}, protocol {})",
        ack.member_id, url_, AckCodeName(ack.code), hello_.from,
        hello_.cluster_id, hello_.version, hello_.to, ack.cluster_id,
        ack.version)));
  } else if (ack.member_id != hello_.to) {
    Finish(Status::FailedPrecondition(fmt::format(
        "member at {} is {}, expected {}", url_, ack.member_id, hello_.to)));
  } else {
    Finish(Status::OK());
  }
}

}  // namespace keel::transport
