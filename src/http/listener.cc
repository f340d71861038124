#include "http/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio.hpp>
#include <cerrno>
#include <chrono>
#include <set>
#include <thread>

#include "common/check.h"
#include "http/tls_conn.h"

namespace keel::http {

using asio::ip::tcp;

namespace {

// A connection whose protocol is not known yet.
struct Pending {
  explicit Pending(asio::io_context& io) : sock(io), deadline(io), retry(io) {}
  tcp::socket sock;
  asio::steady_timer deadline;  // sniff_timeout_ms after accept
  asio::steady_timer retry;     // re-peek after a partial preface
  int retry_ms = 1;             // doubles up to 100 ms: a stalled client
                                // costs few wake-ups
  bool tls = false;             // accepted on a TLS address
};

// The largest TLS record (and so ClientHello) the sniff waits for.
constexpr size_t kMaxHelloRecord = 5 + 16384;

}  // namespace

class Listener::Impl {
 public:
  explicit Impl(ListenerOptions o) : options_(std::move(o)) {}

  Status Bind(const std::string& host, uint16_t port, bool tls,
              uint16_t* bound) {
    asio::error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) {
      return Status::InvalidArgument("cannot resolve " + host + ": " +
                                     ec.message());
    }
    *bound = port;
    bool any = false;
    std::string first_error;
    for (const auto& r : results) {
      tcp::endpoint ep = r.endpoint();
      ep.port(*bound);  // port 0: every address on the first one's port
      auto a = std::make_unique<tcp::acceptor>(io_);
      a->open(ep.protocol(), ec);
      if (!ec) a->set_option(tcp::acceptor::reuse_address(true), ec);
      // A name that resolves to both families binds each separately; a
      // lone IPv6 address (such as "::") stays dual-stack.
      if (!ec && ep.address().is_v6() && results.size() > 1) {
        a->set_option(asio::ip::v6_only(true), ec);
      }
      if (!ec) a->bind(ep, ec);
      if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        // "localhost" may resolve to ::1 on a host without IPv6: one
        // address bound is enough, as with gRPC.
        if (first_error.empty()) {
          first_error = ep.address().to_string() + ":" +
                        std::to_string(ep.port()) + ": " + ec.message();
        }
        continue;
      }
      *bound = a->local_endpoint(ec).port();
      acceptors_.push_back({host, std::move(a), tls});
      any = true;
    }
    if (!any) return Status::IOError("cannot listen on " + first_error);
    return Status::OK();
  }

  void Run() {
    work_.emplace(io_.get_executor());
    for (auto& a : acceptors_) Accept(a.acceptor.get(), a.tls);
    thread_ = std::thread([this] { io_.run(); });
  }

  void Stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      asio::error_code ignored;
      for (auto& a : acceptors_) a.acceptor->close(ignored);
      pause_.cancel();
      for (auto& p : pending_) {
        p->deadline.cancel();
        p->retry.cancel();
        p->sock.close(ignored);
      }
      pending_.clear();
      work_.reset();
    });
    thread_.join();
  }

 private:
  void Accept(tcp::acceptor* a, bool tls) {
    auto p = std::make_shared<Pending>(io_);
    p->tls = tls;
    a->async_accept(p->sock, [this, a, p, tls](asio::error_code ec) {
      if (ec == asio::error::operation_aborted || !a->is_open()) return;
      if (ec) {
        // EMFILE and the like: pause rather than spin on an error that
        // repeats at once.
        spdlog::warn("client listener: accept: {}", ec.message());
        pause_.expires_after(std::chrono::milliseconds(100));
        pause_.async_wait([this, a, tls](asio::error_code ec) {
          if (!ec) Accept(a, tls);
        });
        return;
      }
      pending_.insert(p);
      p->deadline.expires_after(
          std::chrono::milliseconds(options_.sniff_timeout_ms));
      p->deadline.async_wait([this, p](asio::error_code ec) {
        if (ec) return;  // cancelled: handed off
        Drop(p);
      });
      Sniff(p);
      Accept(a, tls);
    });
  }

  void Drop(const std::shared_ptr<Pending>& p) {
    asio::error_code ignored;
    p->retry.cancel();
    p->deadline.cancel();
    p->sock.close(ignored);
    pending_.erase(p);
  }

  void Sniff(std::shared_ptr<Pending> p) {
    p->sock.async_wait(tcp::socket::wait_read, [this, p](asio::error_code ec) {
      if (ec || !p->sock.is_open()) return;  // closed by Drop or Stop
      if (p->tls) {
        SniffTls(p);
        return;
      }
      char buf[kHttp2Preface.size()];
      ssize_t n = recv(p->sock.native_handle(), buf, sizeof(buf),
                       MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 &&
          (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        Sniff(p);
        return;
      }
      if (n <= 0) {  // closed before saying anything, or reset
        Drop(p);
        return;
      }
      size_t got = static_cast<size_t>(n);
      bool is_prefix =
          std::string_view(buf, got) == kHttp2Preface.substr(0, got);
      if (is_prefix && got < kHttp2Preface.size()) {
        // Part of the preface so far. The socket stays readable, so waiting
        // for readability would spin: look again shortly.
        RetrySoon(p);
        return;
      }
      HandOff(p, is_prefix ? Kind::kHttp2 : Kind::kHttp);
    });
  }

  // Part of what decides came so far. The socket stays readable, so
  // waiting for readability would spin: look again shortly.
  void RetrySoon(const std::shared_ptr<Pending>& p) {
    p->retry.expires_after(std::chrono::milliseconds(p->retry_ms));
    p->retry_ms = std::min(p->retry_ms * 2, 100);
    p->retry.async_wait([this, p](asio::error_code ec) {
      if (!ec) Sniff(p);
    });
  }

  // A TLS address: gRPC or not, from the ClientHello's ALPN protocols.
  void SniffTls(const std::shared_ptr<Pending>& p) {
    std::string buf(kMaxHelloRecord, '\0');
    ssize_t n = recv(p->sock.native_handle(), buf.data(), buf.size(),
                     MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      Sniff(p);
      return;
    }
    if (n <= 0) {
      Drop(p);
      return;
    }
    buf.resize(static_cast<size_t>(n));
    std::vector<std::string> alpn;
    switch (PeekClientHelloAlpn(buf, &alpn)) {
      case HelloScan::kNeedMore:
        RetrySoon(p);
        return;
      case HelloScan::kNotTls:
        // Plaintext on an https port: refused, as Go's TLS server does.
        Drop(p);
        return;
      case HelloScan::kDone:
        break;
    }
    auto has = [&](std::string_view proto) {
      return std::find(alpn.begin(), alpn.end(), proto) != alpn.end();
    };
    HandOff(p, has("h2") && !has("http/1.1") ? Kind::kTlsGrpc : Kind::kTlsHttp);
  }

  enum class Kind { kHttp, kHttp2, kTlsGrpc, kTlsHttp };

  void HandOff(const std::shared_ptr<Pending>& p, Kind kind) {
    asio::error_code ec;
    p->deadline.cancel();
    p->retry.cancel();
    pending_.erase(p);
    int fd = p->sock.release(ec);
    if (ec) {
      spdlog::warn("client listener: cannot take socket: {}", ec.message());
      p->sock.close(ec);
      return;
    }
    // Small writes (gRPC responses, HTTP chunks) go out at once.
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    switch (kind) {
      case Kind::kHttp2:
        if (options_.on_http2) {
          options_.on_http2(fd);
        } else {
          close(fd);
        }
        return;
      case Kind::kTlsGrpc:
        options_.on_tls_grpc(fd);
        return;
      case Kind::kTlsHttp:
        options_.http->Serve(options_.make_tls_conn(fd));
        return;
      case Kind::kHttp:
        options_.http->Serve(std::make_unique<SocketConn>(fd));
        return;
    }
  }

  ListenerOptions options_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_;
  struct Bound {
    std::string host;
    std::unique_ptr<tcp::acceptor> acceptor;
    bool tls = false;
  };
  std::vector<Bound> acceptors_;  // io thread once running
  asio::steady_timer pause_{io_};
  std::set<std::shared_ptr<Pending>> pending_;  // io thread
  std::thread thread_;
};

Listener::Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Listener::~Listener() { Stop(); }

void Listener::Stop() {
  if (impl_) impl_->Stop();
}

Result<std::unique_ptr<Listener>> Listener::Start(
    const std::vector<std::pair<std::string, uint16_t>>& addrs,
    ListenerOptions options) {
  std::vector<Address> all;
  for (const auto& [host, port] : addrs) all.push_back({host, port, false});
  return StartAddresses(all, std::move(options));
}

Result<std::unique_ptr<Listener>> Listener::StartAddresses(
    const std::vector<Address>& addrs, ListenerOptions options) {
  KEEL_CHECK(options.http != nullptr);
  for (const Address& a : addrs) {
    KEEL_CHECK(!a.tls || (options.on_tls_grpc && options.make_tls_conn));
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  std::vector<uint16_t> ports;
  for (const Address& a : addrs) {
    uint16_t bound = 0;
    Status s = impl->Bind(a.host, a.port, a.tls, &bound);
    if (!s.ok()) return s;
    ports.push_back(bound);
  }
  impl->Run();
  std::unique_ptr<Listener> l(new Listener(std::move(impl)));
  l->ports_ = std::move(ports);
  return l;
}

}  // namespace keel::http
