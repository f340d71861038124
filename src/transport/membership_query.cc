#include "transport/membership_query.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "transport/tls.h"
#include "transport/wire.h"

namespace keel::transport {

namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

int MsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for fd to be ready for `events` before the deadline.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, MsLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// The connected socket, plain or with TLS over it (blocking calls with a
// deadline over the non-blocking socket).
class Conn {
 public:
  Conn(int fd, Clock::time_point deadline) : fd_(fd), deadline_(deadline) {}
  ~Conn() {
    if (ssl_ != nullptr) SSL_free(ssl_);
  }

  Status StartTls(TlsContext* tls, const std::string& host) {
    ssl_ = SSL_new(tls->client().native_handle());
    if (ssl_ == nullptr) return Status::IOError("SSL_new failed");
    SSL_set_fd(ssl_, fd_);
    KEEL_RETURN_IF_ERROR(tls->SetExpectedHost(ssl_, host));
    while (true) {
      int r = SSL_connect(ssl_);
      if (r == 1) break;
      if (!Wait(r)) {
        long v = SSL_get_verify_result(ssl_);
        return Status::Unavailable(std::string("TLS handshake: ") +
                                   (v != X509_V_OK
                                        ? X509_verify_cert_error_string(v)
                                        : "failed or timed out"));
      }
    }
    return tls->CheckPeer(ssl_, /*server_side=*/false);
  }

  bool SendAll(std::string_view data) {
    while (!data.empty()) {
      ssize_t n;
      if (ssl_ != nullptr) {
        int r = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (r <= 0) {
          if (!Wait(r)) return false;
          continue;
        }
        n = r;
      } else {
        if (!WaitFor(fd_, POLLOUT, deadline_)) return false;
        n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR && errno != EAGAIN) return false;
      }
      if (n > 0) data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until the peer closes the stream (or the deadline).
  void ReadAll(std::string* in) {
    char buf[16384];
    while (true) {
      if (ssl_ != nullptr) {
        int r = SSL_read(ssl_, buf, sizeof(buf));
        if (r > 0) {
          in->append(buf, static_cast<size_t>(r));
        } else if (!Wait(r)) {
          return;  // closed (close_notify or EOF), error or deadline
        }
        continue;
      }
      if (!WaitFor(fd_, POLLIN, deadline_)) return;
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) return;
      if (n > 0) in->append(buf, static_cast<size_t>(n));
      if (n < 0 && errno != EINTR && errno != EAGAIN) return;
    }
  }

 private:
  // After an SSL call returned r <= 0: waits for what it needs; false if
  // it failed for good or the deadline passed.
  bool Wait(int r) {
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        return WaitFor(fd_, POLLIN, deadline_);
      case SSL_ERROR_WANT_WRITE:
        return WaitFor(fd_, POLLOUT, deadline_);
      default:
        return false;
    }
  }

  const int fd_;
  const Clock::time_point deadline_;
  SSL* ssl_ = nullptr;
};

}  // namespace

Result<MembershipAnswer> QueryMembership(const std::string& url,
                                         std::chrono::milliseconds timeout,
                                         TlsContext* tls) {
  auto deadline = Clock::now() + timeout;
  auto hp = ParseUrl(url);
  if (!hp.ok()) return hp.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(hp->host.c_str(), hp->port.c_str(), &hints, &res);
  if (rc != 0) {
    return Status::Unavailable("resolving " + url + ": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  Status last = Status::Unavailable("no address for " + url);
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family,
                   ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   ai->ai_protocol));
    if (fd.get() < 0) continue;
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 &&
        errno != EINPROGRESS) {
      last = Status::Unavailable("connecting to " + url + ": " +
                                 std::strerror(errno));
      continue;
    }
    if (!WaitFor(fd.get(), POLLOUT, deadline)) {
      last = Status::Unavailable("connecting to " + url + ": timed out");
      continue;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last = Status::Unavailable("connecting to " + url + ": " +
                                 std::strerror(err));
      continue;
    }
    Conn conn(fd.get(), deadline);
    if (hp->tls) {
      if (tls == nullptr) {
        return Status::InvalidArgument(
            url +
            ": an https peer URL needs the peer TLS settings "
            "(--peer-cert-file/--peer-key-file or --peer-auto-tls)");
      }
      Status st = conn.StartTls(tls, hp->host);
      if (!st.ok()) {
        last = Status::Unavailable(url + ": " + st.message());
        continue;
      }
    }
    Hello h;
    h.kind = StreamKind::kMembers;
    std::string out;
    EncodeHello(h, &out);
    if (!conn.SendAll(out)) {
      last = Status::Unavailable("sending to " + url + " failed");
      continue;
    }
    // Read until the peer closes: the answer and one frame.
    std::string in;
    conn.ReadAll(&in);
    if (in.size() < kHelloAckSize) {
      last = Status::Unavailable("no membership answer from " + url);
      continue;
    }
    HelloAck ack;
    KEEL_RETURN_IF_ERROR(
        DecodeHelloAck(std::string_view(in).substr(0, kHelloAckSize), &ack));
    if (ack.code != AckCode::kOk) {
      return Status::FailedPrecondition(
          url + " refused the membership query: " + AckCodeName(ack.code));
    }
    FrameDecoder dec;
    dec.Append(in.data() + kHelloAckSize, in.size() - kHelloAckSize);
    Frame f;
    std::string error;
    if (dec.Next(&f, &error) != FrameDecoder::State::kFrame ||
        f.type != FrameType::kMembers) {
      last = Status::Unavailable("truncated membership answer from " + url +
                                 (error.empty() ? "" : ": " + error));
      continue;
    }
    return MembershipAnswer{ack.cluster_id, ack.member_id, std::move(f.body)};
  }
  return last;
}

}  // namespace keel::transport
